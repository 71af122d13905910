package jobinput

import (
	"bytes"
	"encoding/json"
)

type jsonKind int

const (
	kindInvalid jsonKind = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// kindOf tells the kind of a JSON value from its first non-space byte.
func kindOf(data []byte) jsonKind {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return kindInvalid
	}
	switch data[0] {
	case 'n':
		return kindNull
	case 't', 'f':
		return kindBool
	case '"':
		return kindString
	case '[':
		return kindArray
	case '{':
		return kindObject
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return kindNumber
	}
	return kindInvalid
}

type member struct {
	key string
	val json.RawMessage
}

// objectMembers splits a JSON object into its members in document order. A repeated key
// keeps its first position and takes its last value (as Python's json does). ok is false
// if data is not exactly one JSON object.
func objectMembers(data []byte) (members []member, ok bool) {
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
			members[i].val = v
			continue
		}
		index[k] = len(members)
		members = append(members, member{key: k, val: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	if dec.More() {
		return nil, false
	}
	return members, true
}

// anyValue decodes a JSON value for validation and for echoing it back as a detail's
// input; numbers stay json.Number, so they are echoed verbatim.
func anyValue(data []byte) any {
	if kindOf(data) == kindString { // the common case, without a Decoder's buffers
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
