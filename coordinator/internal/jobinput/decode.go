package jobinput

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/rawjson"
	"github.com/kbase/cts/shared/s3path"
)

// Decode reads a POST /jobs body and returns the validated, normalised JobInput with its
// defaults applied. Any problem with the body (not JSON, trailing data, unknown keys at any
// level, wrong types, any rule of the Python service's JobInput) is returned as one *ctserr.Error of
// code CodeRequestValidation holding every problem found, with pydantic-shaped details whose
// loc starts with "body". Only a failure to read r is returned as another error (wrapped).
func Decode(r io.Reader, opts Options) (*JobInput, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read job input: %w", err)
	}
	return decode(body, opts)
}

func decode(body []byte, opts Options) (*JobInput, error) {
	if d := checkJSON(body); d != nil {
		return nil, ctserr.Validation(*d)
	}
	members, ok := rawjson.Members(body)
	if !ok {
		return nil, ctserr.Validation(detail([]any{"body"}, "model_attributes_type",
			"Input should be a valid dictionary or object to extract fields from", rawjson.Value(body), nil))
	}
	d := &decoder{opts: opts, fields: map[string]json.RawMessage{}}
	for _, m := range members {
		d.fields[m.Key] = m.Raw
	}
	ji := &JobInput{
		NumContainers:  DefaultNumContainers,
		CPUs:           DefaultCPUs,
		Memory:         DefaultMemory,
		RuntimeSeconds: DefaultRuntimeSeconds,
	}
	var bodyInput any // decoded lazily: only "missing" details echo the whole body
	missing := func(name string) {
		if bodyInput == nil {
			bodyInput = rawjson.Value(body)
		}
		d.add(detail([]any{"body", name}, "missing", "Field required", bodyInput, nil))
	}
	// Fields in declaration order, as pydantic reports them.
	d.field("cluster", missing, func(raw json.RawMessage) bool { return d.cluster(raw, &ji.Cluster) })
	d.field("image", missing, func(raw json.RawMessage) bool {
		return d.str(loc("image"), raw, 1, MaxImageLength, &ji.Image)
	})
	okParams := d.field("params", missing, func(raw json.RawMessage) bool { return d.params(raw, &ji.Params) })
	okNum := d.optionalField("num_containers", func(raw json.RawMessage) bool {
		return d.integer(loc("num_containers"), raw, 1, int64(opts.MaxContainers), &ji.NumContainers)
	})
	d.optionalField("cpus", func(raw json.RawMessage) bool {
		return d.integer(loc("cpus"), raw, 1, int64(opts.MaxCPUs), &ji.CPUs)
	})
	d.optionalField("memory", func(raw json.RawMessage) bool { return d.memory(raw, &ji.Memory) })
	d.optionalField("runtime", func(raw json.RawMessage) bool { return d.runtime(raw, &ji.RuntimeSeconds) })
	okRoots := d.optionalField("input_roots", func(raw json.RawMessage) bool { return d.inputRoots(raw, &ji.InputRoots) })
	d.field("output_dir", missing, func(raw json.RawMessage) bool { return d.outputDir(raw, &ji.OutputDir) })
	okFiles := d.field("input_files", missing, func(raw json.RawMessage) bool { return d.inputFiles(raw, &ji.InputFiles) })
	for _, m := range members {
		if !slices.Contains(fieldNames, m.Key) {
			d.add(detail([]any{"body", m.Key}, "extra_forbidden", "Extra inputs are not permitted", rawjson.Value(m.Raw), nil))
		}
	}
	// Model-level rules, each only when the fields it reads are valid.
	if okNum && okFiles && ji.NumContainers > len(ji.InputFiles) {
		d.add(valueError([]any{"body"}, nil, "num_containers must be less than or equal to the number of input files"))
	}
	if okParams && okFiles {
		if fp := ji.Params.FileParameter(); fp != nil && fp.Type == args.TypeManifestFile &&
			fp.ManifestFileFormat == args.ManifestDataIDs && (len(ji.InputFiles) == 0 || ji.InputFiles[0].DataID == "") {
			d.add(valueError([]any{"body"}, nil,
				"A manifest_file parameter with the data_ids format requires data IDs for the input files"))
		}
	}
	if okParams && okFiles && okRoots {
		if _, err := ji.Placements(); err != nil {
			var ce *ctserr.Error
			if errors.As(err, &ce) {
				d.add(ce.Validation...)
			}
		}
	}
	if len(d.details) > 0 {
		return nil, ctserr.Validation(d.details...)
	}
	return ji, nil
}

