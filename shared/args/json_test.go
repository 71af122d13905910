package args

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestArgJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Arg
		wantErr bool
		out     string
	}{
		{name: "literal", in: `"--threads"`, want: lit("--threads"), out: `"--threads"`},
		{name: "parameter", in: `{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i"}`,
			want: inFiles(RepeatParameter, "-i"),
			out:  `{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i"}`},
		{name: "nulls are absent", in: `{"type":"container_number","flag":null,"container_num_prefix":null}`,
			want: cn("", "", ""), out: `{"type":"container_number"}`},
		{name: "unknown key refused", in: `{"type":"container_number","flags":"-x"}`, wantErr: true},
		{name: "number refused", in: `4`, wantErr: true},
		{name: "null refused", in: `null`, wantErr: true},
		{name: "wrong field type refused", in: `{"type":5}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var a Arg
			err := json.Unmarshal([]byte(tc.in), &a)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Unmarshal(%s) succeeded: %+v", tc.in, a)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(a, tc.want) {
				t.Errorf("got %+v, want %+v", a, tc.want)
			}
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.out {
				t.Errorf("Marshal = %s, want %s", b, tc.out)
			}
		})
	}
}

func TestEnvironmentJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Environment
		wantErr bool
		out     string
	}{
		{name: "key order kept", in: `{"ZED":"1","ALPHA":{"type":"container_number"},"MID":"x"}`,
			want: Environment{{Key: "ZED", Value: lit("1")}, {Key: "ALPHA", Value: cn("", "", "")}, {Key: "MID", Value: lit("x")}},
			out:  `{"ZED":"1","ALPHA":{"type":"container_number"},"MID":"x"}`},
		{name: "repeated key keeps first position, last value", in: `{"A":"1","B":"2","A":"3"}`,
			want: Environment{{Key: "A", Value: lit("3")}, {Key: "B", Value: lit("2")}},
			out:  `{"A":"3","B":"2"}`},
		{name: "empty", in: `{}`, want: Environment{}, out: `{}`},
		{name: "null", in: `null`, want: nil, out: `null`},
		{name: "flag refused", in: `{"A":{"type":"container_number","flag":"-c"}}`, wantErr: true},
		{name: "unknown key refused", in: `{"A":{"type":"container_number","x":1}}`, wantErr: true},
		{name: "list refused", in: `["A"]`, wantErr: true},
		{name: "number value refused", in: `{"A":1}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e Environment
			err := json.Unmarshal([]byte(tc.in), &e)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Unmarshal(%s) succeeded: %+v", tc.in, e)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(e, tc.want) {
				t.Errorf("got %+v, want %+v", e, tc.want)
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.out {
				t.Errorf("Marshal = %s, want %s", b, tc.out)
			}
		})
	}
}

func TestParametersJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := `{"input_mount_point":"/in","output_mount_point":"/out","declobber":true,` +
		`"args":["stats",{"type":"input_files","input_files_format":"space_separated_list"}],` +
		`"environment":{"B":"b","A":{"type":"manifest_file","manifest_file_format":"data_ids","manifest_file_header":"genome_id"}}}`
	var p Parameters
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != in {
		t.Errorf("round trip:\n got %s\nwant %s", b, in)
	}
	// Empty optional fields are omitted, declobber always present.
	b, err = json.Marshal(Parameters{InputMountPoint: "/i", OutputMountPoint: "/o"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"input_mount_point":"/i","output_mount_point":"/o","declobber":false}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
}

