package args

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func lit(s string) Arg      { return Arg{Literal: s} }
func param(p Parameter) Arg { return Arg{Param: &p} }
func cn(prefix, suffix, flag string) Arg {
	return param(Parameter{Type: TypeContainerNumber, ContainerNumPrefix: prefix, ContainerNumSuffix: suffix, Flag: flag})
}
func inFiles(format, flag string) Arg {
	return param(Parameter{Type: TypeInputFiles, InputFilesFormat: format, Flag: flag})
}

// The golden cases of the Python service's argument tests (test/jaws/wdl_test.py), without
// shell quoting.
func TestGenerateGolden(t *testing.T) {
	t.Parallel()
	files := []string{"/input_files/file1", "/input_files/file2"}
	main := []string{"main_command"}
	tests := []struct {
		name       string
		entrypoint []string
		args       []Arg
		env        Environment
		files      []string
		wantCmd    []string
		wantEnv    []string
	}{
		{
			name: "space list and container numbers",
			args: []Arg{lit("im_an_argument"), inFiles(SpaceSeparatedList, ""), lit("--container_number"),
				cn("", "", ""), cn("pref/", "/suff", "")},
			env: Environment{
				{Key: "ENVKEY", Value: lit("envval")},
				{Key: "CNNUM1", Value: cn("", "", "")},
				{Key: "CNNUM2", Value: cn("pref/", "/suff", "")},
			},
			wantCmd: []string{"main_command", "im_an_argument", "/input_files/file1", "/input_files/file2",
				"--container_number", "0", "pref/0/suff"},
			wantEnv: []string{"ENVKEY=envval", "CNNUM1=0", "CNNUM2=pref/0/suff"},
		},
		{
			name: "glued flags",
			args: []Arg{lit("im_an_argument"), inFiles(SpaceSeparatedList, "--input="),
				cn("", "", "--cn1="), cn("pref/", "/suff", "-c=")},
			wantCmd: []string{"main_command", "im_an_argument", "--input=/input_files/file1",
				"/input_files/file2", "--cn1=0", "-c=pref/0/suff"},
		},
		{
			name: "space list with separate flag",
			args: []Arg{inFiles(SpaceSeparatedList, "--input"), cn("", "", "--cn")},
			wantCmd: []string{"main_command", "--input", "/input_files/file1", "/input_files/file2",
				"--cn", "0"},
		},
		{
			name:    "comma list with flag",
			args:    []Arg{lit("im_an_argument"), inFiles(CommaSeparatedList, "-i")},
			wantCmd: []string{"main_command", "im_an_argument", "-i", "/input_files/file1,/input_files/file2"},
		},
		{
			name:    "comma list with glued flag",
			args:    []Arg{inFiles(CommaSeparatedList, "-i=")},
			wantCmd: []string{"main_command", "-i=/input_files/file1,/input_files/file2"},
		},
		{
			name:    "comma list without flag",
			args:    []Arg{inFiles(CommaSeparatedList, "")},
			wantCmd: []string{"main_command", "/input_files/file1,/input_files/file2"},
		},
		{
			// Python quotes this as "'/input_files/f[ile1,/input_files/file2'"; unquoted on purpose.
			name:    "comma list with a character the shell would quote",
			args:    []Arg{lit("im_an_argument"), inFiles(CommaSeparatedList, "-i")},
			files:   []string{"/input_files/f[ile1", "/input_files/file2"},
			wantCmd: []string{"main_command", "im_an_argument", "-i", "/input_files/f[ile1,/input_files/file2"},
		},
		{
			name: "repeat parameter",
			args: []Arg{lit("im_an_argument"), inFiles(RepeatParameter, "-i")},
			wantCmd: []string{"main_command", "im_an_argument", "-i", "/input_files/file1", "-i",
				"/input_files/file2"},
		},
		{
			name:    "repeat parameter glued",
			args:    []Arg{inFiles(RepeatParameter, "--in=")},
			wantCmd: []string{"main_command", "--in=/input_files/file1", "--in=/input_files/file2"},
		},
		{
			name:    "env comma list ignores the flag",
			env:     Environment{{Key: "INFILES", Value: inFiles(CommaSeparatedList, "")}},
			wantCmd: []string{"main_command"},
			wantEnv: []string{"INFILES=/input_files/file1,/input_files/file2"},
		},
		{
			// Python quotes these as "'prog;ram'" and "'sub*com'\"'\"'mand'"; unquoted on purpose.
			name:       "entrypoint passes through unchanged",
			entrypoint: []string{"prog;ram", "sub*com'mand"},
			wantCmd:    []string{"prog;ram", "sub*com'mand"},
		},
		{
			name:    "file names with spaces and quotes stay single arguments",
			args:    []Arg{inFiles(SpaceSeparatedList, "")},
			files:   []string{"/in/a b", "/in/it's"},
			wantCmd: []string{"main_command", "/in/a b", "/in/it's"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep := tc.entrypoint
			if ep == nil {
				ep = main
			}
			fs := tc.files
			if fs == nil {
				fs = files
			}
			cmd, env, err := Generate(ep, Parameters{Args: tc.args, Environment: tc.env}, 0, fs)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if !slices.Equal(cmd, tc.wantCmd) {
				t.Errorf("cmd = %q, want %q", cmd, tc.wantCmd)
			}
			if !slices.Equal(env, tc.wantEnv) {
				t.Errorf("env = %q, want %q", env, tc.wantEnv)
			}
		})
	}
}

