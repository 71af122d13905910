package rawjson

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Kind
	}{
		{"empty", "", Invalid},
		{"spaces only", " \t\r\n", Invalid},
		{"null", "null", Null},
		{"true", "true", Bool},
		{"false", " false", Bool},
		{"integer", "12", Number},
		{"negative", "-0.5", Number},
		{"string", `"x"`, String},
		{"array after space", "\n [1]", Array},
		{"object", `{"a":1}`, Object},
		{"bare word", "abc", Invalid},
		{"plus sign", "+1", Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := KindOf([]byte(tc.in)); got != tc.want {
				t.Errorf("KindOf(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestMembers(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Member
		ok       bool
	}{
		{"empty object", `{}`, nil, true},
		{"document order", `{"b": 1, "a": "x"}`, []Member{{"b", json.RawMessage("1")}, {"a", json.RawMessage(`"x"`)}}, true},
		{"repeated key keeps first position and last value", `{"a": 1, "b": 2, "a": 3}`,
			[]Member{{"a", json.RawMessage("3")}, {"b", json.RawMessage("2")}}, true},
		{"nested values stay raw", `{"a": {"b": [1, 2]}}`, []Member{{"a", json.RawMessage(`{"b": [1, 2]}`)}}, true},
		{"array", `[1]`, nil, false},
		{"string", `"a"`, nil, false},
		{"truncated", `{"a": 1`, nil, false},
		{"trailing value", `{"a": 1} {}`, nil, false},
		{"bad value", `{"a": tru}`, nil, false},
		{"empty", ``, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Members([]byte(tc.in))
			if ok != tc.ok {
				t.Fatalf("Members(%s) ok = %v, want %v", tc.in, ok, tc.ok)
			}
			if ok && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Members(%s) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestValue(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     any
	}{
		{"string", `"a\u00e9"`, "aé"},
		{"number kept verbatim", `1.50`, json.Number("1.50")},
		{"big integer kept verbatim", `123456789012345678901234567890`, json.Number("123456789012345678901234567890")},
		{"null", `null`, nil},
		{"bool", `true`, true},
		{"array", `[1, "x"]`, []any{json.Number("1"), "x"}},
		{"object", `{"a": null}`, map[string]any{"a": nil}},
		{"invalid JSON comes back as text", `{"a":`, `{"a":`},
		{"broken string comes back as text", `"abc`, `"abc`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Value([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Value(%s) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}
