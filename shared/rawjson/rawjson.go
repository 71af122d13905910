// Package rawjson looks at undecoded JSON values the way a lenient, pydantic-like validator
// needs to: the kind of a value from its first byte, the members of an object in document
// order, and a value decoded only to be echoed back in an error report.
//
// It exists so that the job input decoder (coordinator) and the parameter decoder
// (shared/args) share one implementation. It depends on the standard library only, performs no
// I/O and knows nothing about CTS types.
package rawjson

import (
	"bytes"
	"encoding/json"
)

// Kind is the kind of a JSON value.
type Kind int

// The kinds of JSON values; Invalid is anything that does not start like a JSON value.
const (
	Invalid Kind = iota
	Null
	Bool
	Number
	String
	Array
	Object
)

// KindOf tells the kind of a JSON value from its first non-space byte. It does not check that
// the rest of data is well formed.
func KindOf(data []byte) Kind {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return Invalid
	}
	switch data[0] {
	case 'n':
		return Null
	case 't', 'f':
		return Bool
	case '"':
		return String
	case '[':
		return Array
	case '{':
		return Object
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return Number
	}
	return Invalid
}

// Member is one key and its undecoded value in a JSON object.
type Member struct {
	Key string
	Raw json.RawMessage
}

// Members splits a JSON object into its members in document order. A repeated key keeps its
// first position and takes its last value (as Python's json and dict do). ok is false if data
// is not exactly one JSON object.
func Members(data []byte) (members []Member, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, false
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '{' {
		return nil, false
	}
	index := map[string]int{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, false
		}
		k, isKey := kt.(string)
		if !isKey {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		if i, seen := index[k]; seen {
			members[i].Raw = v
			continue
		}
		index[k] = len(members)
		members = append(members, Member{Key: k, Raw: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	if dec.More() {
		return nil, false
	}
	return members, true
}

// Value decodes a JSON value for validation and for echoing it back as the input of an error
// detail. Numbers stay json.Number, so they are echoed verbatim; data that is not valid JSON
// comes back as its text.
func Value(data []byte) any {
	if KindOf(data) == String { // the common case, without a Decoder's buffers
		var s string
		if json.Unmarshal(data, &s) == nil {
			return s
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(data)
	}
	return v
}
