package args

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Default mount points.
const (
	DefaultInputMountPoint  = "/input_files"
	DefaultOutputMountPoint = "/output_files"
)

// Manifest file formats of a manifest_file parameter.
const (
	ManifestFiles   = "files"
	ManifestDataIDs = "data_ids"
)

// Problem is one validation failure of a Parameters value, shaped like a pydantic error.
// Loc is relative to the parameters object, e.g. ["args", 2, "flag"]; callers prefix it
// (the job input adds "body", "params").
type Problem struct {
	Loc   []any
	Type  string
	Msg   string
	Input any
	Ctx   map[string]any
}

// Limits and patterns of the CTS string types, with the patterns as the Python service
// spells them (they appear in error messages).
const (
	ArgumentStringPattern = `^[\w\./][\w\./-]*$`
	FlagPattern           = `^--?[a-zA-Z0-9][\w\.-]*=?$`
	EnvKeyPattern         = `^[A-Z_][A-Z0-9_]*$`
	AbsolutePathPattern   = `^/(?:[\w.-]+/)*[\w.-]+/?$`

	maxArgumentString = 1024
	minFlag           = 2
	maxFlag           = 256
	maxEnvKey         = 256
	maxMountPoint     = 1024
	maxManifestHeader = 1000
)

// word is the Unicode word class of the Rust regex engine pydantic uses (Alphabetic, marks,
// decimal digits, connector punctuation, joiners); Go's \w is ASCII only.
const word = `\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}`

var (
	argumentStringRE = regexp.MustCompile(`^[` + word + `./][` + word + `./-]*$`)
	flagRE           = regexp.MustCompile(`^--?[a-zA-Z0-9][` + word + `.-]*=?$`)
	envKeyRE         = regexp.MustCompile(EnvKeyPattern)
	absolutePathRE   = regexp.MustCompile(`^/(?:[` + word + `.-]+/)*[` + word + `.-]+/?$`)
)

// strType is a constrained string type: length limits in characters and a pattern, with
// explain saying in words what a value that does not match is missing and what to do.
type strType struct {
	min, max int
	re       *regexp.Regexp
	pattern  string
	explain  func(s string) string
}

var (
	argumentString = strType{1, maxArgumentString, argumentStringRE, ArgumentStringPattern, explainArgument}
	flagString     = strType{minFlag, maxFlag, flagRE, FlagPattern, explainFlag}
	envKeyString   = strType{1, maxEnvKey, envKeyRE, EnvKeyPattern, explainEnvKey}
	mountPoint     = strType{1, maxMountPoint, absolutePathRE, AbsolutePathPattern, explainMountPoint}
	headerString   = strType{1, maxManifestHeader, nil, "", nil}
)

// isWord reports whether r is in the Unicode word class of the patterns (see word).
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || r == '\u200C' || r == '\u200D'
}

// firstBad returns the first character of s (after its first skip characters) that ok refuses,
// described for a person: "a space", "'='".
func firstBad(s string, skip int, ok func(rune) bool) string {
	for i, r := range []rune(s) {
		if i < skip || ok(r) {
			continue
		}
		switch {
		case r == ' ':
			return "a space"
		case r == '\t':
			return "a tab"
		case r == '\n' || r == '\r':
			return "a line break"
		case unicode.IsSpace(r):
			return fmt.Sprintf("a space character (%U)", r)
		case !unicode.IsPrint(r):
			return fmt.Sprintf("the invisible character %U", r)
		}
		return fmt.Sprintf("'%c'", r)
	}
	return ""
}

