package access

import (
	"errors"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/s3path"
)

func mustPath(t *testing.T, s string) s3path.Path {
	t.Helper()
	p, err := s3path.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustDir(t *testing.T, s string) s3path.Dir {
	t.Helper()
	d, err := s3path.ParseDir(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// site is the dev site's layout: each user owns cts-data/<user>/, everyone reads
// cts-data/shared/ and cts-data/samples/.
func site(t *testing.T) *Rules {
	t.Helper()
	r, err := New(Config{LogDir: "cts-logs/container_logs", Write: []string{"cts-data/{user}"},
		Read: []string{"cts-data/shared/", "cts-data/samples"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantDenied(t *testing.T, err error, contains ...string) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) || ce.Code != ctserr.CodeS3PathInaccessible {
		t.Fatalf("got %v, want a 20010 error", err)
	}
	for _, c := range contains {
		if !strings.Contains(ce.Message, c) {
			t.Errorf("message %q lacks %q", ce.Message, c)
		}
	}
}

// TestReadOtherUsersFiles is the attack: alice copying bob's files (and a container log) into
// her outputs by naming them as inputs.
func TestReadOtherUsersFiles(t *testing.T) {
	t.Parallel()
	r := site(t)
	wantDenied(t, r.CanRead("alice", mustPath(t, "cts-data/bob/secret.fna")),
		"User alice may not read the S3 path 'cts-data/bob/secret.fna'", "cts-data/alice/, cts-data/shared/, cts-data/samples/")
	wantDenied(t, r.CanRead("alice", mustPath(t, "cts-logs/container_logs/bobsjob/container-0-stdout.txt")),
		"container log folder cts-logs/container_logs/")
	// A name that is a prefix of another user's is not that user's folder.
	wantDenied(t, r.CanRead("al", mustPath(t, "cts-data/alice/x")))
	for _, ok := range []string{"cts-data/alice/in/a.fna", "cts-data/shared/db.fna", "cts-data/samples/x/y"} {
		if err := r.CanRead("alice", mustPath(t, ok)); err != nil {
			t.Errorf("CanRead(alice, %s) = %v", ok, err)
		}
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	r := site(t)
	if err := r.CanWrite("alice", mustDir(t, "cts-data/alice/out")); err != nil {
		t.Fatal(err)
	}
	if err := r.CanWrite("alice", mustDir(t, "cts-data/alice")); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, r.CanWrite("alice", mustDir(t, "cts-data/bob/out")), "may not write to the S3 folder cts-data/bob/out/", "only below cts-data/alice/")
	wantDenied(t, r.CanWrite("alice", mustDir(t, "cts-data/shared/out")), "cts-data/shared/out/")
	wantDenied(t, r.CanWrite("alice", mustDir(t, "cts-data")))
	// The log folder, its parents and its insides.
	for _, d := range []string{"cts-logs/container_logs/x", "cts-logs/container_logs", "cts-logs/"} {
		wantDenied(t, r.CanWrite("alice", mustDir(t, d)), "log directory cts-logs/container_logs/")
	}
	// Unsafe user names get no per-user folder.
	for _, u := range []string{"", "Alice", "a/b", "a b", strings.Repeat("a", 101)} {
		if err := r.CanWrite(u, mustDir(t, "cts-data/a/")); err == nil {
			t.Errorf("user %q may write", u)
		}
	}
}

func TestOpenSite(t *testing.T) {
	t.Parallel()
	r, err := New(Config{LogDir: "cts-logs/container_logs/"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Restricted() || len(r.Grants("alice")) != 0 {
		t.Fatal("an open site is restricted")
	}
	if err := r.CanRead("alice", mustPath(t, "anything/x")); err != nil {
		t.Fatal(err)
	}
	if err := r.CanWrite("alice", mustDir(t, "cts-logs/other")); err != nil {
		t.Fatal(err)
	}
	// The log folder is never an input, even on an open site.
	wantDenied(t, r.CanRead("alice", mustPath(t, "cts-logs/container_logs/j/container-0-stdout.txt")))
	wantDenied(t, r.CanWrite("alice", mustDir(t, "cts-logs/container_logs/j")))
	wantDenied(t, r.CanReadDir("alice", mustDir(t, "cts-logs")))
	if err := r.CanReadDir("alice", mustDir(t, "cts-data/x")); err != nil {
		t.Fatal(err)
	}
}

func TestAllowedPaths(t *testing.T) {
	t.Parallel()
	// The CTS allowed_s3_paths: everyone reads and writes there.
	r, err := New(Config{LogDir: "cts/logs", Allowed: []string{"cts/io"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CanWrite("bob", mustDir(t, "cts/io/out")); err != nil {
		t.Fatal(err)
	}
	if err := r.CanRead("bob", mustPath(t, "cts/io/in/x")); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, r.CanRead("bob", mustPath(t, "cts/iox/in")), "only below cts/io/")
	wantDenied(t, r.CanWrite("bob", mustDir(t, "other/x")))
	if g := r.Grants("bob"); len(g) != 1 || g[0] != (Grant{Path: "cts/io/", Perm: PermWrite}) {
		t.Fatalf("grants %+v", g)
	}
}

func TestReadDir(t *testing.T) {
	t.Parallel()
	r := site(t)
	if err := r.CanReadDir("alice", mustDir(t, "cts-data/alice/sub")); err != nil {
		t.Fatal(err)
	}
	if err := r.CanReadDir("alice", mustDir(t, "cts-data/shared")); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, r.CanReadDir("alice", mustDir(t, "cts-data")), "cts-data/")
	wantDenied(t, r.CanReadDir("alice", mustDir(t, "cts-data/bob")))
}

func TestGrants(t *testing.T) {
	t.Parallel()
	r, err := New(Config{LogDir: "cts-logs/logs", Allowed: []string{"cts-data/public"}, Write: []string{"cts-data/{user}/", "scratch/{user}/tmp/"},
		Read: []string{"cts-data/shared", "cts-data/public/"}})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Grants("alice")
	want := []Grant{{"cts-data/public/", PermWrite}, {"cts-data/alice/", PermWrite}, {"scratch/alice/tmp/", PermWrite}, {"cts-data/shared/", PermRead}}
	if len(got) != len(want) {
		t.Fatalf("grants %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("grants %+v, want %+v", got, want)
		}
	}
	if err := r.CanWrite("alice", mustDir(t, "scratch/alice/tmp/x")); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, r.CanWrite("alice", mustDir(t, "scratch/alice/")))
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad log folder", Config{LogDir: "cts-logs/../x"}, "log folder"},
		{"log folder a bucket", Config{LogDir: "cts-logs"}, "must include a key"},
		{"allowed inside log", Config{LogDir: "cts/logs", Allowed: []string{"cts/logs/x"}}, "overlaps the log folder"},
		{"allowed holds log", Config{LogDir: "cts/logs", Allowed: []string{"cts"}}, "overlaps the log folder"},
		{"read holds log", Config{LogDir: "cts/logs", Read: []string{"cts/"}}, "overlaps the log folder"},
		{"placeholder in bucket", Config{Write: []string{"{user}/x"}}, "bucket"},
		{"placeholder twice", Config{Write: []string{"b12/{user}/{user}/"}}, "once"},
		{"placeholder in a segment", Config{Write: []string{"b12/home-{user}/"}}, "whole path segment"},
		{"dot segment", Config{Read: []string{"b12/a/../{user}"}}, "'..' segment"},
		{"illegal character", Config{Read: []string{"b12/a;b"}}, "illegal character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func BenchmarkCanRead(b *testing.B) {
	r, err := New(Config{LogDir: "cts-logs/container_logs", Write: []string{"cts-data/{user}"},
		Read: []string{"cts-data/shared/", "cts-data/samples"}})
	if err != nil {
		b.Fatal(err)
	}
	p, _ := s3path.Parse("cts-data/samples/GCA_000008085.1/GCA_000008085.1_ASM808v1_genomic.fna.gz")
	scope := r.For("alice")
	for b.Loop() {
		if err := scope.CanRead(p); err != nil {
			b.Fatal(err)
		}
	}
}
