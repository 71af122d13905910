package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/kbase/cts/shared/args"
)

// JobInput is the body of POST /jobs (and POST /jobs/preview). Fields left at their zero
// value are not sent, so the service applies its defaults. The service validates it (its
// jobinput package); this type only carries it.
type JobInput struct {
	Cluster string `json:"cluster,omitempty"`
	// Image is a registered image: name, name:tag or name@sha256:...
	Image         string          `json:"image,omitempty"`
	Params        args.Parameters `json:"params"`
	NumContainers int             `json:"num_containers,omitempty"`
	CPUs          int             `json:"cpus,omitempty"`
	// Memory per container: bytes or with units ("100MB", "1.5GiB").
	Memory Size `json:"memory,omitempty"`
	// Runtime per container: seconds or ISO 8601 ("PT30M").
	Runtime    Duration    `json:"runtime,omitempty"`
	InputRoots []string    `json:"input_roots,omitempty"`
	OutputDir  string      `json:"output_dir,omitempty"`
	InputFiles []InputFile `json:"input_files,omitempty"`
}

// InputFile is an input S3 path ("bucket/key") with an optional CRC64/NVME that must match
// S3's and an optional data ID. It is sent as a plain string when it holds only File.
type InputFile struct {
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme,omitempty"`
	DataID    string `json:"data_id,omitempty"`
}

// MarshalJSON writes a plain string when only File is set.
func (f InputFile) MarshalJSON() ([]byte, error) {
	if f.CRC64NVME == "" && f.DataID == "" {
		return json.Marshal(f.File)
	}
	type plain InputFile
	return json.Marshal(plain(f))
}

// UnmarshalJSON reads a string or an object.
func (f *InputFile) UnmarshalJSON(b []byte) error {
	if s, ok := asString(b); ok {
		*f = InputFile{File: s}
		return nil
	}
	type plain InputFile
	return json.Unmarshal(b, (*plain)(f))
}

// JSONSchema describes an InputFile: a path, or an object with the optional fields.
func (InputFile) JSONSchema() map[string]any {
	return map[string]any{"oneOf": []any{
		map[string]any{"type": "string", "description": "An S3 path, bucket/key."},
		map[string]any{"type": "object", "required": []string{"file"}, "properties": map[string]any{
			"file":      map[string]any{"type": "string", "description": "An S3 path, bucket/key."},
			"crc64nvme": map[string]any{"type": "string", "description": "The object's CRC64/NVME, base64."},
			"data_id":   map[string]any{"type": "string"},
		}},
	}}
}

// Size is a memory amount as the CTS accepts it: bytes ("1000000") or with units ("100MB").
// Bytes are sent as a JSON number.
type Size string

// MarshalJSON writes bytes as a number and anything else as a string.
func (s Size) MarshalJSON() ([]byte, error) {
	if _, err := strconv.ParseInt(string(s), 10, 64); err == nil {
		return []byte(s), nil
	}
	return json.Marshal(string(s))
}

// UnmarshalJSON reads a number or a string.
func (s *Size) UnmarshalJSON(b []byte) error {
	v, err := numberOrString(b)
	*s = Size(v)
	return err
}

// JSONSchema describes a Size.
func (Size) JSONSchema() map[string]any {
	return map[string]any{"oneOf": []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}},
		"description": "Bytes, or a size with units: 10MB, 10MiB, 1.5GB, 2G."}
}

// Duration is a runtime as the CTS accepts it: seconds ("300", "1.5") or ISO 8601 ("PT5M").
// Seconds are sent as a JSON number.
type Duration string

// MarshalJSON writes seconds as a number and anything else as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d != "" && (d[0] == '-' || d[0] >= '0' && d[0] <= '9') && json.Valid([]byte(d)) {
		return []byte(d), nil
	}
	return json.Marshal(string(d))
}

// UnmarshalJSON reads a number or a string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	v, err := numberOrString(b)
	*d = Duration(v)
	return err
}

// JSONSchema describes a Duration.
func (Duration) JSONSchema() map[string]any {
	return map[string]any{"oneOf": []any{map[string]any{"type": "number"}, map[string]any{"type": "string"}},
		"description": "Seconds, or an ISO 8601 duration (PT30M), or HH:MM:SS."}
}

func asString(b []byte) (string, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}

func numberOrString(b []byte) (string, error) {
	if s, ok := asString(b); ok {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return "", fmt.Errorf("want a number or a string, got %s", b)
	}
	return n.String(), nil
}

// inputFileKeys and parameterKeys are the keys an input file object and a parameter object
// may hold; DecodeJobInput refuses others with the place they were found, as the service does.
var (
	inputFileKeys = jsonNames(reflect.TypeFor[InputFile]())
	parameterKeys = jsonNames(reflect.TypeFor[args.Parameter]())
)

func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// DecodeJobInput decodes a JobInput strictly: unknown keys at any level are errors (the service
// refuses them too, and a misspelled key silently dropped here would change the job). An
// unknown key in an input file or a parameter is reported with its place
// ("params.args[1]: unknown field ...").
func DecodeJobInput(data []byte) (*JobInput, error) {
	var objs struct {
		Params struct {
			Args        []json.RawMessage          `json:"args"`
			Environment map[string]json.RawMessage `json:"environment"`
		} `json:"params"`
		InputFiles []json.RawMessage `json:"input_files"`
	}
	// A document of the wrong shape is left to the strict decoding below to describe.
	if json.Unmarshal(data, &objs) == nil {
		for i, raw := range objs.InputFiles {
			if err := checkKeys(raw, inputFileKeys); err != nil {
				return nil, fmt.Errorf("job input: input_files[%d]: %w", i, err)
			}
		}
		for i, raw := range objs.Params.Args {
			if err := checkKeys(raw, parameterKeys); err != nil {
				return nil, fmt.Errorf("job input: params.args[%d]: %w", i, err)
			}
		}
		for k, raw := range objs.Params.Environment {
			if err := checkKeys(raw, parameterKeys); err != nil {
				return nil, fmt.Errorf("job input: params.environment.%s: %w", k, err)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var in JobInput
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("job input: %w", err)
	}
	if dec.More() {
		return nil, errors.New("job input: data after the JSON object")
	}
	return &in, nil
}

// checkKeys refuses an object holding a key not in allowed; other JSON values pass.
func checkKeys(raw json.RawMessage, allowed []string) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("unknown field %q", k)
		}
	}
	return nil
}