// explainArgument explains a refused literal argument or environment value. The container
// gets its arguments as they are, without a shell, so quoting cannot put a space into one.
func explainArgument(s string) string {
	const rule = "an argument may hold only letters, digits, '_', '.', '/' and '-' (not first)"
	first, _ := utf8.DecodeRuneInString(s)
	switch bad := firstBad(s, 1, func(r rune) bool { return isWord(r) || r == '.' || r == '/' || r == '-' }); {
	case first == '-':
		return rule + ", and this one starts with '-': only an element of args may be a flag, not an environment " +
			"value or a container number prefix or suffix"
	case !isWord(first) && first != '.' && first != '/':
		return fmt.Sprintf("%s; this one starts with %s", rule, firstBad(string(first), 0, func(rune) bool { return false }))
	case strings.ContainsAny(s, " \t"):
		return rule + ", and this one has " + bad + ". Containers get their arguments without a shell, so quotes " +
			"do not help: give each word as an argument of its own (in args, or one --arg each with cts submit)"
	case strings.ContainsRune(s, '='):
		return rule + ", and this one has '='. Give a flag and its value as two arguments: \"--threads\", \"4\""
	case bad != "":
		return rule + ", and this one has " + bad
	default:
		return rule
	}
}

// explainFlag explains a refused flag (a literal argument or a parameter's flag that starts
// with '-').
func explainFlag(s string) string {
	const rule = "a flag is '-' or '--', a letter or digit, then letters, digits, '_', '.' or '-', and may end with '='"
	body := strings.TrimLeft(s, "-")
	switch {
	case !strings.HasPrefix(s, "-"):
		return rule + "; this one does not start with '-'"
	case strings.HasPrefix(s, "---"):
		return rule + "; this one starts with three dashes"
	case body == "":
		return rule + "; this one has no name after its dashes"
	case strings.Contains(strings.TrimSuffix(body, "="), "="):
		return rule + "; this one has a value after '='. Give the value as the next argument: \"--threads\", \"4\""
	default:
		first, _ := utf8.DecodeRuneInString(body)
		if !(first < utf8.RuneSelf && (unicode.IsLetter(first) || unicode.IsDigit(first))) {
			return fmt.Sprintf("%s; this one has %s right after its dashes", rule, firstBad(string(first), 0, func(rune) bool { return false }))
		}
		if bad := firstBad(strings.TrimSuffix(body, "="), 1, func(r rune) bool { return isWord(r) || r == '.' || r == '-' }); bad != "" {
			return rule + "; this one has " + bad
		}
		return rule
	}
}

// explainEnvKey explains a refused environment variable name.
func explainEnvKey(s string) string {
	const rule = "an environment variable name has only upper-case A to Z, digits and '_', and does not start with a digit"
	if up := strings.ToUpper(s); up != s && envKeyRE.MatchString(up) {
		return rule + "; did you mean " + up + "?"
	}
	if first, _ := utf8.DecodeRuneInString(s); first >= '0' && first <= '9' {
		return rule + "; this one starts with a digit"
	}
	if bad := firstBad(s, 0, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' }); bad != "" {
		return rule + "; this one has " + bad
	}
	return rule
}

// explainMountPoint explains a refused mount point.
func explainMountPoint(s string) string {
	const rule = "a mount point is an absolute path such as /input_files: '/' then names of letters, digits, '_', '.' " +
		"and '-' separated by single '/'"
	switch {
	case !strings.HasPrefix(s, "/"):
		return rule + "; this one does not start with '/'"
	case s == "/":
		return rule + "; '/' alone is the container's root, which cannot be mounted over"
	case strings.Contains(s, "//"):
		return rule + "; this one has '//'"
	}
	if bad := firstBad(s, 0, func(r rune) bool { return isWord(r) || r == '.' || r == '-' || r == '/' }); bad != "" {
		return rule + "; this one has " + bad
	}
	return rule
}

var (
	parameterTypes    = []string{TypeInputFiles, TypeManifestFile, TypeContainerNumber}
	inputFilesFormats = []string{CommaSeparatedList, SpaceSeparatedList, RepeatParameter}
	manifestFormats   = []string{ManifestFiles, ManifestDataIDs}
)

