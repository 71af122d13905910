package args

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/kbase/cts/shared/rawjson"
)

// DecodeParameters decodes the JSON "params" object of a job input the way the Python
// service's pydantic model does: unknown keys are refused at every level, JSON types are
// checked, defaults are applied and then every rule of Validate runs. All problems are
// returned (locations relative to params), in field order; the Parameters are usable only
// when there are none.
func DecodeParameters(data []byte) (Parameters, []Problem) {
	var p Parameters
	members, ok := rawjson.Members(data)
	if !ok {
		return p, []Problem{{Loc: []any{}, Type: "model_type",
			Msg:   "Input should be a valid dictionary or instance of Parameters",
			Input: rawjson.Value(data), Ctx: map[string]any{"class_name": "Parameters"}}}
	}
	d := decoder{}
	for _, m := range members {
		loc := []any{m.Key}
		switch m.Key {
		case "input_mount_point":
			d.str(loc, m.Raw, false, &p.InputMountPoint)
		case "output_mount_point":
			d.str(loc, m.Raw, false, &p.OutputMountPoint)
		case "refdata_mount_point":
			d.optional(loc, m.Raw, mountPoint, &p.RefdataMountPoint)
		case "declobber":
			d.boolean(loc, m.Raw, &p.Declobber)
		case "args":
			p.Args = d.args(m.Raw)
		case "environment":
			p.Environment = d.environment(m.Raw)
		default:
			d.fail(extraForbidden(loc, rawjson.Value(m.Raw)))
		}
	}
	// An empty list or object is stored and rendered as absent, like null.
	if len(p.Args) == 0 {
		p.Args = nil
	}
	if len(p.Environment) == 0 {
		p.Environment = nil
	}
	p.ApplyDefaults()
	for _, v := range p.Validate() {
		if !d.isBad(v.Loc) {
			d.problems = append(d.problems, v)
		}
	}
	ps := prune(d.problems)
	if len(ps) == 0 {
		// The container sees "/data/../in/" as /in: store and hand the agent that form.
		p.InputMountPoint, p.OutputMountPoint = CleanMountPoint(p.InputMountPoint), CleanMountPoint(p.OutputMountPoint)
		if p.RefdataMountPoint != "" {
			p.RefdataMountPoint = CleanMountPoint(p.RefdataMountPoint)
		}
	}
	sortProblems(ps, p.Environment, members)
	return p, ps
}

// decoder collects structural problems and the locations they make unusable.
type decoder struct {
	problems []Problem
	bad      [][]any
}

func (d *decoder) add(ps ...Problem) {
	for _, p := range ps {
		d.fail(p)
	}
}

// fail records a problem and marks its location bad, so Validate's findings about the
// placeholder left there are not reported.
func (d *decoder) fail(p Problem) {
	d.problems = append(d.problems, p)
	d.bad = append(d.bad, p.Loc)
}

// isBad tells whether a Validate problem at loc concerns a bad location: at or below it, or
// a model-level rule above it.
func (d *decoder) isBad(loc []any) bool {
	for _, b := range d.bad {
		if hasPrefix(loc, b) || hasPrefix(b, loc) {
			return true
		}
	}
	return false
}

// str decodes a string; null is accepted (as "") only if nullable. It reports whether the
// value was usable.
func (d *decoder) str(loc []any, raw json.RawMessage, nullable bool, dst *string) bool {
	switch rawjson.KindOf(raw) {
	case rawjson.String:
		return json.Unmarshal(raw, dst) == nil
	case rawjson.Null:
		if nullable {
			*dst = ""
			return true
		}
	}
	d.fail(Problem{Loc: loc, Type: "string_type", Msg: "Input should be a valid string", Input: rawjson.Value(raw)})
	return false
}

// boolean decodes a bool leniently, as pydantic's lax mode does: JSON booleans, 0 and 1,
// and the strings true/false/yes/no/on/off/t/f/y/n/1/0 in any case.
func (d *decoder) boolean(loc []any, raw json.RawMessage, dst *bool) {
	input := rawjson.Value(raw)
	switch v := input.(type) {
	case bool:
		*dst = v
		return
	case json.Number:
		if f, err := v.Float64(); err == nil && (f == 0 || f == 1) && !math.IsInf(f, 0) {
			*dst = f == 1
			return
		}
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "0", "off", "f", "false", "n", "no":
			*dst = false
			return
		case "1", "on", "t", "true", "y", "yes":
			*dst = true
			return
		}
	}
	typ, msg := "bool_type", "Input should be a valid boolean"
	switch input.(type) {
	case json.Number, string:
		typ, msg = "bool_parsing", "Input should be a valid boolean, unable to interpret input"
	}
	d.fail(Problem{Loc: loc, Type: typ, Msg: msg, Input: input})
}

func (d *decoder) args(raw json.RawMessage) []Arg {
	switch rawjson.KindOf(raw) {
	case rawjson.Null:
		return nil
	case rawjson.Array:
	default:
		d.fail(Problem{Loc: []any{"args"}, Type: "list_type", Msg: "Input should be a valid list",
			Input: rawjson.Value(raw)})
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.fail(Problem{Loc: []any{"args"}, Type: "list_type", Msg: "Input should be a valid list",
			Input: rawjson.Value(raw)})
		return nil
	}
	if n := len(items); n > MaxArgs {
		d.fail(Problem{Loc: []any{"args"}, Type: "too_long",
			Msg:   fmt.Sprintf("List should have at most %d items after validation, not %d", MaxArgs, n),
			Input: nil, Ctx: map[string]any{"field_type": "List", "max_length": MaxArgs, "actual_length": n}})
		return nil
	}
	out := make([]Arg, len(items))
	for i, item := range items {
		out[i] = d.value([]any{"args", i}, item, true)
	}
	return out
}

