package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// JobInput is the body of POST /jobs (reference §3.1) and the job_input of job views. Fields
// left at their zero value are not sent, so the service applies its defaults.
type JobInput struct {
	Cluster string `json:"cluster,omitempty"`
	// Image is a registered image: name, name:tag or name@sha256:...
	Image         string `json:"image,omitempty"`
	Params        Params `json:"params"`
	NumContainers int    `json:"num_containers,omitempty"`
	CPUs          int    `json:"cpus,omitempty"`
	// Memory per container: bytes or with units ("100MB", "1.5GiB"). Job views give bytes.
	Memory Size `json:"memory,omitempty"`
	// Runtime per container: seconds or ISO 8601 ("PT30M"). Job views give ISO 8601.
	Runtime    Duration    `json:"runtime,omitempty"`
	InputRoots []string    `json:"input_roots,omitempty"`
	OutputDir  string      `json:"output_dir,omitempty"`
	InputFiles []InputFile `json:"input_files,omitempty"`
}

// Params is the "params" object of a JobInput (reference §3.2).
type Params struct {
	InputMountPoint   string `json:"input_mount_point,omitempty"`
	OutputMountPoint  string `json:"output_mount_point,omitempty"`
	RefdataMountPoint string `json:"refdata_mount_point,omitempty"`
	Declobber         bool   `json:"declobber"`
	Args              []Arg  `json:"args,omitempty"`
	Environment       Env    `json:"environment,omitempty"`
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

// Parameter is a value computed per container (reference §3.5).
type Parameter struct {
	// Type is "input_files", "manifest_file" or "container_number".
	Type string `json:"type"`
	// InputFilesFormat is "comma_separated_list", "space_separated_list" or "repeat_parameter".
	InputFilesFormat   string `json:"input_files_format,omitempty"`
	ManifestFileFormat string `json:"manifest_file_format,omitempty"`
	ManifestFileHeader string `json:"manifest_file_header,omitempty"`
	ContainerNumPrefix string `json:"container_num_prefix,omitempty"`
	ContainerNumSuffix string `json:"container_num_suffix,omitempty"`
	// Flag (arguments only) is put before the value.
	Flag string `json:"flag,omitempty"`
}

// Arg is one item of params.args or one value of params.environment: a literal string or a
// Parameter.
type Arg struct {
	Literal string
	Param   *Parameter
}

// Literal returns a literal argument.
func Literal(s string) Arg { return Arg{Literal: s} }

// InputFilesArg returns the parameter that expands to the container's input files in format
// (one of "comma_separated_list", "space_separated_list", "repeat_parameter").
func InputFilesArg(format string) Arg {
	return Arg{Param: &Parameter{Type: "input_files", InputFilesFormat: format}}
}

// ContainerNumberArg returns the parameter that expands to the container number.
func ContainerNumberArg() Arg { return Arg{Param: &Parameter{Type: "container_number"}} }

// MarshalJSON writes the literal as a string or the parameter as an object.
func (a Arg) MarshalJSON() ([]byte, error) {
	if a.Param != nil {
		return json.Marshal(a.Param)
	}
	return json.Marshal(a.Literal)
}

// UnmarshalJSON reads a string or a parameter object.
func (a *Arg) UnmarshalJSON(b []byte) error {
	if s, ok := asString(b); ok {
		*a = Arg{Literal: s}
		return nil
	}
	var p Parameter
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*a = Arg{Param: &p}
	return nil
}

// EnvVar is one entry of params.environment.
type EnvVar struct {
	Key   string
	Value Arg
}

// Env is params.environment: a JSON object whose key order is kept (the container's
// environment follows it).
type Env []EnvVar

// MarshalJSON writes an object in order.
func (e Env) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, v := range e {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(v.Key)
		if err != nil {
			return nil, err
		}
		val, err := json.Marshal(v.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object, keeping its key order.
func (e *Env) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*e = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("environment: want a JSON object")
	}
	out := Env{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("environment: %w", err)
		}
		key, _ := t.(string)
		var v Arg
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("environment %s: %w", key, err)
		}
		out = append(out, EnvVar{Key: key, Value: v})
	}
	*e = out
	return nil
}

// Set replaces the value of key, or appends it.
func (e *Env) Set(key string, v Arg) {
	for i := range *e {
		if (*e)[i].Key == key {
			(*e)[i].Value = v
			return
		}
	}
	*e = append(*e, EnvVar{Key: key, Value: v})
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

// Keys each kind of object of a JobInput may hold; DecodeJobInput refuses others, as the
// service does.
var (
	inputFileKeys = []string{"file", "crc64nvme", "data_id"}
	parameterKeys = []string{"type", "input_files_format", "manifest_file_format", "manifest_file_header",
		"container_num_prefix", "container_num_suffix", "flag"}
)

// DecodeJobInput decodes a JobInput strictly: unknown keys at any level are errors (the service
// refuses them too, and a misspelled key silently dropped here would change the job).
func DecodeJobInput(data []byte) (*JobInput, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var in JobInput
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("job input: %w", err)
	}
	if dec.More() {
		return nil, errors.New("job input: data after the JSON object")
	}
	var objs struct {
		Params struct {
			Args        []json.RawMessage          `json:"args"`
			Environment map[string]json.RawMessage `json:"environment"`
		} `json:"params"`
		InputFiles []json.RawMessage `json:"input_files"`
	}
	if err := json.Unmarshal(data, &objs); err != nil {
		return nil, fmt.Errorf("job input: %w", err)
	}
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
