package store

import (
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Server error shapes that the embedded FerretDB does not produce (MongoDB's) or produces
// only on paths the store does not take (FerretDB's duplicate on update).
func TestDuplicateKeyMapping(t *testing.T) {
	mongoDup := func(msg string) error {
		return mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 11000, Message: msg}}}
	}
	cases := []struct {
		name      string
		err       error
		dup       bool
		wantIndex string
	}{
		{"mongodb tag", mongoDup(`E11000 duplicate key error collection: cts.images index: name_1_tag_1 dup key: { name: "a", tag: "v1" }`), true, indexImageTag},
		{"mongodb digest", mongoDup(`E11000 duplicate key error collection: cts.images index: name_1_digest_1 dup key: { name: "a", digest: "sha256:1" }`), true, indexImageDigest},
		{"ferretdb insert", mongoDup("E11000 duplicate key error collection: cts.images"), true, ""},
		{"ferretdb update", fmt.Errorf("save: %w", mongo.CommandError{Code: 1, Name: "InternalError",
			Message: "[collection.go:177] constraint failed: UNIQUE constraint failed: index 'images_d1d746ab_name_1_tag_1' (2067)"}), true, indexImageTag},
		{"other server error", mongo.CommandError{Code: 2, Name: "BadValue", Message: "bad"}, false, ""},
		{"network", errors.New("connection refused"), false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := isDuplicateKey(c.err); got != c.dup {
				t.Fatalf("isDuplicateKey = %v, want %v", got, c.dup)
			}
			if c.dup {
				if got := duplicateIndex(c.err); got != c.wantIndex {
					t.Fatalf("duplicateIndex = %q, want %q", got, c.wantIndex)
				}
			}
		})
	}
}

func TestIsNotImplemented(t *testing.T) {
	if !isNotImplemented(fmt.Errorf("x: %w", mongo.CommandError{Code: 238, Name: "NotImplemented"})) {
		t.Fatal("NotImplemented not recognised")
	}
	if isNotImplemented(mongo.CommandError{Code: 2, Name: "BadValue"}) {
		t.Fatal("BadValue taken for NotImplemented")
	}
}
