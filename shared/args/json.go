package args

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kbase/cts/shared/rawjson"
)

// MarshalJSON writes a literal as a JSON string and a parameter as an object.
func (a Arg) MarshalJSON() ([]byte, error) {
	if a.Param != nil {
		return json.Marshal(a.Param)
	}
	return json.Marshal(a.Literal)
}

// UnmarshalJSON reads a JSON string (a literal) or an object (a Parameter, unknown keys
// refused).
func (a *Arg) UnmarshalJSON(data []byte) error {
	switch rawjson.KindOf(data) {
	case rawjson.String:
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("decode argument: %w", err)
		}
		*a = Arg{Literal: s}
		return nil
	case rawjson.Object:
		var p Parameter
		if err := strictUnmarshal(data, &p); err != nil {
			return fmt.Errorf("decode argument parameter: %w", err)
		}
		*a = Arg{Param: &p}
		return nil
	default:
		return errors.New("decode argument: must be a JSON string or object")
	}
}

// envParameter is a Parameter without the flag field: an environment value may not have a
// flag, so strict decoding into it refuses "flag" like any other unknown key.
type envParameter struct {
	Type               string `json:"type"`
	InputFilesFormat   string `json:"input_files_format,omitempty"`
	ManifestFileFormat string `json:"manifest_file_format,omitempty"`
	ManifestFileHeader string `json:"manifest_file_header,omitempty"`
	ContainerNumPrefix string `json:"container_num_prefix,omitempty"`
	ContainerNumSuffix string `json:"container_num_suffix,omitempty"`
}

// MarshalJSON writes the environment as a JSON object with its keys in order.
func (e Environment) MarshalJSON() ([]byte, error) {
	if e == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, v := range e {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(v.Key)
		if err != nil {
			return nil, fmt.Errorf("encode environment key: %w", err)
		}
		val, err := json.Marshal(v.Value)
		if err != nil {
			return nil, fmt.Errorf("encode environment %s: %w", v.Key, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a JSON object keeping its key order. A repeated key keeps its first
// position and its last value (as a Python dict does). Values are strings or Parameter
// objects without a flag.
func (e *Environment) UnmarshalJSON(data []byte) error {
	if rawjson.KindOf(data) == rawjson.Null {
		*e = nil
		return nil
	}
	members, ok := rawjson.Members(data)
	if !ok {
		return errors.New("decode environment: must be a JSON object")
	}
	env := make(Environment, 0, len(members))
	for _, m := range members {
		var v Arg
		switch rawjson.KindOf(m.Raw) {
		case rawjson.String:
			if err := json.Unmarshal(m.Raw, &v.Literal); err != nil {
				return fmt.Errorf("decode environment %s: %w", m.Key, err)
			}
		case rawjson.Object:
			var p envParameter
			if err := strictUnmarshal(m.Raw, &p); err != nil {
				return fmt.Errorf("decode environment %s: %w", m.Key, err)
			}
			pp := paramFromEnv(p)
			v.Param = &pp
		default:
			return fmt.Errorf("decode environment %s: value must be a JSON string or object", m.Key)
		}
		env = append(env, EnvVar{Key: m.Key, Value: v})
	}
	*e = env
	return nil
}

func paramFromEnv(p envParameter) Parameter {
	return Parameter{
		Type:               p.Type,
		InputFilesFormat:   p.InputFilesFormat,
		ManifestFileFormat: p.ManifestFileFormat,
		ManifestFileHeader: p.ManifestFileHeader,
		ContainerNumPrefix: p.ContainerNumPrefix,
		ContainerNumSuffix: p.ContainerNumSuffix,
	}
}

// strictUnmarshal decodes exactly one JSON value into v, refusing unknown keys.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