// ApplyDefaults sets the default input and output mount points where they are empty.
func (p *Parameters) ApplyDefaults() {
	if p.InputMountPoint == "" {
		p.InputMountPoint = DefaultInputMountPoint
	}
	if p.OutputMountPoint == "" {
		p.OutputMountPoint = DefaultOutputMountPoint
	}
}

// FileParameter returns the input_files or manifest_file parameter (args first, then the
// environment), or nil if there is none. Valid parameters have at most one.
func (p *Parameters) FileParameter() *Parameter {
	for _, a := range p.Args {
		if isFileParam(a.Param) {
			return a.Param
		}
	}
	for _, e := range p.Environment {
		if isFileParam(e.Value.Param) {
			return e.Value.Param
		}
	}
	return nil
}

func isFileParam(p *Parameter) bool {
	return p != nil && (p.Type == TypeInputFiles || p.Type == TypeManifestFile)
}

// Validate checks every rule the Python service applies to the parameters and returns all problems (none if valid).
// Call ApplyDefaults first: empty mount points are refused. As in pydantic, a rule that
// spans several fields (a model validator) is not reported when one of those fields is
// itself invalid.
func (p *Parameters) Validate() []Problem {
	var ps []Problem
	ps = append(ps, p.validateMountPoints()...)
	for i, a := range p.Args {
		loc := []any{"args", i}
		if a.Param != nil {
			ps = append(ps, checkParam(loc, a.Param, true)...)
		} else {
			ps = append(ps, checkArgLiteral(loc, a.Literal)...)
		}
	}
	seen := map[string]bool{}
	for _, e := range p.Environment {
		loc := []any{"environment", e.Key}
		ps = append(ps, checkStr([]any{"environment", e.Key, "[key]"}, e.Key, envKeyString)...)
		if seen[e.Key] {
			ps = append(ps, valueError(loc, e.Key, "Duplicate environment variable "+e.Key))
		}
		seen[e.Key] = true
		if e.Value.Param == nil {
			ps = append(ps, checkStr(loc, e.Value.Literal, argumentString)...)
			continue
		}
		ps = append(ps, checkParam(loc, e.Value.Param, false)...)
		if e.Value.Param.Type == TypeInputFiles {
			switch f := e.Value.Param.InputFilesFormat; f {
			case SpaceSeparatedList, RepeatParameter:
				ps = append(ps, valueError(loc, paramInput(e.Value.Param),
					fmt.Sprintf("Environment variable parameters may not use the %s input files format", f)))
			}
		}
	}
	files := 0
	for _, a := range p.Args {
		if isFileParam(a.Param) {
			files++
		}
	}
	for _, e := range p.Environment {
		if isFileParam(e.Value.Param) {
			files++
		}
	}
	if files > 1 {
		ps = append(ps, valueError([]any{}, nil,
			"At most one Parameter instance with file input is allowed per parameter set"))
	}
	return prune(ps)
}

// validateMountPoints checks each mount point's pattern and length, then that none is in a
// folder the runtimes reserve (after normalisation), then that no two are the same folder or
// one inside the other (a read-only input mount cannot hold the output mount point).
func (p *Parameters) validateMountPoints() []Problem {
	var ps []Problem
	type mount struct {
		name, value string
	}
	var valid []mount
	for _, m := range []mount{{"input_mount_point", p.InputMountPoint}, {"output_mount_point", p.OutputMountPoint},
		{"refdata_mount_point", p.RefdataMountPoint}} {
		if m.name == "refdata_mount_point" && m.value == "" {
			continue
		}
		loc := []any{m.name}
		if bad := checkStr(loc, m.value, mountPoint); len(bad) > 0 {
			ps = append(ps, bad...)
			continue
		}
		if msg := mountPointProblem(m.value); msg != "" {
			ps = append(ps, valueError(loc, m.value, msg))
			continue
		}
		valid = append(valid, m)
	}
	for i, a := range valid {
		for _, b := range valid[i+1:] {
			if nested(CleanMountPoint(a.value), CleanMountPoint(b.value)) {
				ps = append(ps, valueError([]any{b.name}, b.value, fmt.Sprintf(
					"The %s %s and the %s %s are the same folder or one is inside the other; mount them side by side, "+
						"as /input_files and /output_files", a.name, a.value, b.name, b.value)))
			}
		}
	}
	return ps
}

