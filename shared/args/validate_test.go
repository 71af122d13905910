package args

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// problemSummary renders problems compactly for comparison: "loc|type|msg", the message of a
// pattern mismatch without the explanation after pydantic's sentence (TestPatternExplanations
// pins those).
func problemSummary(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		msg := p.Msg
		if p.Type == "string_pattern_mismatch" {
			msg, _, _ = strings.Cut(msg, "': ")
			msg += "'"
		}
		out[i] = fmt.Sprintf("%v|%s|%s", p.Loc, p.Type, msg)
	}
	return out
}

func TestValidate(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		p    Parameters
		want []string
	}{
		{name: "empty is valid", p: Parameters{}},
		{name: "unicode word characters", p: Parameters{
			InputMountPoint: "/héllo/файл", Args: []Arg{lit("héllo"), lit("файл"), lit("--fфайл="), lit("naïve_ß.2")},
			Environment: Environment{{Key: "F", Value: lit("файл")}}}},
		{name: "plain literals and flags", p: Parameters{Args: []Arg{
			lit("stats"), lit("--tabular"), lit("-o"), lit("/out/stats.txt"), lit("-x"), lit("--threads"), lit("--threads="),
			lit("./rel/path"), lit("a-b"), lit(long(1024)), lit("--" + long(254))}}},
		{name: "flag with value refused", p: Parameters{Args: []Arg{lit("--threads=4")}},
			want: []string{"[args 0]|string_pattern_mismatch|String should match pattern '^--?[a-zA-Z0-9][\\w\\.-]*=?$'"}},
		{name: "single dash refused", p: Parameters{Args: []Arg{lit("-")}},
			want: []string{"[args 0]|string_too_short|String should have at least 2 characters"}},
		{name: "flag too long", p: Parameters{Args: []Arg{lit("--" + long(255))}},
			want: []string{"[args 0]|string_too_long|String should have at most 256 characters"}},
		{name: "argument string rules", p: Parameters{Args: []Arg{lit(""), lit("a b"), lit("a=b"), lit("a:b"),
			lit("a,b"), lit(long(1025)), lit("ok")}},
			want: []string{
				"[args 0]|string_too_short|String should have at least 1 character",
				"[args 1]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
				"[args 2]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
				"[args 3]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
				"[args 4]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
				"[args 5]|string_too_long|String should have at most 1024 characters",
			}},
		{name: "mount points", p: Parameters{InputMountPoint: "/", OutputMountPoint: "rel", RefdataMountPoint: "/a//b"},
			want: []string{
				"[input_mount_point]|string_pattern_mismatch|String should match pattern '^/(?:[\\w.-]+/)*[\\w.-]+/?$'",
				"[output_mount_point]|string_pattern_mismatch|String should match pattern '^/(?:[\\w.-]+/)*[\\w.-]+/?$'",
				"[refdata_mount_point]|string_pattern_mismatch|String should match pattern '^/(?:[\\w.-]+/)*[\\w.-]+/?$'",
			}},
		{name: "mount point trailing slash ok", p: Parameters{InputMountPoint: "/in/", OutputMountPoint: "/a/b.c/d-e"}},
		{name: "mount point too long", p: Parameters{InputMountPoint: "/" + long(1024)},
			want: []string{"[input_mount_point]|string_too_long|String should have at most 1024 characters"}},
		{name: "env keys", p: Parameters{Environment: Environment{{Key: "lower", Value: lit("x")}, {Key: "1ABC", Value: lit("x")},
			{Key: "_OK_1", Value: lit("x")}, {Key: "", Value: lit("x")}, {Key: "A" + strings.Repeat("B", 256), Value: lit("x")}}},
			want: []string{
				"[environment lower [key]]|string_pattern_mismatch|String should match pattern '^[A-Z_][A-Z0-9_]*$'",
				"[environment 1ABC [key]]|string_pattern_mismatch|String should match pattern '^[A-Z_][A-Z0-9_]*$'",
				"[environment  [key]]|string_too_short|String should have at least 1 character",
				"[environment A" + strings.Repeat("B", 256) + " [key]]|string_too_long|String should have at most 256 characters",
			}},
		{name: "env literal is an argument string, not a flag", p: Parameters{Environment: Environment{{Key: "A", Value: lit("--x")}}},
			want: []string{"[environment A]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'"}},
		{name: "duplicate env key", p: Parameters{Environment: Environment{{Key: "A", Value: lit("x")}, {Key: "A", Value: lit("y")}}},
			want: []string{"[environment A]|value_error|Value error, Duplicate environment variable A"}},
		{name: "parameter missing type", p: Parameters{Args: []Arg{param(Parameter{})}},
			want: []string{"[args 0 type]|missing|Field required"}},
		{name: "parameter enums", p: Parameters{Args: []Arg{
			param(Parameter{Type: "files"}),
			param(Parameter{Type: TypeInputFiles, InputFilesFormat: "tabs"}),
			param(Parameter{Type: TypeContainerNumber, ManifestFileFormat: "csv"})}},
			want: []string{
				"[args 0 type]|enum|Input should be 'input_files', 'manifest_file' or 'container_number'",
				"[args 1 input_files_format]|enum|Input should be 'comma_separated_list', 'space_separated_list' or 'repeat_parameter'",
				"[args 2 manifest_file_format]|enum|Input should be 'files' or 'data_ids'",
			}},
		{name: "input files need a format", p: Parameters{Args: []Arg{param(Parameter{Type: TypeInputFiles})}},
			want: []string{"[args 0]|value_error|Value error, The input_files_format field is required for input_files parameters"}},
		{name: "repeat needs a flag", p: Parameters{Args: []Arg{inFiles(RepeatParameter, "")}},
			want: []string{"[args 0]|value_error|Value error, The repeat_parameter input files format requires a flag"}},
		{name: "manifest needs a format", p: Parameters{Args: []Arg{param(Parameter{Type: TypeManifestFile})}},
			want: []string{"[args 0]|value_error|Value error, The manifest_file_format field is required for manifest_file parameters"}},
		{name: "format ignored for other types", p: Parameters{Args: []Arg{
			param(Parameter{Type: TypeContainerNumber, InputFilesFormat: RepeatParameter})}}},
		{name: "bad flag on parameter", p: Parameters{Args: []Arg{inFiles(CommaSeparatedList, "--x=4")}},
			want: []string{"[args 0 flag]|string_pattern_mismatch|String should match pattern '^--?[a-zA-Z0-9][\\w\\.-]*=?$'"}},
		{name: "model rule skipped when a field fails", p: Parameters{Args: []Arg{inFiles(RepeatParameter, "xx")}},
			want: []string{"[args 0 flag]|string_pattern_mismatch|String should match pattern '^--?[a-zA-Z0-9][\\w\\.-]*=?$'"}},
		{name: "container number prefix and suffix", p: Parameters{Args: []Arg{cn("a b", "-x", "")}},
			want: []string{
				"[args 0 container_num_prefix]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
				"[args 0 container_num_suffix]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
			}},
		{name: "manifest header", p: Parameters{Args: []Arg{
			param(Parameter{Type: TypeManifestFile, ManifestFileFormat: ManifestFiles, ManifestFileHeader: "a\tb"}),
		}, Environment: Environment{
			{Key: "H1", Value: param(Parameter{Type: TypeContainerNumber, ManifestFileHeader: "a\nb"})},
			{Key: "H2", Value: param(Parameter{Type: TypeContainerNumber, ManifestFileHeader: long(1001)})},
			{Key: "H3", Value: param(Parameter{Type: TypeContainerNumber, ManifestFileHeader: "x\u200by"})},
		}},
			want: []string{
				"[environment H1 manifest_file_header]|value_error|Value error, The manifest file header contains a control character at position 1",
				"[environment H2 manifest_file_header]|string_too_long|String should have at most 1000 characters",
				"[environment H3 manifest_file_header]|value_error|Value error, The manifest file header contains a control character at position 1",
			}},
		{name: "env parameter may not have a flag", p: Parameters{Environment: Environment{{Key: "C", Value: cn("", "", "-c")}}},
			want: []string{"[environment C flag]|extra_forbidden|Extra inputs are not permitted"}},
		{name: "env list formats", p: Parameters{Environment: Environment{
			{Key: "S", Value: inFiles(SpaceSeparatedList, "")}}},
			want: []string{"[environment S]|value_error|Value error, Environment variable parameters may not use the space_separated_list input files format"}},
		{name: "env repeat format", p: Parameters{Environment: Environment{{Key: "R", Value: inFiles(RepeatParameter, "")}}},
			want: []string{"[environment R]|value_error|Value error, Environment variable parameters may not use the repeat_parameter input files format"}},
		{name: "two file parameters", p: Parameters{Args: []Arg{inFiles(CommaSeparatedList, "")},
			Environment: Environment{{Key: "M", Value: param(Parameter{Type: TypeManifestFile, ManifestFileFormat: ManifestDataIDs})}}},
			want: []string{"[]|value_error|Value error, At most one Parameter instance with file input is allowed per parameter set"}},
		{name: "container numbers are unlimited", p: Parameters{Args: []Arg{cn("", "", ""), cn("", "", "")},
			Environment: Environment{{Key: "C", Value: cn("", "", "")}, {Key: "F", Value: inFiles(CommaSeparatedList, "")}}}},
		{name: "set-level rule skipped when an item fails", p: Parameters{Args: []Arg{inFiles(CommaSeparatedList, ""),
			inFiles(CommaSeparatedList, ""), lit("a b")}},
			want: []string{"[args 2]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tc.p
			p.ApplyDefaults()
			got := problemSummary(p.Validate())
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestValidateProblemDetails(t *testing.T) {
	t.Parallel()
	p := Parameters{Args: []Arg{lit("a b")}}
	p.ApplyDefaults()
	ps := p.Validate()
	if len(ps) != 1 {
		t.Fatalf("got %d problems, want 1", len(ps))
	}
	want := Problem{Loc: []any{"args", 0}, Type: "string_pattern_mismatch",
		Msg: "String should match pattern '^[\\w\\./][\\w\\./-]*$': " + argRule + ", and this one has a space. " + noShell, Input: "a b",
		Ctx: map[string]any{"pattern": ArgumentStringPattern}}
	if !reflect.DeepEqual(ps[0], want) {
		t.Errorf("problem = %#v, want %#v", ps[0], want)
	}
}

const (
	argRule   = "an argument may hold only letters, digits, '_', '.', '/' and '-' (not first)"
	noShell   = "Containers get their arguments without a shell, so quotes do not help: give each word as an argument of its own (in args, or one --arg each with cts submit)"
	flagRule  = "a flag is '-' or '--', a letter or digit, then letters, digits, '_', '.' or '-', and may end with '='"
	envRule   = "an environment variable name has only upper-case A to Z, digits and '_', and does not start with a digit"
	mountRule = "a mount point is an absolute path such as /input_files: '/' then names of letters, digits, '_', '.' and '-' separated by single '/'"
)

// TestPatternExplanations pins the sentence that follows pydantic's "String should match
// pattern '...'": what is wrong with this value and what to do, in words.
func TestPatternExplanations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Parameters
		want string // the message after the pattern's "': "
	}{
		{"argument with a space", Parameters{Args: []Arg{lit("hello world")}}, argRule + ", and this one has a space. " + noShell},
		{"argument with a tab", Parameters{Args: []Arg{lit("a\tb")}}, argRule + ", and this one has a tab. " + noShell},
		{"argument with '='", Parameters{Args: []Arg{lit("threads=4")}},
			argRule + `, and this one has '='. Give a flag and its value as two arguments: "--threads", "4"`},
		{"argument with a colon", Parameters{Args: []Arg{lit("a:b")}}, argRule + ", and this one has ':'"},
		{"argument starting with '+'", Parameters{Args: []Arg{lit("+x")}}, argRule + "; this one starts with '+'"},
		{"argument with a line break", Parameters{Args: []Arg{lit("a\nb")}}, argRule + ", and this one has a line break"},
		{"argument with a zero-width space", Parameters{Args: []Arg{lit("a\u200bb")}},
			argRule + ", and this one has the invisible character U+200B"},
		{"environment value that is a flag", Parameters{Environment: Environment{{Key: "A", Value: lit("--x")}}},
			argRule + ", and this one starts with '-': only an element of args may be a flag, not an environment value or a container number prefix or suffix"},
		{"environment value with a space", Parameters{Environment: Environment{{Key: "A", Value: lit("x y")}}},
			argRule + ", and this one has a space. " + noShell},
		{"flag with a value", Parameters{Args: []Arg{lit("--threads=4")}},
			flagRule + `; this one has a value after '='. Give the value as the next argument: "--threads", "4"`},
		{"flag with three dashes", Parameters{Args: []Arg{lit("---x")}}, flagRule + "; this one starts with three dashes"},
		{"flag with a space", Parameters{Args: []Arg{lit("--a b")}}, flagRule + "; this one has a space"},
		{"flag starting with '_'", Parameters{Args: []Arg{lit("-_x")}}, flagRule + "; this one has '_' right after its dashes"},
		{"parameter flag without a dash", Parameters{Args: []Arg{inFiles(RepeatParameter, "xx")}}, flagRule + "; this one does not start with '-'"},
		{"lower-case environment name", Parameters{Environment: Environment{{Key: "path", Value: lit("x")}}}, envRule + "; did you mean PATH?"},
		{"environment name with a digit first", Parameters{Environment: Environment{{Key: "1A", Value: lit("x")}}}, envRule + "; this one starts with a digit"},
		{"environment name with '-'", Parameters{Environment: Environment{{Key: "A-B", Value: lit("x")}}}, envRule + "; this one has '-'"},
		{"relative mount point", Parameters{InputMountPoint: "in"}, mountRule + "; this one does not start with '/'"},
		{"root mount point", Parameters{InputMountPoint: "/"}, mountRule + "; '/' alone is the container's root, which cannot be mounted over"},
		{"mount point with '//'", Parameters{InputMountPoint: "/a//b"}, mountRule + "; this one has '//'"},
		{"mount point with a space", Parameters{InputMountPoint: "/my files"}, mountRule + "; this one has a space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.p.ApplyDefaults()
			ps := tt.p.Validate()
			if len(ps) != 1 || ps[0].Type != "string_pattern_mismatch" {
				t.Fatalf("problems = %v, want one pattern mismatch", problemSummary(ps))
			}
			want := fmt.Sprintf("String should match pattern '%s': %s", ps[0].Ctx["pattern"], tt.want)
			if ps[0].Msg != want {
				t.Errorf("message:\n got %s\nwant %s", ps[0].Msg, want)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	t.Parallel()
	var p Parameters
	p.ApplyDefaults()
	if p.InputMountPoint != "/input_files" || p.OutputMountPoint != "/output_files" {
		t.Errorf("defaults = %q, %q", p.InputMountPoint, p.OutputMountPoint)
	}
	p = Parameters{InputMountPoint: "/in", OutputMountPoint: "/out"}
	p.ApplyDefaults()
	if p.InputMountPoint != "/in" || p.OutputMountPoint != "/out" {
		t.Errorf("ApplyDefaults overwrote set values: %q, %q", p.InputMountPoint, p.OutputMountPoint)
	}
}

func TestFileParameter(t *testing.T) {
	t.Parallel()
	m := Parameter{Type: TypeManifestFile, ManifestFileFormat: ManifestDataIDs}
	tests := []struct {
		name string
		p    Parameters
		want *Parameter
	}{
		{"none", Parameters{Args: []Arg{cn("", "", ""), lit("x")}}, nil},
		{"in env", Parameters{Args: []Arg{lit("x")}, Environment: Environment{{Key: "M", Value: Arg{Param: &m}}}}, &m},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.p.FileParameter(); got != tc.want {
				t.Errorf("FileParameter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEnumExpected(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"a": "'a'", "a,b": "'a' or 'b'", "a,b,c": "'a', 'b' or 'c'"} {
		if got := EnumExpected(strings.Split(in, ",")); got != want {
			t.Errorf("EnumExpected(%s) = %s, want %s", in, got, want)
		}
	}
}