func TestGenerateContainers(t *testing.T) {
	t.Parallel()
	p := Parameters{
		Args: []Arg{cn("", "", ""), cn("pref/", "/suff", ""), inFiles(CommaSeparatedList, "--files")},
		Environment: Environment{
			{Key: "Z_LAST", Value: lit("z")},
			{Key: "A_FIRST", Value: cn("c", "", "")},
		},
	}
	perContainer := [][]string{{"/input_files/file1", "/input_files/file2"}, {"/input_files/file3"}}
	want := []struct{ cmd, env []string }{
		{[]string{"main_command", "0", "pref/0/suff", "--files", "/input_files/file1,/input_files/file2"},
			[]string{"Z_LAST=z", "A_FIRST=c0"}},
		{[]string{"main_command", "1", "pref/1/suff", "--files", "/input_files/file3"},
			[]string{"Z_LAST=z", "A_FIRST=c1"}},
	}
	for n, files := range perContainer {
		t.Run(fmt.Sprint("container ", n), func(t *testing.T) {
			cmd, env, err := Generate([]string{"main_command"}, p, n, files)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if !slices.Equal(cmd, want[n].cmd) {
				t.Errorf("cmd = %q, want %q", cmd, want[n].cmd)
			}
			if !slices.Equal(env, want[n].env) {
				t.Errorf("env = %q, want %q (key order kept)", env, want[n].env)
			}
		})
	}
}

func TestGenerateDoesNotAliasEntrypoint(t *testing.T) {
	t.Parallel()
	ep := make([]string, 1, 10)
	ep[0] = "prog"
	cmd, _, err := Generate(ep, Parameters{Args: []Arg{lit("x")}}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd[0] = "changed"
	if ep[0] != "prog" {
		t.Error("Generate wrote into the caller's entrypoint array")
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Parameters
		cont int
		want error
	}{
		{"manifest arg", Parameters{Args: []Arg{param(Parameter{Type: TypeManifestFile, ManifestFileFormat: ManifestFiles, Flag: "-m"})}}, 0, ErrManifestUnsupported},
		{"manifest env", Parameters{Environment: Environment{{Key: "M", Value: param(Parameter{Type: TypeManifestFile, ManifestFileFormat: ManifestFiles})}}}, 0, ErrManifestUnsupported},
		{"repeat without flag", Parameters{Args: []Arg{inFiles(RepeatParameter, "")}}, 0, ErrInvalidParameter},
		{"unknown type", Parameters{Args: []Arg{param(Parameter{Type: "nope"})}}, 0, ErrInvalidParameter},
		{"unknown format", Parameters{Args: []Arg{inFiles("tab_separated", "")}}, 0, ErrInvalidParameter},
		{"env space list", Parameters{Environment: Environment{{Key: "F", Value: inFiles(SpaceSeparatedList, "")}}}, 0, ErrInvalidParameter},
		{"negative container", Parameters{}, -1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Generate([]string{"x"}, tc.p, tc.cont, []string{"/input_files/a"})
			if err == nil {
				t.Fatal("Generate succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func BenchmarkGenerate(b *testing.B) {
	files := make([]string, 1000)
	for i := range files {
		files[i] = fmt.Sprintf("/input_files/collections/GCA_%09d.1/GCA_%09d.1_genomic.fna.gz", i, i)
	}
	p := Parameters{
		Args: []Arg{lit("end-to-end"), lit("--cleanup"), inFiles(CommaSeparatedList, "--input"),
			cn("job_", "", "--job=")},
		Environment: Environment{{Key: "THREADS", Value: lit("4")}, {Key: "JOB_ID", Value: cn("", "", "")}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Generate([]string{"genomad"}, p, 7, files); err != nil {
			b.Fatal(err)
		}
	}
}
