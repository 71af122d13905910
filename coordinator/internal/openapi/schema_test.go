package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"image"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Representative types for the golden tests.
type (
	Inner struct {
		N int `json:"n"`
	}
	Base struct {
		ID      string    `json:"id" doc:"The ID."`
		Created time.Time `json:"created"`
	}
	Extra struct {
		Note string `json:"note"`
	}
	// Node is recursive through a slice and a pointer.
	Node struct {
		Name     string `json:"name"`
		Children []Node `json:"children,omitempty"`
		Parent   *Node  `json:"parent,omitempty"`
	}
	// Mutual recursion.
	Ping struct {
		Pong *Pong `json:"pong"`
	}
	Pong struct {
		Ping []Ping `json:"ping"`
	}
	// Union marshals as a string or an Inner object (a custom schema with SchemaOf).
	Union struct {
		S string
		I *Inner
	}
	// ISODuration has a custom schema through a pointer receiver.
	ISODuration float64
	// Point collides with image.Point.
	Point struct {
		Z int `json:"z"`
	}
	Level string
)

func (Union) JSONSchema() map[string]any {
	return Schema{"oneOf": []any{Schema{"type": "string"}, SchemaOf(Inner{})}}
}

func (u Union) MarshalJSON() ([]byte, error) {
	if u.I != nil {
		return json.Marshal(u.I)
	}
	return json.Marshal(u.S)
}

func (*ISODuration) JSONSchema() map[string]any {
	return Schema{"type": "string", "example": "PT1M", "description": "An ISO 8601 duration."}
}

type Everything struct {
	Base
	*Extra
	Name    string           `json:"name" example:"bob" enum:"bob,alice"`
	Count   int              `json:"count,omitempty" example:"3"`
	Ratio   float64          `json:"ratio"`
	Small   int8             `json:"small"`
	Unsign  uint32           `json:"unsign"`
	Ptr     *Inner           `json:"ptr" doc:"A nullable inner."`
	Opt     *string          `json:"opt,omitempty"`
	Inner   Inner            `json:"inner"`
	Anon    struct{ A bool } `json:"anon"`
	Tags    []string         `json:"tags" enum:"x,y"`
	Grid    [2]int           `json:"grid"`
	Meta    map[string]any   `json:"meta"`
	ByID    map[string]Inner `json:"by_id"`
	Counts  map[int]float32  `json:"counts"`
	Raw     json.RawMessage  `json:"raw"`
	Blob    []byte           `json:"blob"`
	When    *time.Time       `json:"when,omitempty"`
	Dur     time.Duration    `json:"dur"`
	Any     any              `json:"any"`
	U       Union            `json:"u"`
	Us      []Union          `json:"us"`
	Runtime ISODuration      `json:"runtime"`
	Tree    Node             `json:"tree"`
	Ping    Ping             `json:"ping_pong"`
	Lvl     Level            `json:"level" enum:"low,high" pattern:"^[a-z]+$"`
	Skip    string           `json:"-"`
	//lint:ignore SA5008 "-," names the member "-", the encoding/json rule under test
	Dash   string `json:"-,"`
	Quoted int64  `json:"quoted,string"`
	NoTag  string
	Zero   Inner       `json:"zero,omitzero"`
	Point  Point       `json:"point"`
	IPoint image.Point `json:"ipoint"`
	Num    json.Number `json:"num"`
	//lint:ignore U1000 an unexported field, which the schema must leave out
	hidden int
}

// Embedding conflicts, as encoding/json resolves them.
type (
	ConflictA struct {
		X int `json:"x"`
		Y int
		T int
	}
	ConflictB struct {
		Y int // ties with ConflictA.Y: dropped
		T int `json:"T"` // tagged: wins over ConflictA.T
	}
	Conflicts struct {
		ConflictA
		ConflictB
		Own int `json:"own"`
	}
	Shadow struct {
		ConflictA
		Y string // shallower: wins over ConflictA.Y
	}
	Named struct {
		ConflictA `json:"a"` // tagged embedded struct: not flattened
	}
)