var fieldNames = []string{"cluster", "image", "params", "num_containers", "cpus", "memory", "runtime",
	"input_roots", "output_dir", "input_files"}

type decoder struct {
	opts    Options
	fields  map[string]json.RawMessage
	details []ctserr.ValidationDetail
}

func (d *decoder) add(ds ...ctserr.ValidationDetail) { d.details = append(d.details, ds...) }

// field decodes a required field; it reports whether the field is valid.
func (d *decoder) field(name string, missing func(string), fn func(json.RawMessage) bool) bool {
	raw, ok := d.fields[name]
	if !ok {
		missing(name)
		return false
	}
	return fn(raw)
}

// optionalField decodes a field that has a default; an absent field is valid.
func (d *decoder) optionalField(name string, fn func(json.RawMessage) bool) bool {
	raw, ok := d.fields[name]
	if !ok {
		return true
	}
	return fn(raw)
}

func loc(path ...any) []any { return append([]any{"body"}, path...) }

func (d *decoder) cluster(raw json.RawMessage, dst *string) bool {
	input := rawjson.Value(raw)
	if s, ok := input.(string); ok && slices.Contains(d.opts.Sites, s) {
		*dst = s
		return true
	}
	expected := args.EnumExpected(d.opts.Sites)
	d.add(detail(loc("cluster"), "enum", "Input should be "+expected, input, map[string]any{"expected": expected}))
	return false
}

// str decodes a required string with length limits in characters.
func (d *decoder) str(l []any, raw json.RawMessage, minLen, maxLen int, dst *string) bool {
	input := rawjson.Value(raw)
	s, ok := input.(string)
	if !ok {
		d.add(detail(l, "string_type", "Input should be a valid string", input, nil))
		return false
	}
	if p := lengthProblem(l, s, minLen, maxLen); p != nil {
		d.add(*p)
		return false
	}
	*dst = s
	return true
}

func lengthProblem(l []any, s string, minLen, maxLen int) *ctserr.ValidationDetail {
	n := utf8.RuneCountInString(s)
	switch {
	case n < minLen:
		p := detail(l, "string_too_short", fmt.Sprintf("String should have at least %d %s", minLen, plural(minLen, "character")),
			s, map[string]any{"min_length": minLen})
		return &p
	case n > maxLen:
		p := detail(l, "string_too_long", fmt.Sprintf("String should have at most %d %s", maxLen, plural(maxLen, "character")),
			s, map[string]any{"max_length": maxLen})
		return &p
	}
	return nil
}

// integer decodes an int in pydantic's lax mode (integral floats, integer strings and
// booleans are accepted) and checks its bounds.
func (d *decoder) integer(l []any, raw json.RawMessage, minV, maxV int64, dst *int) bool {
	input := rawjson.Value(raw)
	v, p := laxInt(l, input)
	if p != nil {
		d.add(*p)
		return false
	}
	if !d.bounds(l, input, float64(v), float64(minV), float64(maxV), minV, maxV) {
		return false
	}
	*dst = int(v)
	return true
}