// checkArgLiteral checks a literal argument: a Flag if it starts with '-', otherwise an
// ArgumentString (the two string members of the args item union).
func checkArgLiteral(loc []any, s string) []Problem {
	if strings.HasPrefix(s, "-") {
		return checkStr(loc, s, flagString)
	}
	return checkStr(loc, s, argumentString)
}

// checkParam checks one Parameter; withFlag tells whether a flag is allowed (args) or not
// (environment values).
func checkParam(loc []any, p *Parameter, withFlag bool) []Problem {
	at := func(field string) []any { return appendLoc(loc, field) }
	var ps []Problem
	if p.Type == "" {
		ps = append(ps, Problem{Loc: at("type"), Type: "missing", Msg: "Field required", Input: paramInput(p)})
	} else {
		ps = append(ps, checkEnum(at("type"), p.Type, parameterTypes)...)
	}
	if p.InputFilesFormat != "" {
		ps = append(ps, checkEnum(at("input_files_format"), p.InputFilesFormat, inputFilesFormats)...)
	}
	if p.ManifestFileFormat != "" {
		ps = append(ps, checkEnum(at("manifest_file_format"), p.ManifestFileFormat, manifestFormats)...)
	}
	if p.ManifestFileHeader != "" {
		ps = append(ps, checkHeader(at("manifest_file_header"), p.ManifestFileHeader)...)
	}
	if p.ContainerNumPrefix != "" {
		ps = append(ps, checkStr(at("container_num_prefix"), p.ContainerNumPrefix, argumentString)...)
	}
	if p.ContainerNumSuffix != "" {
		ps = append(ps, checkStr(at("container_num_suffix"), p.ContainerNumSuffix, argumentString)...)
	}
	if p.Flag != "" {
		if withFlag {
			ps = append(ps, checkStr(at("flag"), p.Flag, flagString)...)
		} else {
			ps = append(ps, extraForbidden(at("flag"), p.Flag))
		}
	}
	switch p.Type {
	case TypeInputFiles:
		if p.InputFilesFormat == "" {
			ps = append(ps, valueError(loc, paramInput(p),
				"The input_files_format field is required for input_files parameters"))
		} else if p.InputFilesFormat == RepeatParameter && p.Flag == "" && withFlag {
			ps = append(ps, valueError(loc, paramInput(p),
				"The repeat_parameter input files format requires a flag"))
		}
	case TypeManifestFile:
		if p.ManifestFileFormat == "" {
			ps = append(ps, valueError(loc, paramInput(p),
				"The manifest_file_format field is required for manifest_file parameters"))
		}
	}
	return ps
}

func checkHeader(loc []any, s string) []Problem {
	if ps := checkStr(loc, s, headerString); len(ps) > 0 {
		return ps
	}
	pos := 0
	for _, r := range s {
		if r != '\t' && unicode.Is(unicode.C, r) {
			return []Problem{valueError(loc, s, fmt.Sprintf(
				"The manifest file header contains a control character at position %d", pos))}
		}
		pos++
	}
	return nil
}