func TestDecodeParameters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "empty object gets defaults", in: `{}`},
		{name: "not an object", in: `[]`, want: []string{"[]|model_type|Input should be a valid dictionary or instance of Parameters"}},
		{name: "null", in: `null`, want: []string{"[]|model_type|Input should be a valid dictionary or instance of Parameters"}},
		{name: "unknown top key", in: `{"argz":[]}`, want: []string{"[argz]|extra_forbidden|Extra inputs are not permitted"}},
		{name: "unknown parameter key", in: `{"args":[{"type":"container_number","flg":"-x"}]}`,
			want: []string{"[args 0 flg]|extra_forbidden|Extra inputs are not permitted"}},
		{name: "env flag refused", in: `{"environment":{"A":{"type":"container_number","flag":"-x"}}}`,
			want: []string{"[environment A flag]|extra_forbidden|Extra inputs are not permitted"}},
		{name: "wrong JSON types", in: `{"input_mount_point":5,"output_mount_point":null,"declobber":"maybe","args":{},"environment":[]}`,
			want: []string{
				"[input_mount_point]|string_type|Input should be a valid string",
				"[output_mount_point]|string_type|Input should be a valid string",
				"[declobber]|bool_parsing|Input should be a valid boolean, unable to interpret input",
				"[args]|list_type|Input should be a valid list",
				"[environment]|dict_type|Input should be a valid dictionary",
			}},
		{name: "declobber null", in: `{"declobber":null}`, want: []string{"[declobber]|bool_type|Input should be a valid boolean"}},
		{name: "lax booleans", in: `{"declobber":"yes"}`},
		{name: "item types", in: `{"args":[1,null,"ok",{"type":7}],"environment":{"A":true,"B":"x y"}}`,
			want: []string{
				"[args 0]|string_type|Input should be a valid string or dictionary",
				"[args 1]|string_type|Input should be a valid string or dictionary",
				"[args 3 type]|enum|Input should be 'input_files', 'manifest_file' or 'container_number'",
				"[environment A]|string_type|Input should be a valid string or dictionary",
				"[environment B]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
			}},
		{name: "explicit empty strings", in: `{"refdata_mount_point":"","args":[{"type":"container_number","flag":"","container_num_prefix":""}]}`,
			want: []string{
				"[refdata_mount_point]|string_too_short|String should have at least 1 character",
				"[args 0 flag]|string_too_short|String should have at least 2 characters",
				"[args 0 container_num_prefix]|string_too_short|String should have at least 1 character",
			}},
		{name: "explicit empty type", in: `{"args":[{"type":""}]}`,
			want: []string{"[args 0 type]|enum|Input should be 'input_files', 'manifest_file' or 'container_number'"}},
		{name: "missing type", in: `{"args":[{"flag":"-x"}]}`, want: []string{"[args 0 type]|missing|Field required"}},
		{name: "nullable formats", in: `{"args":[{"type":"container_number","input_files_format":null,"manifest_file_format":null}]}`},
		{name: "validation after decoding, with indexes kept", in: `{"args":[5,"a b",{"type":"input_files"}]}`,
			want: []string{
				"[args 0]|string_type|Input should be a valid string or dictionary",
				"[args 1]|string_pattern_mismatch|String should match pattern '^[\\w\\./][\\w\\./-]*$'",
				"[args 2]|value_error|Value error, The input_files_format field is required for input_files parameters",
			}},
		{name: "model rule skipped when a field fails to decode", in: `{"args":[{"type":"input_files","input_files_format":"repeat_parameter","flag":3}]}`,
			want: []string{"[args 0 flag]|string_type|Input should be a valid string"}},
		{name: "set-level rule", in: `{"args":[{"type":"input_files","input_files_format":"comma_separated_list"}],"environment":{"M":{"type":"manifest_file","manifest_file_format":"files"}}}`,
			want: []string{"[]|value_error|Value error, At most one Parameter instance with file input is allowed per parameter set"}},
		{name: "unknown keys last, in input order", in: `{"zz":1,"input_mount_point":"x","aa":2}`,
			want: []string{
				"[input_mount_point]|string_pattern_mismatch|String should match pattern '^/(?:[\\w.-]+/)*[\\w.-]+/?$'",
				"[zz]|extra_forbidden|Extra inputs are not permitted",
				"[aa]|extra_forbidden|Extra inputs are not permitted",
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ps := DecodeParameters([]byte(tc.in))
			got := problemSummary(ps)
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDecodeParametersValue(t *testing.T) {
	t.Parallel()
	in := `{"input_mount_point":"/in","declobber":1,"refdata_mount_point":null,` +
		`"args":["end-to-end",{"type":"input_files","input_files_format":"comma_separated_list","flag":"--in="}],` +
		`"environment":{"Z":"1","A":{"type":"container_number","container_num_prefix":"c"}}}`
	p, ps := DecodeParameters([]byte(in))
	if len(ps) != 0 {
		t.Fatalf("problems: %q", problemSummary(ps))
	}
	want := Parameters{InputMountPoint: "/in", OutputMountPoint: "/output_files", Declobber: true,
		Args:        []Arg{lit("end-to-end"), inFiles(CommaSeparatedList, "--in=")},
		Environment: Environment{{Key: "Z", Value: lit("1")}, {Key: "A", Value: cn("c", "", "")}}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v\nwant %+v", p, want)
	}
	// The strict json.Unmarshal path agrees with DecodeParameters on valid input.
	var viaJSON Parameters
	if err := json.Unmarshal([]byte(in), &viaJSON); err == nil {
		t.Error("json.Unmarshal accepted declobber 1; only DecodeParameters is lax")
	}
}

// FuzzDecodeParameters checks that DecodeParameters never panics, that what it accepts
// passes Validate, survives a JSON round trip through the strict unmarshalers, and
// generates a command line. Run:
//
//	go test -run=^$ -fuzz=FuzzDecodeParameters -fuzztime=30s ./shared/args/
func FuzzDecodeParameters(f *testing.F) {
	for _, s := range []string{`{}`, `{"args":["a",{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i="}]}`,
		`{"environment":{"B":"1","A":{"type":"container_number","container_num_prefix":"p"}},"declobber":"on"}`,
		`{"input_mount_point":"/in/","args":[{"type":"manifest_file","manifest_file_format":"files","flag":"-m"}]}`,
		`{"args":[1,{"type":"x","flag":3}],"environment":{"a":{"flag":"-x"}},"zz":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, ps := DecodeParameters(data)
		for _, pr := range ps {
			if pr.Type == "" || pr.Msg == "" {
				t.Fatalf("bad problem %+v", pr)
			}
		}
		if len(ps) > 0 {
			return
		}
		if again := p.Validate(); len(again) != 0 {
			t.Fatalf("accepted parameters fail Validate: %+v", again)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var back Parameters
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("%s does not round-trip: %v\n%+v\n%+v", b, err, back, p)
		}
		if _, _, err := Generate([]string{"prog"}, p, 3, []string{"/in/a", "/in/b"}); err != nil &&
			!errors.Is(err, ErrManifestUnsupported) {
			t.Fatalf("Generate: %v", err)
		}
	})
}
