package openapi

import (
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// field is one JSON member of a struct, found with encoding/json's rules.
type field struct {
	name   string
	tagged bool // the name came from a json tag
	index  []int
	sf     reflect.StructField
	omit   bool         // omitempty or omitzero
	quoted bool         // ",string" on a scalar
	viaPtr bool         // promoted through an embedded pointer: absent when that pointer is nil
	typ    reflect.Type // the field type with an unnamed pointer removed
}

// jsonFields returns the fields encoding/json encodes for struct type t, in encoding order.
// It follows encoding/json's typeFields: embedded structs without a json name are flattened,
// the shallowest field of a name wins, a tie is broken by a json tag, and an unbroken tie
// drops the name.
func jsonFields(t reflect.Type) []field {
	type level struct {
		typ    reflect.Type
		index  []int
		viaPtr bool
	}
	var fields []field
	current := []level{}
	next := []level{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}

	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, f := range current {
			if visited[f.typ] {
				continue
			}
			visited[f.typ] = true
			for i := range f.typ.NumField() {
				sf := f.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTagName(name) {
					name = ""
				}
				index := append(slices.Clone(f.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					nf := field{
						name:   name,
						tagged: name != "",
						index:  index,
						sf:     sf,
						omit:   hasOpt(opts, "omitempty") || hasOpt(opts, "omitzero"),
						viaPtr: f.viaPtr,
						typ:    ft,
					}
					if nf.name == "" {
						nf.name = sf.Name
					}
					if hasOpt(opts, "string") {
						switch ft.Kind() {
						case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32,
							reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32,
							reflect.Uint64, reflect.Uintptr, reflect.Float32, reflect.Float64, reflect.String:
							nf.quoted = true
						}
					}
					fields = append(fields, nf)
					if count[f.typ] > 1 {
						// Two embeddings of the same type at one level annihilate each other;
						// the duplicate makes the tie below drop the name.
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, level{typ: ft, index: index, viaPtr: f.viaPtr || sf.Type.Kind() == reflect.Pointer})
				}
			}
		}
	}

	slices.SortStableFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := len(a.index) - len(b.index); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := fields[:0]
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		if f, ok := dominant(fields[i:j]); ok {
			out = append(out, f)
		}
		i = j
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return out
}

// dominant picks the field that wins among fields of one name (sorted by depth, then tag).
func dominant(fs []field) (field, bool) {
	if len(fs) > 1 && len(fs[0].index) == len(fs[1].index) && fs[0].tagged == fs[1].tagged {
		return field{}, false
	}
	return fs[0], true
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// validTagName mirrors encoding/json's isValidTag.
func validTagName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