// checkStr checks a constrained string in pydantic's order (min length, max length,
// pattern) and reports the first failure only. Lengths are in characters.
func checkStr(loc []any, s string, t strType) []Problem {
	n := utf8.RuneCountInString(s)
	switch {
	case n < t.min:
		return []Problem{{Loc: loc, Type: "string_too_short", Input: s,
			Msg: fmt.Sprintf("String should have at least %d %s", t.min, plural(t.min, "character")),
			Ctx: map[string]any{"min_length": t.min}}}
	case n > t.max:
		return []Problem{{Loc: loc, Type: "string_too_long", Input: s,
			Msg: fmt.Sprintf("String should have at most %d %s", t.max, plural(t.max, "character")),
			Ctx: map[string]any{"max_length": t.max}}}
	case t.re != nil && !t.re.MatchString(s):
		// pydantic's sentence first (clients may match it), then what it means for this value.
		msg := fmt.Sprintf("String should match pattern '%s'", t.pattern)
		if t.explain != nil {
			msg += ": " + t.explain(s)
		}
		return []Problem{{Loc: loc, Type: "string_pattern_mismatch", Input: s, Msg: msg,
			Ctx: map[string]any{"pattern": t.pattern}}}
	}
	return nil
}

func checkEnum(loc []any, v any, allowed []string) []Problem {
	if s, ok := v.(string); ok && slices.Contains(allowed, s) {
		return nil
	}
	expected := EnumExpected(allowed)
	return []Problem{{Loc: loc, Type: "enum", Input: v, Msg: "Input should be " + expected,
		Ctx: map[string]any{"expected": expected}}}
}

// EnumExpected renders allowed values as pydantic does in enum errors:
// "'a', 'b' or 'c'".
func EnumExpected(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = "'" + a + "'"
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func valueError(loc []any, input any, msg string) Problem {
	return Problem{Loc: loc, Type: "value_error", Msg: "Value error, " + msg, Input: input,
		Ctx: map[string]any{"error": msg}}
}

func extraForbidden(loc []any, input any) Problem {
	return Problem{Loc: loc, Type: "extra_forbidden", Msg: "Extra inputs are not permitted", Input: input}
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

func appendLoc(loc []any, more ...any) []any {
	out := make([]any, 0, len(loc)+len(more))
	return append(append(out, loc...), more...)
}

// paramInput renders a Parameter as the dictionary pydantic would echo as the input.
func paramInput(p *Parameter) map[string]any {
	m := map[string]any{}
	add := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	add("type", p.Type)
	add("input_files_format", p.InputFilesFormat)
	add("manifest_file_format", p.ManifestFileFormat)
	add("manifest_file_header", p.ManifestFileHeader)
	add("container_num_prefix", p.ContainerNumPrefix)
	add("container_num_suffix", p.ContainerNumSuffix)
	add("flag", p.Flag)
	return m
}

// prune drops the problems of model-level rules whose model has a field-level problem:
// pydantic does not run a model validator when a field of the model failed.
func prune(ps []Problem) []Problem {
	prefixes := map[string]bool{}
	for _, p := range ps {
		for n := 0; n < len(p.Loc); n++ {
			prefixes[locKey(p.Loc[:n])] = true
		}
	}
	out := ps[:0:0]
	for _, p := range ps {
		if !prefixes[locKey(p.Loc)] {
			out = append(out, p)
		}
	}
	return out
}

// locKey encodes a location as a map key (length-prefixed, so keys cannot collide).
func locKey(loc []any) string {
	var b strings.Builder
	for _, e := range loc {
		switch v := e.(type) {
		case int:
			b.WriteString("i" + strconv.Itoa(v) + ";")
		case string:
			b.WriteString("s" + strconv.Itoa(len(v)) + ":" + v)
		default:
			fmt.Fprintf(&b, "?%v;", v)
		}
	}
	return b.String()
}

// hasPrefix tells whether prefix is a prefix of (or equal to) loc.
func hasPrefix(loc, prefix []any) bool {
	return len(prefix) <= len(loc) && slices.Equal(prefix, loc[:len(prefix)])
}

// ValidMountPoint reports whether p matches the mount point pattern: an absolute path of CTS
// word characters, '.' and '-' (AbsolutePathPattern with Unicode word characters), at most 1024
// characters, not "/" alone. MountPointProblem adds the runtimes' reserved folders.
func ValidMountPoint(p string) bool {
	return utf8.RuneCountInString(p) <= maxMountPoint && absolutePathRE.MatchString(p)
}