// generate returns the resolved schema of v and the components it needs, as a document.
func generate(t *testing.T, v any, opts ...Option) map[string]any {
	t.Helper()
	d, err := Build(Info{Title: "t", Version: "1"}, []Route{{Method: "POST", Path: "/x", Auth: AuthNone, Request: v, Status: 204}}, opts...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	checkDocument(t, b)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	delete(schemas, ErrorSchemaName)
	delete(schemas, ValidationDetailSchemaName)
	body := doc["paths"].(map[string]any)["/x"].(map[string]any)["post"].(map[string]any)["requestBody"]
	return map[string]any{
		"schema":     body.(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"],
		"components": schemas,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run go test -update and review the diff):\n%s", path, got)
	}
}

func TestSchemaGolden(t *testing.T) {
	tests := []struct {
		name string
		v    any
		opts []Option
	}{
		{"everything", Everything{}, nil},
		{"conflicts", Conflicts{}, nil},
		{"shadow", Shadow{}, nil},
		{"named_embedded", Named{}, nil},
		{"recursive", Node{}, nil},
		{"slice_of_pointers", []*Inner{}, nil},
		{"map_top", map[string][]Base{}, nil},
		{"override", struct {
			L Level `json:"l"`
			P *Level
		}{}, []Option{WithSchema(Level(""), Schema{"type": "string", "enum": []string{"low", "high"}})}},
		{"field_override", Base{}, []Option{WithFieldSchema(Base{}, "created", Schema{"oneOf": []any{
			Schema{"type": "number"}, Schema{"type": "string", "format": "date-time"}, SchemaOf(Inner{}),
		}})}},
		{"override_wins_over_method", struct {
			R ISODuration `json:"r"`
		}{}, []Option{WithSchema(ISODuration(0), Schema{"type": "number"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := json.MarshalIndent(generate(t, tt.v, tt.opts...), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "schema_"+tt.name+".json", append(out, '\n'))
		})
	}
}

// TestSchemaMatchesEncodingJSON checks the field rules against encoding/json itself: a fully
// populated value has exactly the schema's properties, and a zero value has at least its
// required ones.
func TestSchemaMatchesEncodingJSON(t *testing.T) {
	s := "s"
	now := time.Now()
	full := Everything{
		Base: Base{ID: "i", Created: now}, Extra: &Extra{Note: "n"},
		Name: "bob", Count: 1, Ratio: 1, Small: 1, Unsign: 1, Ptr: &Inner{1}, Opt: &s, Inner: Inner{1},
		Tags: []string{"x"}, Meta: map[string]any{"a": 1}, ByID: map[string]Inner{"a": {}},
		Counts: map[int]float32{1: 1}, Raw: json.RawMessage(`{}`), Blob: []byte("b"), When: &now,
		Dur: 1, Any: 1, U: Union{S: "x"}, Runtime: 1, Tree: Node{Name: "n"}, Lvl: "low",
		Dash: "d", Quoted: 1, NoTag: "t", Zero: Inner{1}, Num: "1",
	}
	tests := []struct {
		name  string
		full  any
		zero  any
		extra []string // keys encoding/json writes for the zero value beyond required ones
	}{
		{"everything", full, Everything{}, []string{"ptr"}},
		{"conflicts", Conflicts{}, Conflicts{}, nil},
		{"shadow", Shadow{}, Shadow{}, nil},
		{"named", Named{}, Named{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGenerator()
			ty := reflect.TypeOf(tt.full)
			if _, err := g.schemaFor(ty); err != nil {
				t.Fatal(err)
			}
			comp := g.named[ty].(Schema)
			props := comp["properties"].(*orderedMap).keys
			required, _ := comp["required"].([]string)

			keysOf := func(v any) []string {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]json.RawMessage
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				var ks []string
				for k := range m {
					ks = append(ks, k)
				}
				slices.Sort(ks)
				return ks
			}
			gotProps := slices.Sorted(slices.Values(props))
			if want := keysOf(tt.full); !slices.Equal(gotProps, want) {
				t.Errorf("properties %v, encoding/json writes %v", gotProps, want)
			}
			zeroKeys := keysOf(tt.zero)
			for _, r := range required {
				if !slices.Contains(zeroKeys, r) {
					t.Errorf("required %q is absent from the zero value's JSON %v", r, zeroKeys)
				}
			}
			// Pointers without omitempty are written as null, but documented as optional
			// (a decoder accepts them absent); nothing else may be missing from required.
			for _, k := range zeroKeys {
				if !slices.Contains(required, k) && !slices.Contains(tt.extra, k) {
					t.Errorf("the zero value's JSON always has %q but it is not required", k)
				}
			}
		})
	}
}

// TestComponentNames checks stable names: plain unless two types share a name.
func TestComponentNames(t *testing.T) {
	type local struct {
		P Point       `json:"p"`
		I image.Point `json:"i"`
		N Node        `json:"n"`
	}
	got := generate(t, local{})["components"].(map[string]any)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"Node", "image.Point", "local", "openapi.Point"}
	if !slices.Equal(names, want) {
		t.Errorf("component names %v, want %v", names, want)
	}

	// A user type named like the error schema is qualified, not overwritten.
	type ErrorResponse struct {
		X int `json:"x"`
	}
	got = generate(t, ErrorResponse{})["components"].(map[string]any)
	if _, ok := got["openapi.ErrorResponse"]; !ok {
		t.Errorf("user ErrorResponse not qualified: %v", got)
	}
}

func TestComponentNamesGeneric(t *testing.T) {
	got := generate(t, Page[Inner]{})["components"].(map[string]any)
	if _, ok := got["Page_Inner"]; !ok {
		t.Errorf("generic component name: %v", got)
	}
}

// Page is a generic type.
type Page[T any] struct {
	Items []T `json:"items"`
}

func TestFieldSchemaUnknownMember(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
	}{
		{"typo", WithFieldSchema(Base{}, "create", Schema{"type": "number"})},
		{"Go name instead of JSON name", WithFieldSchema(Base{}, "Created", Schema{"type": "number"})},
		{"type not used", WithFieldSchema(Extra{}, "note", Schema{"type": "number"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Info{Title: "t", Version: "1"}, []Route{{Method: "GET", Path: "/x", Auth: AuthNone, Response: Base{}}}, tt.opt)
			if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "WithFieldSchema") {
				t.Errorf("error %v, want ErrSchema about WithFieldSchema", err)
			}
		})
	}
}

