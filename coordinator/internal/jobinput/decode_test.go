package jobinput

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/args"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/examples")

// validBody returns a minimal valid body as a map, for tests to modify.
func validBody() map[string]any {
	return map[string]any{
		"cluster":     "kbase",
		"image":       "ghcr.io/kbase/img:1",
		"params":      map[string]any{},
		"output_dir":  "bucket/out",
		"input_files": []any{"bucket/in/file1", "bucket/in/file2"},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// details renders a validation error's details as "loc|type|msg" lines; it fails the test
// if err is not a *ctserr.Error with code 30010.
func details(t testing.TB, err error) []string {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) || ce.Code != ctserr.CodeRequestValidation {
		t.Fatalf("error %v (%T) is not a request validation *ctserr.Error", err, err)
	}
	out := make([]string, len(ce.Validation))
	for i, d := range ce.Validation {
		out[i] = fmt.Sprintf("%v|%s|%s", d.Loc, d.Type, d.Msg)
	}
	return out
}

// TestDecodeExamples decodes the three example bodies of the CTS docs (with
// cluster kbase) and compares the stored form and the API view with golden files.
func TestDecodeExamples(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"seqkit", "genomad", "checkm2"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body, err := os.ReadFile(filepath.Join("testdata", "examples", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			ji, err := Decode(bytes.NewReader(body), DefaultOptions())
			if err != nil {
				t.Fatalf("Decode: %v %q", err, details(t, err))
			}
			stored, err := json.MarshalIndent(ji, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			view, err := json.MarshalIndent(ji.APIView(), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("stored:\n%s\nview:\n%s\n", stored, view)
			golden := filepath.Join("testdata", "examples", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n%s", name, golden, got)
			}
			// The stored form reads back into the same value.
			var back JobInput
			if err := json.Unmarshal(stored, &back); err != nil || !reflect.DeepEqual(&back, ji) {
				t.Errorf("stored form does not round-trip: %v\n%+v\n%+v", err, back, *ji)
			}
			// The API view is itself a valid body that decodes to the same job input.
			again, err := Decode(bytes.NewReader(view), DefaultOptions())
			if err != nil || !reflect.DeepEqual(again, ji) {
				t.Errorf("API view does not decode back: %v", err)
			}
		})
	}
}

func TestDecodeExampleFacts(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile(filepath.Join("testdata", "examples", "checkm2.json"))
	if err != nil {
		t.Fatal(err)
	}
	ji, err := Decode(bytes.NewReader(body), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if ji.Memory != 100_000_000_000 || ji.RuntimeSeconds != 600 || ji.NumContainers != 3 || ji.CPUs != 4 {
		t.Errorf("resources = %d B, %v s, %d containers, %d cpus", ji.Memory, ji.RuntimeSeconds, ji.NumContainers, ji.CPUs)
	}
	if got := ji.FilesPerContainer(); !reflect.DeepEqual(got, [][]int{{0, 1}, {2}, {3}}) {
		t.Errorf("FilesPerContainer = %v", got)
	}
	keys := make([]string, len(ji.Params.Environment))
	for i, e := range ji.Params.Environment {
		keys[i] = e.Key
	}
	want := "DATA_ID_FILE ENV KBASE_COLLECTION SOURCE_VER LOAD_VER ROOT_DIR JOB_ID THREADS_PER_TOOL_RUN SOURCE_FILE_EXT"
	if strings.Join(keys, " ") != want {
		t.Errorf("environment order = %v", keys)
	}
	if fp := ji.Params.FileParameter(); fp == nil || fp.Type != args.TypeManifestFile {
		t.Errorf("FileParameter = %+v, want the manifest", fp)
	}
	paths, err := ji.ContainerPaths()
	if err != nil {
		t.Fatal(err)
	}
	if want := "/collectionssource/NONE/CDM/FastGenomics/GCA_000008085.1/GCA_000008085.1_ASM808v1_genomic.fna.gz"; paths[0] != want {
		t.Errorf("path[0] = %s, want %s", paths[0], want)
	}
}

func TestDecodeDefaults(t *testing.T) {
	t.Parallel()
	ji, err := Decode(bytes.NewReader(mustJSON(t, validBody())), DefaultOptions())
	if err != nil {
		t.Fatalf("Decode: %q", details(t, err))
	}
	want := &JobInput{
		Cluster: "kbase", Image: "ghcr.io/kbase/img:1",
		Params:        args.Parameters{InputMountPoint: "/input_files", OutputMountPoint: "/output_files"},
		NumContainers: 1, CPUs: 1, Memory: 10_000_000, RuntimeSeconds: 60,
		OutputDir:  "bucket/out/",
		InputFiles: []InputFile{{File: "bucket/in/file1"}, {File: "bucket/in/file2"}},
	}
	if !reflect.DeepEqual(ji, want) {
		t.Errorf("got  %+v\nwant %+v", ji, want)
	}
	view := string(mustJSON(t, ji.APIView()))
	wantView := `{"cluster":"kbase","image":"ghcr.io/kbase/img:1","params":{"input_mount_point":"/input_files",` +
		`"output_mount_point":"/output_files","declobber":false},"num_containers":1,"cpus":1,"memory":10000000,` +
		`"runtime":"PT1M","output_dir":"bucket/out/","input_files":[{"file":"bucket/in/file1"},{"file":"bucket/in/file2"}]}`
	if view != wantView {
		t.Errorf("APIView =\n%s\nwant\n%s", view, wantView)
	}
	preview := string(mustJSON(t, ji.APIPreview()))
	if strings.Contains(preview, `"input_files":`) || !strings.Contains(preview, `"runtime":"PT1M"`) {
		t.Errorf("APIPreview = %s", preview)
	}
	stored := string(mustJSON(t, ji))
	if !strings.Contains(stored, `"runtime":60,`) || !strings.Contains(stored, `"memory":10000000,`) {
		t.Errorf("stored form = %s, want runtime in seconds and memory in bytes", stored)
	}
}

func TestDecodeValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		set   map[string]any
		check func(*JobInput) bool
	}{
		{"memory 10MiB", map[string]any{"memory": "10MiB"}, func(j *JobInput) bool { return j.Memory == 10485760 }},
		{"memory 1.5 GB", map[string]any{"memory": "1.5 GB"}, func(j *JobInput) bool { return j.Memory == 1_500_000_000 }},
		{"memory int", map[string]any{"memory": 2_000_000}, func(j *JobInput) bool { return j.Memory == 2_000_000 }},
		{"memory 2G", map[string]any{"memory": "2G"}, func(j *JobInput) bool { return j.Memory == 2e9 }},
		{"memory 1gb", map[string]any{"memory": "1gb"}, func(j *JobInput) bool { return j.Memory == 1e9 }},
		{"memory max", map[string]any{"memory": "990GB"}, func(j *JobInput) bool { return j.Memory == 990e9 }},
		{"runtime int", map[string]any{"runtime": 90}, func(j *JobInput) bool { return j.RuntimeSeconds == 90 }},
		{"runtime float", map[string]any{"runtime": 1.5}, func(j *JobInput) bool { return j.RuntimeSeconds == 1.5 }},
		{"runtime ISO", map[string]any{"runtime": "PT12H30M5S"}, func(j *JobInput) bool { return j.RuntimeSeconds == 45005 }},
		{"runtime days", map[string]any{"runtime": "P1D"}, func(j *JobInput) bool { return j.RuntimeSeconds == 86400 }},
		{"runtime clock", map[string]any{"runtime": "01:02:03"}, func(j *JobInput) bool { return j.RuntimeSeconds == 3723 }},
		{"runtime max", map[string]any{"runtime": "P6DT23H45M"}, func(j *JobInput) bool { return j.RuntimeSeconds == 10065*60 }},
		{"cpus string", map[string]any{"cpus": "4"}, func(j *JobInput) bool { return j.CPUs == 4 }},
		{"cpus integral float", map[string]any{"cpus": 4.0}, func(j *JobInput) bool { return j.CPUs == 4 }},
		{"num containers", map[string]any{"num_containers": 2}, func(j *JobInput) bool { return j.NumContainers == 2 }},
		{"output dir trailing slash", map[string]any{"output_dir": "bucket/out/"}, func(j *JobInput) bool { return j.OutputDir == "bucket/out/" }},
		{"output dir leading space", map[string]any{"output_dir": "  bucket/out"}, func(j *JobInput) bool { return j.OutputDir == "bucket/out/" }},
		{"input roots normalised", map[string]any{"input_roots": []any{"  ", "bucket", "bucket/   ", "bucket/in", "bucket/in", " bucket/x"}},
			func(j *JobInput) bool {
				return reflect.DeepEqual(j.InputRoots, []string{"", "bucket", "bucket/in", "bucket/x"})
			}},
		{"input roots null", map[string]any{"input_roots": nil}, func(j *JobInput) bool { return j.InputRoots == nil }},
		{"file objects", map[string]any{"input_files": []any{
			map[string]any{"file": "bucket/a", "crc64nvme": "AAAAAAAAAAA=", "data_id": "id1"},
			map[string]any{"file": "bucket/b", "crc64nvme": nil, "data_id": "id2"}}},
			func(j *JobInput) bool {
				return reflect.DeepEqual(j.InputFiles, []InputFile{{"bucket/a", "AAAAAAAAAAA=", "id1"}, {"bucket/b", "", "id2"}})
			}},
		{"file objects without data IDs", map[string]any{"input_files": []any{
			map[string]any{"file": "bucket/a"}, map[string]any{"file": "bucket/b", "data_id": nil}}},
			func(j *JobInput) bool { return len(j.InputFiles) == 2 && j.InputFiles[1].DataID == "" }},
		{"declobber and unicode args", map[string]any{"params": map[string]any{"declobber": true, "args": []any{"héllo", "файл"}}},
			func(j *JobInput) bool { return j.Params.Declobber && j.Params.Args[1].Literal == "файл" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := validBody()
			for k, v := range tc.set {
				body[k] = v
			}
			ji, err := Decode(bytes.NewReader(mustJSON(t, body)), DefaultOptions())
			if err != nil {
				t.Fatalf("Decode: %q", details(t, err))
			}
			if !tc.check(ji) {
				t.Errorf("unexpected result: %+v", ji)
			}
		})
	}
}

func TestDecodeProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		set   map[string]any
		unset []string
		opts  func(*Options)
		want  []string
	}{
		{name: "missing fields", unset: []string{"cluster", "image", "params", "output_dir", "input_files"}, want: []string{
			"[body cluster]|missing|Field required",
			"[body image]|missing|Field required",
			"[body params]|missing|Field required",
			"[body output_dir]|missing|Field required",
			"[body input_files]|missing|Field required",
		}},
		{name: "unknown cluster", set: map[string]any{"cluster": "perlmutter-jaws"},
			want: []string{"[body cluster]|enum|Input should be 'kbase'"}},
		{name: "cluster list from options", set: map[string]any{"cluster": 5},
			opts: func(o *Options) { o.Sites = []string{"kbase", "local", "slurm"} },
			want: []string{"[body cluster]|enum|Input should be 'kbase', 'local' or 'slurm'"}},
		{name: "image empty", set: map[string]any{"image": ""},
			want: []string{"[body image]|string_too_short|String should have at least 1 character"}},
		{name: "image too long", set: map[string]any{"image": strings.Repeat("i", 1001)},
			want: []string{"[body image]|string_too_long|String should have at most 1000 characters"}},
		{name: "image not a string", set: map[string]any{"image": []any{}},
			want: []string{"[body image]|string_type|Input should be a valid string"}},
		{name: "num_containers bounds", set: map[string]any{"num_containers": 0},
			want: []string{"[body num_containers]|greater_than_equal|Input should be greater than or equal to 1"}},
		{name: "num_containers max", set: map[string]any{"num_containers": 1001},
			want: []string{"[body num_containers]|less_than_equal|Input should be less than or equal to 1000"}},
		{name: "num_containers more than files", set: map[string]any{"num_containers": 3},
			want: []string{"[body]|value_error|Value error, num_containers must be less than or equal to the number of input files"}},
		{name: "cpus", set: map[string]any{"cpus": 257},
			want: []string{"[body cpus]|less_than_equal|Input should be less than or equal to 256"}},
		{name: "cpus fraction", set: map[string]any{"cpus": 1.5},
			want: []string{"[body cpus]|int_from_float|Input should be a valid integer, got a number with a fractional part"}},
		{name: "cpus string", set: map[string]any{"cpus": "four"},
			want: []string{"[body cpus]|int_parsing|Input should be a valid integer, unable to parse string as an integer"}},
		{name: "cpus null", set: map[string]any{"cpus": nil},
			want: []string{"[body cpus]|int_type|Input should be a valid integer"}},
		{name: "cpus huge", set: map[string]any{"cpus": json.Number("1" + strings.Repeat("0", 40))},
			want: []string{"[body cpus]|less_than_equal|Input should be less than or equal to 256"}},
		{name: "memory too small", set: map[string]any{"memory": "999999"},
			want: []string{"[body memory]|greater_than_equal|Input should be greater than or equal to 1000000: memory is in bytes unless a unit is given (at least 1 MB; e.g. \"100MB\", \"2GB\", \"1.5GiB\"), got 999999 bytes"}},
		{name: "memory too large", set: map[string]any{"memory": "991GB"},
			want: []string{"[body memory]|less_than_equal|Input should be less than or equal to 990000000000"}},
		{name: "memory site option", set: map[string]any{"memory": "2GB"}, opts: func(o *Options) { o.MaxMemory = 1e9 },
			want: []string{"[body memory]|less_than_equal|Input should be less than or equal to 1000000000"}},
		{name: "memory unit", set: map[string]any{"memory": "10 parsecs"},
			want: []string{"[body memory]|byte_size_unit|could not interpret byte unit: parsecs"}},
		{name: "memory garbage", set: map[string]any{"memory": "lots"},
			want: []string{"[body memory]|byte_size|could not parse value and unit from byte string"}},
		{name: "memory trailing garbage", set: map[string]any{"memory": "10MB of RAM"},
			want: []string{"[body memory]|byte_size|could not parse value and unit from byte string"}},
		{name: "memory null", set: map[string]any{"memory": nil},
			want: []string{"[body memory]|byte_size|could not parse value and unit from byte string"}},
		{name: "runtime too short", set: map[string]any{"runtime": 0.5},
			want: []string{"[body runtime]|greater_than_equal|Input should be greater than or equal to PT1S"}},
		{name: "runtime too long", set: map[string]any{"runtime": "P7D"},
			want: []string{"[body runtime]|less_than_equal|Input should be less than or equal to P6DT23H45M"}},
		{name: "runtime negative", set: map[string]any{"runtime": "-PT5M"},
			want: []string{"[body runtime]|greater_than_equal|Input should be greater than or equal to PT1S"}},
		{name: "runtime bad", set: map[string]any{"runtime": "PT5X"},
			want: []string{"[body runtime]|time_delta_parsing|Input should be a valid timedelta, expected H, M or S after T in duration"}},
		{name: "runtime type", set: map[string]any{"runtime": true},
			want: []string{"[body runtime]|time_delta_type|Input should be a valid timedelta"}},
		{name: "input roots", set: map[string]any{"input_roots": []any{"bucket/a//b", 5, "Bucket"}},
			want: []string{
				"[body input_roots 0]|value_error|Value error, Path 'bucket/a//b' at index 0 contains illegal character(s) '//' at key index 1",
				"[body input_roots 1]|string_type|Input should be a valid string",
				"[body input_roots 2]|value_error|Value error, Bucket name at index 2 may only contain '-' and lowercase ascii alphanumerics: Bucket",
			}},
		{name: "input roots not a list", set: map[string]any{"input_roots": "bucket"},
			want: []string{"[body input_roots]|list_type|Input should be a valid list"}},
		{name: "output dir", set: map[string]any{"output_dir": "bucket/out///"},
			want: []string{"[body output_dir]|value_error|Value error, Path 'bucket/out///' contains illegal character(s) '//' at key index 3"}},
		// A ".." segment made the embedded S3 resolve another job's log folder and gave 500s.
		{name: "output dir dot-dot into the log folder", set: map[string]any{"output_dir": "cts-logs/x/../container_logs/j/"},
			want: []string{"[body output_dir]|value_error|Value error, Path 'cts-logs/x/../container_logs/j/' has a '..' segment at key index 2: relative segments are not allowed in S3 paths, name the folder itself"}},
		{name: "output dir dot-dot", set: map[string]any{"output_dir": "cts-data/.."},
			want: []string{"[body output_dir]|value_error|Value error, Path 'cts-data/..' has a '..' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself"}},
		{name: "input file dot-dot", set: map[string]any{"input_files": []any{"cts-data/a", "cts-data/../cts-logs/x", map[string]any{"file": "x"}}},
			want: []string{
				"[body input_files 1]|value_error|Value error, Path 'cts-data/../cts-logs/x' at index 1 has a '..' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself",
				"[body input_files 2]|string_type|Input should be a valid string",
			}},
		{name: "input file object dot", set: map[string]any{"input_files": []any{map[string]any{"file": "cts-data/./a"}}},
			want: []string{"[body input_files 0 file]|value_error|Value error, Path 'cts-data/./a' has a '.' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself"}},
		{name: "input root dot-dot", set: map[string]any{"input_roots": []any{"cts-data/in/.."}},
			want: []string{"[body input_roots 0]|value_error|Value error, Path 'cts-data/in/..' at index 0 has a '..' segment at key index 3: relative segments are not allowed in S3 paths, name the folder itself"}},
		{name: "output dir short", set: map[string]any{"output_dir": "b/o"},
			want: []string{"[body output_dir]|string_too_short|String should have at least 5 characters"}},
		{name: "output dir long", set: map[string]any{"output_dir": "bucket/" + strings.Repeat("k", 1082)},
			want: []string{"[body output_dir]|string_too_long|String should have at most 1088 characters"}},
		{name: "input files empty", set: map[string]any{"input_files": []any{}},
			want: []string{"[body input_files]|too_short|List should have at least 1 item after validation, not 0"}},
		{name: "input files too many", set: map[string]any{"input_files": []any{"bucket/a", "bucket/b", "bucket/c"}},
			opts: func(o *Options) { o.MaxInputFiles = 2 },
			want: []string{"[body input_files]|too_long|List should have at most 2 items after validation, not 3"}},
		{name: "input files not a list", set: map[string]any{"input_files": "bucket/a"},
			want: []string{"[body input_files]|list_type|Input should be a valid list"}},
		{name: "input file paths", set: map[string]any{"input_files": []any{"bucket/ok", "bücket/f", "bucket/f\x07", "abc"}},
			want: []string{
				"[body input_files 1]|value_error|Value error, Bucket name at index 1 may only contain '-' and lowercase ascii alphanumerics: bücket",
				"[body input_files 2]|value_error|Value error, Path bucket/f\x07 at index 2 contains a control character in the key at position 1",
				"[body input_files 3]|string_too_short|String should have at least 5 characters",
			}},
		{name: "mixed input files", set: map[string]any{"input_files": []any{"bucket/a", map[string]any{"file": "bucket/b"}}},
			want: []string{"[body input_files 1]|string_type|Input should be a valid string"}},
		{name: "mixed input files, objects first", set: map[string]any{"input_files": []any{map[string]any{"file": "bucket/b"}, "bucket/a"}},
			want: []string{"[body input_files 1]|model_type|Input should be a valid dictionary or instance of S3FileWithDataID"}},
		{name: "input file items of no kind", set: map[string]any{"input_files": []any{1, nil}},
			want: []string{
				"[body input_files 0]|string_type|Input should be a valid string or dictionary",
				"[body input_files 1]|string_type|Input should be a valid string or dictionary",
			}},
		{name: "file object fields", set: map[string]any{"input_files": []any{
			map[string]any{"crc64nvme": "short"},
			map[string]any{"file": "bucket/b", "crc64nvme": "!!!!!!!!!!!!"},
			map[string]any{"file": "bucket/c", "crc64nvme": "AAAAAAAAAAAA"},
			map[string]any{"file": "bucket/d", "data_id": ""},
			map[string]any{"file": "bucket/e", "data_id": "a\u200bb"},
			map[string]any{"file": "bucket/f", "data_id": strings.Repeat("d", 256)},
			map[string]any{"file": "bucket/g", "crc64name": "AAAAAAAAAAA="},
		}, "num_containers": 1},
			want: []string{
				"[body input_files 0 crc64nvme]|string_too_short|String should have at least 12 characters",
				"[body input_files 0 file]|missing|Field required",
				"[body input_files 1 crc64nvme]|value_error|Value error, crc64nvme must be the base64 encoding of an 8 byte CRC64/NVME checksum",
				"[body input_files 2 crc64nvme]|value_error|Value error, crc64nvme must be the base64 encoding of an 8 byte CRC64/NVME checksum",
				"[body input_files 3 data_id]|string_too_short|String should have at least 1 character",
				"[body input_files 4 data_id]|value_error|Value error, data_id contains a control character at position 1",
				"[body input_files 5 data_id]|string_too_long|String should have at most 255 characters",
				"[body input_files 6 crc64name]|extra_forbidden|Extra inputs are not permitted",
			}},
		{name: "data IDs all or none", set: map[string]any{"input_files": []any{
			map[string]any{"file": "bucket/a", "data_id": "x"}, map[string]any{"file": "bucket/b"}}},
			want: []string{"[body input_files]|value_error|Value error, Either all or no files must have data IDs"}},
		{name: "manifest data_ids needs data IDs", set: map[string]any{"params": map[string]any{"args": []any{
			map[string]any{"type": "manifest_file", "manifest_file_format": "data_ids"}}}},
			want: []string{"[body]|value_error|Value error, A manifest_file parameter with the data_ids format requires data IDs for the input files"}},
		{name: "params problems carry the body prefix", set: map[string]any{"params": map[string]any{
			"args": []any{"ok", "--threads=4"}, "environment": map[string]any{"A": map[string]any{"type": "container_number", "flag": "-x"}}}},
			want: []string{
				"[body params args 1]|string_pattern_mismatch|String should match pattern '^--?[a-zA-Z0-9][\\w\\.-]*=?$': " +
					"a flag is '-' or '--', a letter or digit, then letters, digits, '_', '.' or '-', and may end with '='; " +
					"this one has a value after '='. Give the value as the next argument: \"--threads\", \"4\"",
				"[body params environment A flag]|extra_forbidden|Extra inputs are not permitted",
			}},
		{name: "params not an object", set: map[string]any{"params": nil},
			want: []string{"[body params]|model_type|Input should be a valid dictionary or instance of Parameters"}},
		{name: "collision", set: map[string]any{"input_files": []any{"bucket/a/file", "bucket/b/file"}},
			want: []string{"[body input_files 1]|value_error|Value error, Input files 'bucket/a/file' at index 0 and 'bucket/b/file' at index 1 collide at path '/input_files/file'"}},
		{name: "collision with custom mount", set: map[string]any{"input_files": []any{"bucket/a/file", "bucket/b/file"},
			"params": map[string]any{"input_mount_point": "/in/"}},
			want: []string{"[body input_files 1]|value_error|Value error, Input files 'bucket/a/file' at index 0 and 'bucket/b/file' at index 1 collide at path '/in/file'"}},
		{name: "several problems at once", set: map[string]any{"cluster": "nope", "cpus": 0, "memory": "1KB", "zzz": 1},
			want: []string{
				"[body cluster]|enum|Input should be 'kbase'",
				"[body cpus]|greater_than_equal|Input should be greater than or equal to 1",
				"[body memory]|greater_than_equal|Input should be greater than or equal to 1000000: memory is in bytes unless a unit is given (at least 1 MB; e.g. \"100MB\", \"2GB\", \"1.5GiB\"), got 1000 bytes",
				"[body zzz]|extra_forbidden|Extra inputs are not permitted",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := validBody()
			for k, v := range tc.set {
				body[k] = v
			}
			for _, k := range tc.unset {
				delete(body, k)
			}
			opts := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			ji, err := Decode(bytes.NewReader(mustJSON(t, body)), opts)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", ji)
			}
			if ji != nil {
				t.Error("Decode returned a job input with an error")
			}
			if got := details(t, err); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("details:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestDecodeUnknownKeys checks that an unknown key is refused at every level of the body.
func TestDecodeUnknownKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		loc  string
	}{
		{"top level", `{"cluster":"kbase","image":"i","params":{},"output_dir":"bucket/out","input_files":["bucket/a"],"crc64name":1}`,
			"[body crc64name]"},
		{"params", `{"cluster":"kbase","image":"i","params":{"arguments":[]},"output_dir":"bucket/out","input_files":["bucket/a"]}`,
			"[body params arguments]"},
		{"args parameter", `{"cluster":"kbase","image":"i","params":{"args":[{"type":"container_number","prefix":"x"}]},"output_dir":"bucket/out","input_files":["bucket/a"]}`,
			"[body params args 0 prefix]"},
		{"environment parameter", `{"cluster":"kbase","image":"i","params":{"environment":{"E":{"type":"container_number","x":1}}},"output_dir":"bucket/out","input_files":["bucket/a"]}`,
			"[body params environment E x]"},
		{"input file object", `{"cluster":"kbase","image":"i","params":{},"output_dir":"bucket/out","input_files":[{"file":"bucket/a","size":1}]}`,
			"[body input_files 0 size]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(strings.NewReader(tc.body), DefaultOptions())
			want := []string{tc.loc + "|extra_forbidden|Extra inputs are not permitted"}
			if got := details(t, err); !reflect.DeepEqual(got, want) {
				t.Errorf("details = %q, want %q", got, want)
			}
		})
	}
}

func TestDecodeNotJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want string
	}{
		{"empty", "", "[body]|missing|Field required"},
		{"spaces", " \n", "[body]|missing|Field required"},
		{"truncated", `{"cluster":`, "[body 11]|json_invalid|JSON decode error"},
		{"trailing data", `{} {}`, "[body 4]|json_invalid|JSON decode error"},
		{"not UTF-8", "{\"image\":\"\xff\"}", "[body 10]|json_invalid|JSON decode error"},
		{"array", `[1]`, "[body]|model_attributes_type|Input should be a valid dictionary or object to extract fields from"},
		{"string", `"x"`, "[body]|model_attributes_type|Input should be a valid dictionary or object to extract fields from"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(strings.NewReader(tc.body), DefaultOptions())
			if got := details(t, err); !reflect.DeepEqual(got, []string{tc.want}) {
				t.Errorf("details = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeDetailShape(t *testing.T) {
	t.Parallel()
	body := validBody()
	body["output_dir"] = "b/o"
	_, err := Decode(bytes.NewReader(mustJSON(t, body)), DefaultOptions())
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		t.Fatal(err)
	}
	got := string(mustJSON(t, ce.Validation))
	want := `[{"type":"string_too_short","loc":["body","output_dir"],"msg":"String should have at least 5 characters","input":"b/o","ctx":{"min_length":5}}]`
	if got != want {
		t.Errorf("details JSON =\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := Decode(iotest.ErrReader(boom), DefaultOptions())
	var ce *ctserr.Error
	if !errors.Is(err, boom) || errors.As(err, &ce) {
		t.Errorf("err = %v, want the wrapped read error, not a validation error", err)
	}
}
