package openapi

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	numberType        = reflect.TypeFor[json.Number]()
	durationType      = reflect.TypeFor[time.Duration]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	schemerType       = reflect.TypeFor[Schemer]()
)

// refMarker stands for a reference to a named struct type's component while the document is
// built; component names are chosen once every type is known.
type refMarker struct{ t reflect.Type }

// schemaOf is the placeholder SchemaOf returns.
type schemaOf struct{ t reflect.Type }

// SchemaOf returns a placeholder for the generated schema of v's type, for use inside custom
// schemas (JSONSchema methods, WithSchema): a named struct becomes a $ref to its component.
// Like everywhere in this package, v may be a reflect.Type, and a pointer value is
// dereferenced (use reflect.TypeFor[*T]() for a nullable T).
func SchemaOf(v any) any { return schemaOf{typeOfValue(v)} }

// typeOfValue is the type a value stands for: v itself if it is a reflect.Type, else its
// dynamic type with one level of pointer removed (a body is never null). nil gives nil.
func typeOfValue(v any) reflect.Type {
	if t, ok := v.(reflect.Type); ok {
		return t
	}
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

type generator struct {
	overrides map[reflect.Type]Schema
	// fieldOverrides are WithFieldSchema's schemas per struct type and JSON name;
	// usedFieldOverrides records those applied, so a typo is reported.
	fieldOverrides     map[reflect.Type]map[string]Schema
	usedFieldOverrides map[reflect.Type]map[string]bool
	named              map[reflect.Type]any // component schema of each named struct type
	order              []reflect.Type       // named types in discovery order
	names              map[reflect.Type]string
}

func newGenerator() *generator {
	return &generator{
		overrides:          map[reflect.Type]Schema{},
		fieldOverrides:     map[reflect.Type]map[string]Schema{},
		usedFieldOverrides: map[reflect.Type]map[string]bool{},
		named:              map[reflect.Type]any{},
		names:              map[reflect.Type]string{},
	}
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

// schemaFor returns the schema of t: a fresh Schema, or a refMarker for a named struct.
func (g *generator) schemaFor(t reflect.Type) (any, error) {
	if t == nil {
		return Schema{}, nil
	}
	if s, ok := g.overrides[t]; ok {
		return g.expand(s)
	}
	if t.Kind() == reflect.Pointer {
		s, err := g.schemaFor(t.Elem())
		if err != nil {
			return nil, err
		}
		return nullable(s, t.Elem()), nil
	}
	if s, ok, err := g.custom(t); ok || err != nil {
		return s, err
	}
	switch t {
	case timeType:
		return Schema{"type": "string", "format": "date-time"}, nil
	case rawMessageType:
		return Schema{}, nil
	case numberType:
		return Schema{"type": "number"}, nil
	case durationType:
		// encoding/json writes a time.Duration as its integer nanoseconds.
		return Schema{"type": "integer", "format": "int64", "description": "A duration in nanoseconds."}, nil
	}
	if t.Kind() != reflect.Interface {
		if implements(t, jsonMarshalerType) {
			return nil, fmt.Errorf("%w: %s has a MarshalJSON method: declare its schema with a JSONSchema method or openapi.WithSchema", ErrSchema, t)
		}
		if implements(t, textMarshalerType) {
			return Schema{"type": "string"}, nil
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return Schema{"type": "boolean"}, nil
	case reflect.Int, reflect.Int64:
		return Schema{"type": "integer", "format": "int64"}, nil
	case reflect.Int32:
		return Schema{"type": "integer", "format": "int32"}, nil
	case reflect.Int8:
		return Schema{"type": "integer", "minimum": math.MinInt8, "maximum": math.MaxInt8}, nil
	case reflect.Int16:
		return Schema{"type": "integer", "minimum": math.MinInt16, "maximum": math.MaxInt16}, nil
	case reflect.Uint8:
		return Schema{"type": "integer", "minimum": 0, "maximum": math.MaxUint8}, nil
	case reflect.Uint16:
		return Schema{"type": "integer", "minimum": 0, "maximum": math.MaxUint16}, nil
	case reflect.Uint32:
		return Schema{"type": "integer", "minimum": 0, "maximum": uint64(math.MaxUint32)}, nil
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return Schema{"type": "integer", "minimum": 0}, nil
	case reflect.Float32:
		return Schema{"type": "number", "format": "float"}, nil
	case reflect.Float64:
		return Schema{"type": "number", "format": "double"}, nil
	case reflect.String:
		return Schema{"type": "string"}, nil
	case reflect.Interface:
		return Schema{}, nil
	case reflect.Slice:
		e := t.Elem()
		if e.Kind() == reflect.Uint8 && !implements(e, jsonMarshalerType) && !implements(e, textMarshalerType) {
			return Schema{"type": "string", "format": "byte"}, nil
		}
		items, err := g.schemaFor(e)
		if err != nil {
			return nil, err
		}
		return Schema{"type": "array", "items": items}, nil
	case reflect.Array:
		items, err := g.schemaFor(t.Elem())
		if err != nil {
			return nil, err
		}
		return Schema{"type": "array", "items": items, "minItems": t.Len(), "maxItems": t.Len()}, nil
	case reflect.Map:
		k := t.Key()
		switch k.Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !implements(k, textMarshalerType) {
				return nil, fmt.Errorf("%w: %s: map key type %s cannot be a JSON object key", ErrSchema, t, k)
			}
		}
		v, err := g.schemaFor(t.Elem())
		if err != nil {
			return nil, err
		}
		return Schema{"type": "object", "additionalProperties": v}, nil
	case reflect.Struct:
		if t.Name() == "" {
			return g.structSchema(t)
		}
		if _, seen := g.named[t]; !seen {
			g.named[t] = nil // marks it in progress, so recursive types end here
			g.order = append(g.order, t)
			s, err := g.structSchema(t)
			if err != nil {
				return nil, err
			}
			g.named[t] = s
		}
		return refMarker{t}, nil
	default:
		return nil, fmt.Errorf("%w: %s: kind %s has no JSON form", ErrSchema, t, t.Kind())
	}
}

// custom returns the schema of a type with a JSONSchema method.
func (g *generator) custom(t reflect.Type) (s any, ok bool, err error) {
	var v reflect.Value
	switch {
	case t.Kind() == reflect.Interface:
		return nil, false, nil
	case t.Implements(schemerType):
		v = reflect.Zero(t)
	case reflect.PointerTo(t).Implements(schemerType):
		v = reflect.New(t)
	default:
		return nil, false, nil
	}
	defer func() {
		if r := recover(); r != nil {
			s, ok, err = nil, true, fmt.Errorf("%w: %s.JSONSchema panicked: %v", ErrSchema, t, r)
		}
	}()
	m := v.Interface().(Schemer).JSONSchema()
	if m == nil {
		return nil, true, fmt.Errorf("%w: %s.JSONSchema returned nil", ErrSchema, t)
	}
	s, err = g.expand(m)
	return s, true, err
}

// expand deep-copies a custom schema, replacing SchemaOf placeholders.
func (g *generator) expand(v any) (any, error) {
	switch x := v.(type) {
	case schemaOf:
		return g.schemaFor(x.t)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := g.expand(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := g.expand(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := g.expand(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case []string:
		return slices.Clone(x), nil
	default:
		return v, nil
	}
}

// isRef reports whether s is (or is only) a reference, to which no sibling keyword may be
// added in OpenAPI 3.0.
func isRef(s any) bool {
	switch x := s.(type) {
	case refMarker:
		return true
	case map[string]any:
		_, ok := x["$ref"]
		return ok
	}
	return false
}

// nullable returns s, the schema of Go type t, that also accepts null. OpenAPI 3.0 wants a
// type beside nullable; a reference gets its struct's ("object").
func nullable(s any, t reflect.Type) any {
	if isRef(s) {
		m := Schema{"allOf": []any{s}, "nullable": true}
		if t.Kind() == reflect.Struct {
			m["type"] = "object"
		}
		return m
	}
	m := s.(map[string]any)
	m["nullable"] = true
	return m
}

// annotate sets a keyword that may sit beside a reference (description, example, default),
// wrapping a reference in allOf.
func annotate(s any, key string, v any) any {
	if isRef(s) {
		return Schema{"allOf": []any{s}, key: v}
	}
	m := s.(map[string]any)
	m[key] = v
	return m
}

// scalarTarget returns the schema a constraint (enum, pattern, format) applies to: s itself,
// or the items of an array. It fails on references.
func scalarTarget(s any) (map[string]any, error) {
	if isRef(s) {
		return nil, fmt.Errorf("%w: constraints cannot be added to a $ref schema", ErrSchema)
	}
	m := s.(map[string]any)
	if m["type"] == "array" {
		return scalarTarget(m["items"])
	}
	if _, ok := m["allOf"]; ok {
		return nil, fmt.Errorf("%w: constraints cannot be added to a $ref schema", ErrSchema)
	}
	return m, nil
}

// parseValue parses a tag or Param value for a schema: verbatim for strings, JSON otherwise.
func parseValue(target map[string]any, raw string) (any, error) {
	if target["type"] == "string" {
		return raw, nil
	}
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return nil, fmt.Errorf("%w: value %q is not valid JSON for a %v schema", ErrSchema, raw, target["type"])
	}
	return v, nil
}

func (g *generator) structSchema(t reflect.Type) (any, error) {
	props := newOrderedMap()
	var required []string
	for _, f := range jsonFields(t) {
		s, err := g.fieldSchema(t, f)
		if err != nil {
			return nil, fmt.Errorf("%s field %s: %w", t, f.sf.Name, err)
		}
		props.set(f.name, s)
		req := !f.omit && !f.viaPtr && f.sf.Type.Kind() != reflect.Pointer
		if v, ok := f.sf.Tag.Lookup("required"); ok {
			switch v {
			case "true":
				req = true
			case "false":
				req = false
			default:
				return nil, fmt.Errorf("%w: %s field %s: required tag must be true or false", ErrSchema, t, f.sf.Name)
			}
		}
		if req {
			required = append(required, f.name)
		}
	}
	out := Schema{"type": "object", "properties": props}
	if len(required) > 0 {
		out["required"] = required
	}
	return out, nil
}

func (g *generator) fieldSchema(owner reflect.Type, f field) (any, error) {
	var s any
	if o, ok := g.fieldOverrides[owner][f.name]; ok {
		if g.usedFieldOverrides[owner] == nil {
			g.usedFieldOverrides[owner] = map[string]bool{}
		}
		g.usedFieldOverrides[owner][f.name] = true
		var err error
		if s, err = g.expand(o); err != nil {
			return nil, err
		}
	} else if f.quoted {
		m := Schema{"type": "string"}
		if f.sf.Type.Kind() == reflect.Pointer {
			m["nullable"] = true
		}
		s = m
	} else {
		var err error
		if s, err = g.schemaFor(f.sf.Type); err != nil {
			return nil, err
		}
	}
	tag := f.sf.Tag
	for _, key := range []string{"format", "pattern"} {
		if v, ok := tag.Lookup(key); ok {
			target, err := scalarTarget(s)
			if err != nil {
				return nil, err
			}
			if key == "pattern" {
				if _, err := regexp.Compile(v); err != nil {
					return nil, fmt.Errorf("%w: pattern tag: %w", ErrSchema, err)
				}
			}
			target[key] = v
		}
	}
	if v, ok := tag.Lookup("enum"); ok {
		target, err := scalarTarget(s)
		if err != nil {
			return nil, err
		}
		var vals []any
		for _, raw := range strings.Split(v, ",") {
			pv, err := parseValue(target, raw)
			if err != nil {
				return nil, fmt.Errorf("enum tag: %w", err)
			}
			vals = append(vals, pv)
		}
		target["enum"] = vals
	}
	if v, ok := tag.Lookup("example"); ok {
		var ex any = v
		if !isRef(s) && s.(map[string]any)["type"] != "string" {
			if err := json.Unmarshal([]byte(v), &ex); err != nil {
				return nil, fmt.Errorf("%w: example tag %q is not valid JSON", ErrSchema, v)
			}
		}
		s = annotate(s, "example", ex)
	}
	if v, ok := tag.Lookup("doc"); ok && v != "" {
		s = annotate(s, "description", v)
	}
	return s, nil
}

func (g *generator) paramSchema(p Param) (any, error) {
	t := typeOfValue(p.Schema)
	if t == nil {
		t = reflect.TypeFor[string]()
	}
	s, err := g.schemaFor(t)
	if err != nil {
		return nil, err
	}
	if p.Pattern != "" || p.Minimum != nil || p.Maximum != nil || p.MinLength != nil || p.MaxLength != nil || len(p.Enum) > 0 {
		if isRef(s) {
			return nil, fmt.Errorf("%w: constraints cannot be added to a $ref schema", ErrSchema)
		}
		m := s.(map[string]any)
		if p.Pattern != "" {
			if _, err := regexp.Compile(p.Pattern); err != nil {
				return nil, fmt.Errorf("%w: pattern: %w", ErrSchema, err)
			}
			m["pattern"] = p.Pattern
		}
		if p.Minimum != nil {
			m["minimum"] = *p.Minimum
		}
		if p.Maximum != nil {
			m["maximum"] = *p.Maximum
		}
		if p.MinLength != nil {
			m["minLength"] = *p.MinLength
		}
		if p.MaxLength != nil {
			m["maxLength"] = *p.MaxLength
		}
		if len(p.Enum) > 0 {
			vals := make([]any, 0, len(p.Enum))
			for _, raw := range p.Enum {
				v, err := parseValue(m, raw)
				if err != nil {
					return nil, fmt.Errorf("enum: %w", err)
				}
				vals = append(vals, v)
			}
			m["enum"] = vals
		}
	}
	if p.Default != nil {
		s = annotate(s, "default", p.Default)
	}
	if p.Example != nil {
		s = annotate(s, "example", p.Example)
	}
	return s, nil
}

var (
	genericArgsRE = regexp.MustCompile(`\[.*\]$`)
	badNameRE     = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
)

// baseName is a type's component name before collisions: its name, with the last element
// of each generic type argument, e.g. Page[example.com/x.Item] → Page_Item.
func baseName(t reflect.Type) string {
	name := t.Name()
	if args := genericArgsRE.FindString(name); args != "" {
		name = strings.TrimSuffix(name, args)
		for _, a := range strings.FieldsFunc(args, func(r rune) bool { return strings.ContainsRune("[], ", r) }) {
			if i := strings.LastIndexAny(a, "./"); i >= 0 {
				a = a[i+1:]
			}
			name += "_" + a
		}
	}
	return badNameRE.ReplaceAllString(name, "_")
}

func pkgName(t reflect.Type) string {
	p := t.PkgPath()
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	return badNameRE.ReplaceAllString(p, "_")
}

// assignNames names every component: the type name when it is unique, else the package name
// and type name, else the full package path; a remaining tie (types local to functions) gets
// a numeric suffix in discovery order.
func (g *generator) assignNames() {
	reserved := map[string]bool{ErrorSchemaName: true, ValidationDetailSchemaName: true}
	groups := map[string][]reflect.Type{}
	for _, t := range g.order {
		b := baseName(t)
		groups[b] = append(groups[b], t)
	}
	for b, ts := range groups {
		if len(ts) == 1 && !reserved[b] {
			g.names[ts[0]] = b
			continue
		}
		byPkg := map[string][]reflect.Type{}
		for _, t := range ts {
			q := pkgName(t) + "." + b
			byPkg[q] = append(byPkg[q], t)
		}
		for q, us := range byPkg {
			for _, u := range us {
				if len(us) == 1 {
					g.names[u] = q
				} else {
					g.names[u] = strings.ReplaceAll(badNameRE.ReplaceAllString(u.PkgPath(), "_"), "/", ".") + "." + b
				}
			}
		}
	}
	used := map[string]bool{ErrorSchemaName: true, ValidationDetailSchemaName: true}
	for _, t := range g.order {
		n := g.names[t]
		for i := 2; used[n]; i++ {
			n = fmt.Sprintf("%s_%d", g.names[t], i)
		}
		used[n] = true
		g.names[t] = n
	}
}

// components names the collected types and returns the schemas section, sorted by name,
// with the CTS error schemas.
func (g *generator) components() (*orderedMap, error) {
	g.assignNames()
	byName := map[string]any{}
	for t, s := range g.named {
		byName[g.names[t]] = s
	}
	byName[ErrorSchemaName] = errorSchema()
	byName[ValidationDetailSchemaName] = validationDetailSchema()
	out := newOrderedMap()
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		out.set(n, byName[n])
	}
	return out, nil
}

// resolve replaces refMarkers with $ref objects, in place.
func (g *generator) resolve(v any) any {
	switch x := v.(type) {
	case refMarker:
		return Schema{"$ref": "#/components/schemas/" + g.names[x.t]}
	case *orderedMap:
		for _, k := range x.keys {
			x.vals[k] = g.resolve(x.vals[k])
		}
		return x
	case map[string]any:
		// Written as an ordered map so keywords read naturally ("type" first).
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int {
			if ra, rb := keyRank(a), keyRank(b); ra != rb {
				return ra - rb
			}
			return strings.Compare(a, b)
		})
		out := newOrderedMap()
		for _, k := range keys {
			out.set(k, g.resolve(x[k]))
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = g.resolve(e)
		}
		return x
	default:
		return v
	}
}

// keyOrder is the order of well-known keywords in the output; others follow alphabetically.
var keyOrder = []string{"$ref", "name", "in", "type", "format", "nullable", "title", "summary",
	"description", "required", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength",
	"minItems", "maxItems", "default", "example", "items", "properties", "additionalProperties",
	"oneOf", "anyOf", "allOf", "headers", "content", "schema"}

func keyRank(k string) int {
	if i := slices.Index(keyOrder, k); i >= 0 {
		return i
	}
	return len(keyOrder)
}

// orderedMap is a JSON object that keeps insertion order, so properties appear in field
// order and paths in route order (JavaScript's JSON.parse keeps that order too).
type orderedMap struct {
	keys []string
	vals map[string]any
}

func newOrderedMap() *orderedMap { return &orderedMap{vals: map[string]any{}} }

func (m *orderedMap) set(k string, v any) {
	if _, ok := m.vals[k]; !ok {
		m.keys = append(m.keys, k)
	}
	m.vals[k] = v
}

func (m *orderedMap) get(k string) any { return m.vals[k] }

// MarshalJSON writes the members in insertion order.
func (m *orderedMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := marshalNoEscape(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		vb, err := marshalNoEscape(m.vals[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalNoEscape is json.Marshal without HTML escaping: the document is served as JSON, and
// patterns and descriptions stay readable.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func marshalIndent(v any) ([]byte, error) {
	raw, err := marshalNoEscape(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