func laxInt(l []any, input any) (int64, *ctserr.ValidationDetail) {
	var text string
	switch x := input.(type) {
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case json.Number:
		text = string(x)
	case string:
		text = strings.TrimSpace(x)
		// pydantic accepts "4" and "4.0", not "4.5" or "4e0".
		if i := strings.IndexByte(text, '.'); i >= 0 && strings.Trim(text[i+1:], "0") == "" {
			text = text[:i]
		}
		if _, err := strconv.ParseInt(text, 10, 64); err != nil && !isRangeErr(err) {
			p := detail(l, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", input, nil)
			return 0, &p
		}
	default:
		p := detail(l, "int_type", "Input should be a valid integer", input, nil)
		return 0, &p
	}
	i, err := strconv.ParseInt(text, 10, 64)
	switch {
	case err == nil:
		return i, nil
	case isRangeErr(err) && strings.HasPrefix(text, "-"):
		return math.MinInt64, nil
	case isRangeErr(err):
		return math.MaxInt64, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !isRangeErr(err) {
		p := detail(l, "int_parsing", "Input should be a valid integer, unable to parse string as an integer", input, nil)
		return 0, &p
	}
	if f != math.Trunc(f) {
		p := detail(l, "int_from_float", "Input should be a valid integer, got a number with a fractional part", input, nil)
		return 0, &p
	}
	return saturate(f), nil
}

// bounds checks minV <= v <= maxV, reporting pydantic's greater_than_equal /
// less_than_equal with the limits shown as shownMin / shownMax.
func (d *decoder) bounds(l []any, input any, v, minV, maxV float64, shownMin, shownMax any) bool {
	switch {
	case v < minV:
		d.add(geDetail(l, input, shownMin))
		return false
	case v > maxV:
		d.add(leDetail(l, input, shownMax))
		return false
	}
	return true
}

func geDetail(l []any, input, limit any) ctserr.ValidationDetail {
	return detail(l, "greater_than_equal", fmt.Sprintf("Input should be greater than or equal to %v", limit),
		input, map[string]any{"ge": limit})
}

func leDetail(l []any, input, limit any) ctserr.ValidationDetail {
	return detail(l, "less_than_equal", fmt.Sprintf("Input should be less than or equal to %v", limit),
		input, map[string]any{"le": limit})
}

func (d *decoder) memory(raw json.RawMessage, dst *int64) bool {
	input := rawjson.Value(raw)
	v, err := ParseByteSize(input)
	if err != nil {
		d.add(parseErrorDetail(loc("memory"), input, err))
		return false
	}
	// Compare as integers: float64 would blur limits near 2^63.
	switch {
	case v < MinMemory:
		// pydantic says "Input should be greater than or equal to 1000000"; a bare number is
		// bytes, which a person asking for "100" rarely means: say so.
		g := geDetail(loc("memory"), input, int64(MinMemory))
		g.Msg = fmt.Sprintf("Input should be greater than or equal to %d: memory is in bytes unless a unit is given (at least 1 MB; e.g. \"100MB\", \"2GB\", \"1.5GiB\"), got %d bytes", MinMemory, v)
		d.add(g)
		return false
	case v > d.opts.MaxMemory:
		d.add(leDetail(loc("memory"), input, d.opts.MaxMemory))
		return false
	}
	*dst = v
	return true
}

func (d *decoder) runtime(raw json.RawMessage, dst *float64) bool {
	input := rawjson.Value(raw)
	v, err := ParseDuration(input)
	if err != nil {
		d.add(parseErrorDetail(loc("runtime"), input, err))
		return false
	}
	if !d.bounds(loc("runtime"), input, v, MinRuntimeSeconds, d.opts.MaxRuntimeSeconds,
		FormatDuration(MinRuntimeSeconds), FormatDuration(d.opts.MaxRuntimeSeconds)) {
		return false
	}
	*dst = v
	return true
}

func parseErrorDetail(l []any, input any, err error) ctserr.ValidationDetail {
	var pe *ParseError
	if errors.As(err, &pe) {
		return detail(l, pe.Type, pe.Msg, input, pe.Ctx)
	}
	return detail(l, "value_error", "Value error, "+err.Error(), input, map[string]any{"error": err.Error()})
}

func (d *decoder) params(raw json.RawMessage, dst *args.Parameters) bool {
	p, problems := args.DecodeParameters(raw)
	for _, pr := range problems {
		d.add(detail(append(loc("params"), pr.Loc...), pr.Type, pr.Msg, pr.Input, pr.Ctx))
	}
	*dst = p
	return len(problems) == 0
}

// inputRoots normalises input_roots: a blank entry is "" (everything), a bucket alone
// (optionally with a trailing "/") is the bucket, anything else is a validated S3 path.
// Duplicates are dropped, keeping the first occurrence's position; an empty list is nil.
func (d *decoder) inputRoots(raw json.RawMessage, dst *[]string) bool {
	input := rawjson.Value(raw)
	if input == nil {
		return true
	}
	items, ok := input.([]any)
	if !ok {
		d.add(detail(loc("input_roots"), "list_type", "Input should be a valid list", input, nil))
		return false
	}
	valid := true
	var roots []string
	for i, it := range items {
		l := loc("input_roots", i)
		s, ok := it.(string)
		if !ok {
			d.add(detail(l, "string_type", "Input should be a valid string", it, nil))
			valid = false
			continue
		}
		root, err := normaliseRoot(s, i)
		if err != nil {
			d.add(valueError(l, s, err.Error()))
			valid = false
			continue
		}
		if !slices.Contains(roots, root) {
			roots = append(roots, root)
		}
	}
	if valid && len(roots) > 0 {
		*dst = roots
	}
	return valid
}

func normaliseRoot(s string, index int) (string, error) {
	trimmed := strings.TrimFunc(s, pySpace)
	if trimmed == "" {
		return "", nil
	}
	if bucket, key, _ := strings.Cut(trimmed, "/"); key == "" {
		// Validate the bucket alone, with the list index in any message.
		if _, err := s3path.ParseAt(bucket+"/k", index); err != nil {
			return "", err
		}
		return bucket, nil
	}
	p, err := s3path.ParseAt(s, index)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

func pySpace(r rune) bool { return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f }

func (d *decoder) outputDir(raw json.RawMessage, dst *string) bool {
	var s string
	if !d.str(loc("output_dir"), raw, MinS3PathLength, MaxS3PathLength, &s) {
		return false
	}
	p, err := s3path.Parse(s)
	if err != nil {
		d.add(valueError(loc("output_dir"), s, err.Error()))
		return false
	}
	*dst = strings.TrimRight(p.String(), "/") + "/"
	return true
}

// inputFiles decodes a list of S3 path strings or a list of {file, crc64nvme, data_id}
// objects; the kind of the first string-or-object item decides which.
func (d *decoder) inputFiles(raw json.RawMessage, dst *[]InputFile) bool {
	l := loc("input_files")
	if rawjson.KindOf(raw) != rawjson.Array {
		d.add(detail(l, "list_type", "Input should be a valid list", rawjson.Value(raw), nil))
		return false
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		d.add(detail(l, "list_type", "Input should be a valid list", rawjson.Value(raw), nil))
		return false
	}
	if n := len(items); n < 1 || n > d.opts.MaxInputFiles {
		typ, msg, ctx := "too_short", fmt.Sprintf("List should have at least 1 item after validation, not %d", n),
			map[string]any{"field_type": "List", "min_length": 1, "actual_length": n}
		if n > 0 {
			typ, msg = "too_long", fmt.Sprintf("List should have at most %d %s after validation, not %d",
				d.opts.MaxInputFiles, plural(d.opts.MaxInputFiles, "item"), n)
			ctx = map[string]any{"field_type": "List", "max_length": d.opts.MaxInputFiles, "actual_length": n}
		}
		d.add(detail(l, typ, msg, rawjson.Value(raw), ctx))
		return false
	}
	mode := rawjson.Invalid
	for _, it := range items {
		if k := rawjson.KindOf(it); k == rawjson.String || k == rawjson.Object {
			mode = k
			break
		}
	}
	files := make([]InputFile, len(items))
	valid := true
	withIDs := 0
	for i, it := range items {
		il := loc("input_files", i)
		switch k := rawjson.KindOf(it); {
		case k == rawjson.String && mode == rawjson.String:
			var s string
			if !d.str(il, it, MinS3PathLength, MaxS3PathLength, &s) {
				valid = false
				continue
			}
			p, err := s3path.ParseAt(s, i)
			if err != nil {
				d.add(valueError(il, s, err.Error()))
				valid = false
				continue
			}
			files[i] = InputFile{File: p.String()}
		case k == rawjson.Object && mode == rawjson.Object:
			f, ok := d.fileObject(il, it)
			if !ok {
				valid = false
				continue
			}
			if f.DataID != "" {
				withIDs++
			}
			files[i] = f
		case mode == rawjson.Object:
			d.add(detail(il, "model_type", "Input should be a valid dictionary or instance of S3FileWithDataID",
				rawjson.Value(it), map[string]any{"class_name": "S3FileWithDataID"}))
			valid = false
		case mode == rawjson.String:
			d.add(detail(il, "string_type", "Input should be a valid string", rawjson.Value(it), nil))
			valid = false
		default:
			d.add(detail(il, "string_type", "Input should be a valid string or dictionary", rawjson.Value(it), nil))
			valid = false
		}
	}
	if !valid {
		return false
	}
	if withIDs != 0 && withIDs != len(files) {
		d.add(valueError(l, nil, "Either all or no files must have data IDs"))
		return false
	}
	*dst = files
	return true
}

func (d *decoder) fileObject(l []any, raw json.RawMessage) (InputFile, bool) {
	var f InputFile
	members, _ := rawjson.Members(raw)
	valid, hasFile := true, false
	for _, m := range members {
		fl := append(slices.Clip(l), m.Key)
		switch m.Key {
		case "file":
			hasFile = true
			var s string
			if !d.str(fl, m.Raw, MinS3PathLength, MaxS3PathLength, &s) {
				valid = false
				continue
			}
			p, err := s3path.Parse(s)
			if err != nil {
				d.add(valueError(fl, s, err.Error()))
				valid = false
				continue
			}
			f.File = p.String()
		case "crc64nvme":
			if rawjson.KindOf(m.Raw) == rawjson.Null {
				continue
			}
			var s string
			if !d.str(fl, m.Raw, CRC64NVMELength, CRC64NVMELength, &s) {
				valid = false
				continue
			}
			if b, err := base64.StdEncoding.Strict().DecodeString(s); err != nil || len(b) != 8 {
				d.add(valueError(fl, s, "crc64nvme must be the base64 encoding of an 8 byte CRC64/NVME checksum"))
				valid = false
				continue
			}
			f.CRC64NVME = s
		case "data_id":
			if rawjson.KindOf(m.Raw) == rawjson.Null {
				continue
			}
			var s string
			if !d.str(fl, m.Raw, 1, MaxDataIDLength, &s) {
				valid = false
				continue
			}
			if pos := controlCharAt(s); pos >= 0 {
				d.add(valueError(fl, s, fmt.Sprintf("data_id contains a control character at position %d", pos)))
				valid = false
				continue
			}
			f.DataID = s
		default:
			d.add(detail(fl, "extra_forbidden", "Extra inputs are not permitted", rawjson.Value(m.Raw), nil))
			valid = false
		}
	}
	if !hasFile {
		d.add(detail(append(slices.Clip(l), "file"), "missing", "Field required", rawjson.Value(raw), nil))
		valid = false
	}
	return f, valid
}

// controlCharAt returns the character position of the first Unicode control or format
// character (category Cc or Cf) in s, or -1.
func controlCharAt(s string) int {
	pos := 0
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf) {
			return pos
		}
		pos++
	}
	return -1
}

// checkJSON returns the json_invalid detail FastAPI gives for a body that is not exactly
// one JSON value, or missing for an empty body; nil if body is JSON.
func checkJSON(body []byte) *ctserr.ValidationDetail {
	if len(bytes.TrimSpace(body)) == 0 {
		d := detail([]any{"body"}, "missing", "Field required", nil, nil)
		return &d
	}
	if !utf8.Valid(body) {
		off := 0
		for off < len(body) {
			r, size := utf8.DecodeRune(body[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		d := detail([]any{"body", off}, "json_invalid", "JSON decode error", map[string]any{},
			map[string]any{"error": "invalid UTF-8"})
		return &d
	}
	if json.Valid(body) {
		return nil
	}
	var v any
	err := json.Unmarshal(body, &v)
	off := int64(len(body))
	msg := "invalid JSON"
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off, msg = se.Offset, se.Error()
	}
	d := detail([]any{"body", off}, "json_invalid", "JSON decode error", map[string]any{},
		map[string]any{"error": msg})
	return &d
}

func detail(l []any, typ, msg string, input any, ctx map[string]any) ctserr.ValidationDetail {
	return ctserr.ValidationDetail{Type: typ, Loc: l, Msg: msg, Input: input, Ctx: ctx}
}

// valueError is a pydantic "value_error": a rule of ours, its text prefixed with
// "Value error, ".
func valueError(l []any, input any, msg string) ctserr.ValidationDetail {
	return detail(l, "value_error", "Value error, "+msg, input, map[string]any{"error": msg})
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}
