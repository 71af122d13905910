package protocol

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestProgressRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body any
		want Progress
	}{
		{"value", Progress{Phase: PhaseDownload, BytesDone: 12, BytesTotal: 40, FilesDone: 3, FilesTotal: 4},
			Progress{Phase: PhaseDownload, BytesDone: 12, BytesTotal: 40, FilesDone: 3, FilesTotal: 4}},
		{"pointer", &Progress{Phase: PhaseUpload, BytesTotal: 7, FilesTotal: 1},
			Progress{Phase: PhaseUpload, BytesTotal: 7, FilesTotal: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, err := Encode(c.body)
			if err != nil {
				t.Fatal(err)
			}
			var env Envelope
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			if env.Type != TypeProgress || env.V != Version {
				t.Fatalf("envelope %+v, want type %q version %d", env, TypeProgress, Version)
			}
			msg, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := msg.(*Progress)
			if !ok || !reflect.DeepEqual(*got, c.want) {
				t.Fatalf("decoded %#v, want %#v", msg, c.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		frame       string
		unknownType bool
	}{
		{"unknown type", `{"v":1,"type":"telemetry","body":{}}`, true},
		{"other version", `{"v":2,"type":"progress","body":{}}`, false},
		{"bad body", `{"v":1,"type":"progress","body":{"bytes_done":"x"}}`, false},
		{"not json", `{`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode([]byte(c.frame))
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrUnknownType) != c.unknownType {
				t.Fatalf("errors.Is(%v, ErrUnknownType) = %v, want %v", err, !c.unknownType, c.unknownType)
			}
		})
	}
}

func TestCredentialRoundTrip(t *testing.T) {
	t.Parallel()
	want := Credential{Token: "ctsagent1.x.y", Expires: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := Encode(&want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := got.(*Credential); !ok || c.Token != want.Token || !c.Expires.Equal(want.Expires) {
		t.Fatalf("decoded %#v, want %#v", got, want)
	}
}