func TestSchemaErrors(t *testing.T) {
	type withChan struct {
		C chan int `json:"c"`
	}
	type badEnum struct {
		N int `json:"n" enum:"a,b"`
	}
	type badExample struct {
		N int `json:"n" example:"x"`
	}
	type enumOnRef struct {
		I Inner `json:"i" enum:"a"`
	}
	type badPattern struct {
		S string `json:"s" pattern:"("`
	}
	type badKey struct {
		M map[Inner]int `json:"m"`
	}
	type panics struct{ P panicky }
	type nilSchema struct{ N nilSchemer }
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"chan", withChan{}, "kind chan"},
		{"marshaler without schema", struct{ T marshalerOnly }{}, "MarshalJSON"},
		{"enum not JSON for int", badEnum{}, "enum tag"},
		{"example not JSON for int", badExample{}, "example tag"},
		{"enum on ref", enumOnRef{}, "$ref"},
		{"bad pattern", badPattern{}, "pattern tag"},
		{"bad map key", badKey{}, "map key"},
		{"func", func() {}, "kind func"},
		{"JSONSchema panics", panics{}, "panicked"},
		{"JSONSchema nil", nilSchema{}, "returned nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(Info{Title: "t", Version: "1"}, []Route{{Method: "GET", Path: "/x", Auth: AuthNone, Response: tt.v}})
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("error %v, want ErrSchema", err)
			}
			var re *RouteError
			if !errors.As(err, &re) || re.Path != "/x" {
				t.Errorf("error %v is not a RouteError for /x", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

type marshalerOnly struct{}

func (marshalerOnly) MarshalJSON() ([]byte, error) { return []byte(`1`), nil }

type panicky struct{ m map[string]any }

func (p panicky) JSONSchema() map[string]any {
	p.m["x"] = 1 // nil map write
	return p.m
}

type nilSchemer struct{}

func (nilSchemer) JSONSchema() map[string]any { return nil }