func (d *decoder) environment(raw json.RawMessage) Environment {
	if rawjson.KindOf(raw) == rawjson.Null {
		return nil
	}
	members, ok := rawjson.Members(raw)
	if !ok {
		d.fail(Problem{Loc: []any{"environment"}, Type: "dict_type",
			Msg: "Input should be a valid dictionary", Input: rawjson.Value(raw)})
		return nil
	}
	if n := len(members); n > MaxEnvironment {
		d.fail(Problem{Loc: []any{"environment"}, Type: "too_long",
			Msg:   fmt.Sprintf("Dictionary should have at most %d items after validation, not %d", MaxEnvironment, n),
			Input: nil, Ctx: map[string]any{"field_type": "Dictionary", "max_length": MaxEnvironment, "actual_length": n}})
		return nil
	}
	env := make(Environment, len(members))
	for i, m := range members {
		env[i] = EnvVar{Key: m.Key, Value: d.value([]any{"environment", m.Key}, m.Raw, false)}
	}
	return env
}

// value decodes an args item or an environment value: a string, or a Parameter object.
func (d *decoder) value(loc []any, raw json.RawMessage, withFlag bool) Arg {
	switch rawjson.KindOf(raw) {
	case rawjson.String:
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return Arg{Literal: s}
		}
	case rawjson.Object:
		return Arg{Param: d.param(loc, raw, withFlag)}
	}
	d.fail(Problem{Loc: loc, Type: "string_type", Msg: "Input should be a valid string or dictionary",
		Input: rawjson.Value(raw)})
	return Arg{}
}

func (d *decoder) param(loc []any, raw json.RawMessage, withFlag bool) *Parameter {
	p := &Parameter{}
	members, _ := rawjson.Members(raw)
	for _, m := range members {
		at := appendLoc(loc, m.Key)
		switch m.Key {
		case "type":
			d.enum(at, m.Raw, false, parameterTypes, &p.Type)
		case "input_files_format":
			d.enum(at, m.Raw, true, inputFilesFormats, &p.InputFilesFormat)
		case "manifest_file_format":
			d.enum(at, m.Raw, true, manifestFormats, &p.ManifestFileFormat)
		case "manifest_file_header":
			d.optional(at, m.Raw, headerString, &p.ManifestFileHeader)
		case "container_num_prefix":
			d.optional(at, m.Raw, argumentString, &p.ContainerNumPrefix)
		case "container_num_suffix":
			d.optional(at, m.Raw, argumentString, &p.ContainerNumSuffix)
		case "flag":
			if !withFlag {
				d.fail(extraForbidden(at, rawjson.Value(m.Raw)))
				continue
			}
			d.optional(at, m.Raw, flagString, &p.Flag)
		default:
			d.fail(extraForbidden(at, rawjson.Value(m.Raw)))
		}
	}
	return p
}

// enum decodes an enum string; an explicit empty string or a non-string is an enum error.
func (d *decoder) enum(loc []any, raw json.RawMessage, nullable bool, allowed []string, dst *string) {
	input := rawjson.Value(raw)
	if input == nil && nullable {
		return
	}
	if s, ok := input.(string); ok && slices.Contains(allowed, s) {
		*dst = s
		return
	}
	d.add(checkEnum(loc, input, allowed)...)
}

// optional decodes a nullable constrained string. An explicit empty string cannot be kept
// (empty means absent), so its length problem is reported here.
func (d *decoder) optional(loc []any, raw json.RawMessage, t strType, dst *string) {
	if !d.str(loc, raw, true, dst) {
		return
	}
	if rawjson.KindOf(raw) == rawjson.String && *dst == "" {
		d.add(checkStr(loc, "", t)...)
	}
}

// sortProblems orders problems as pydantic reports them: by field (declared order, then
// unknown keys in input order), then by item.
func sortProblems(ps []Problem, env Environment, members []rawjson.Member) {
	fields := map[string]int{"input_mount_point": 0, "output_mount_point": 1, "declobber": 2,
		"refdata_mount_point": 3, "args": 4, "environment": 5}
	extra := map[string]int{}
	for i, m := range members {
		extra[m.Key] = 10 + i
	}
	envPos := map[string]int{}
	for i, e := range env {
		if _, ok := envPos[e.Key]; !ok {
			envPos[e.Key] = i
		}
	}
	rank := func(loc []any) (int, int) {
		if len(loc) == 0 {
			return math.MaxInt, 0
		}
		f, _ := loc[0].(string)
		r1, ok := fields[f]
		if !ok {
			r1 = extra[f]
		}
		if len(loc) < 2 {
			return r1, -1
		}
		switch v := loc[1].(type) {
		case int:
			return r1, v
		case string:
			return r1, envPos[v]
		}
		return r1, 0
	}
	// Within one item, a dictionary key's problem comes before its value's.
	keyFirst := func(loc []any) int {
		if len(loc) > 2 && loc[2] == "[key]" {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(ps, func(a, b Problem) int {
		a1, a2 := rank(a.Loc)
		b1, b2 := rank(b.Loc)
		if c := cmp.Compare(a1, b1); c != 0 {
			return c
		}
		if c := cmp.Compare(a2, b2); c != 0 {
			return c
		}
		return cmp.Compare(keyFirst(a.Loc), keyFirst(b.Loc))
	})
}
