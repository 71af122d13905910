package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// operatorGuide is the operator guide whose configuration table this test keeps in sync.
const operatorGuide = "../../../docs/operators.md"

// leaf is one configuration key found by reflection.
type leaf struct {
	key   string // "jobs.log_dir"; "" for a variable-only setting (yaml "-")
	env   string // "" when the key has no environment variable
	value reflect.Value
}

// leaves walks a configuration struct: nested structs become dotted keys, slices of structs
// (sites) are one key documented in their own section.
func leaves(v reflect.Value, prefix string) []leaf {
	var out []leaf
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		env := f.Tag.Get("env")
		if name == "-" {
			out = append(out, leaf{env: env, value: fv})
			continue
		}
		key := prefix + name
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			out = append(out, leaves(fv, key+".")...)
			continue
		}
		out = append(out, leaf{key: key, env: env, value: fv})
	}
	return out
}

// docRow is one row of the guide's configuration table.
type docRow struct {
	key, env, def string
	line          int
}

// unquote turns a table cell into its value: "`x`" is x, "–" (or "none") is "".
func unquote(cell string) string {
	cell = strings.TrimSpace(cell)
	if cell == "–" || cell == "-" || cell == "none" {
		return ""
	}
	return strings.Trim(cell, "`")
}

// configTable parses the table whose header is | key | environment variable | default | ... |.
func configTable(t *testing.T, doc string) []docRow {
	t.Helper()
	var rows []docRow
	in := false
	for i, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if in {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !in {
			if len(cells) >= 3 && strings.TrimSpace(cells[0]) == "key" && strings.TrimSpace(cells[1]) == "environment variable" &&
				strings.TrimSpace(cells[2]) == "default" {
				in = true
			}
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		if len(cells) < 4 {
			t.Fatalf("%s:%d: a row needs key, variable, default and meaning: %q", operatorGuide, i+1, line)
		}
		rows = append(rows, docRow{key: unquote(cells[0]), env: unquote(cells[1]), def: strings.TrimSpace(cells[2]), line: i + 1})
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no configuration table (| key | environment variable | default | meaning |)", operatorGuide)
	}
	return rows
}

// TestOperatorGuideConfigReference keeps the operator guide's configuration table in sync
// with Config: every key has a row with its environment variable and its default, and every
// row is a key. The default cell is parsed the way the environment variable would be.
func TestOperatorGuideConfigReference(t *testing.T) {
	b, err := os.ReadFile(operatorGuide)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	rows := configTable(t, doc)
	byID := map[string]docRow{}
	id := func(key, env string) string { return key + " " + env }
	for _, r := range rows {
		if _, dup := byID[id(r.key, r.env)]; dup {
			t.Errorf("%s:%d: key %q / %q has two rows", operatorGuide, r.line, r.key, r.env)
		}
		byID[id(r.key, r.env)] = r
	}
	def := Default()
	for _, l := range leaves(reflect.ValueOf(def), "") {
		name := l.key
		if name == "" {
			name = l.env
		}
		t.Run(name, func(t *testing.T) {
			r, ok := byID[id(l.key, l.env)]
			if !ok {
				key := l.key
				if key == "" {
					key = "–"
				}
				env := l.env
				if env == "" {
					env = "–"
				}
				t.Fatalf("%s has no row | `%s` | `%s` | ... | (or its variable or key is wrong)", operatorGuide, key, env)
			}
			delete(byID, id(l.key, l.env))
			want := l.value.Interface()
			cell := unquote(r.def)
			if cell == "" {
				if !l.value.IsZero() {
					t.Fatalf("%s:%d: default %q, but the code's default is %v", operatorGuide, r.line, r.def, want)
				}
				return
			}
			got := reflect.New(l.value.Type()).Elem()
			if err := setValue(got, cell); err != nil {
				t.Fatalf("%s:%d: default %q does not parse as the key's type %s: %v", operatorGuide, r.line, r.def, l.value.Type(), err)
			}
			if !reflect.DeepEqual(got.Interface(), want) {
				t.Fatalf("%s:%d: default %q, but the code's default is %v", operatorGuide, r.line, r.def, want)
			}
		})
	}
	for _, r := range byID {
		t.Errorf("%s:%d: stale row %q / %q: no such configuration key", operatorGuide, r.line, r.key, r.env)
	}
	// A site's keys are documented in the site section (the YAML example or its text).
	site := reflect.TypeFor[Site]()
	for i := range site.NumField() {
		key, _, _ := strings.Cut(site.Field(i).Tag.Get("yaml"), ",")
		inYAML := regexp.MustCompile(`(?m)^\s*(- )?` + regexp.QuoteMeta(key) + `:`)
		if !inYAML.MatchString(doc) && !strings.Contains(doc, "`"+key+"`") {
			t.Errorf("%s does not document the site key %s", operatorGuide, key)
		}
	}
}

// TestConfigReferenceParser checks the parser on a small table: the test above is only as
// good as its reading of the markdown.
func TestConfigReferenceParser(t *testing.T) {
	doc := "intro\n\n| key | environment variable | default | meaning |\n|---|---|---|---|\n" +
		"| `listen` | `CTS_LISTEN` | `127.0.0.1:5000` | where |\n| – | `CTS_S3_SECRET_KEY` | – | secret |\n\nafter | not a row |\n"
	rows := configTable(t, doc)
	want := []docRow{{"listen", "CTS_LISTEN", "`127.0.0.1:5000`", 5}, {"", "CTS_S3_SECRET_KEY", "–", 6}}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
	var n int
	for _, l := range leaves(reflect.ValueOf(Default()), "") {
		switch {
		case l.key == "jobs.clean_age":
			n++
			if l.env != "CTS_JOBS_CLEAN_AGE" || l.value.Interface() != 720*time.Hour {
				t.Errorf("leaf %+v", l)
			}
		case l.key == "" && l.env == "CTS_S3_SECRET_KEY":
			n++
		case l.key == "sites":
			n++
		}
	}
	if n != 3 {
		t.Fatalf("found %d of the 3 probe keys", n)
	}
}
