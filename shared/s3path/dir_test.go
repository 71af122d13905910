package s3path

import (
	"errors"
	"testing"
)

func TestParseDir(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"bucket", "bucket", "bucket/"},
		{"bucket slash", "bucket/", "bucket/"},
		{"bucket with spaces", "  bucket ", "bucket/"},
		{"folder", "bucket/a/b", "bucket/a/b/"},
		{"folder slash", "bucket/a/b/", "bucket/a/b/"},
		{"leading whitespace", " \tbucket/a", "bucket/a/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := ParseDir(tt.in)
			if err != nil || d.String() != tt.want {
				t.Fatalf("ParseDir(%q) = %q, %v; want %q", tt.in, d.String(), err, tt.want)
			}
		})
	}
	for _, in := range []string{"", "b", "/bucket/a", "bucket/a//", "bucket/../x", "bucket/a/..", "BUCKET", "bucket/./"} {
		var pe *Error
		if _, err := ParseDir(in); !errors.As(err, &pe) {
			t.Errorf("ParseDir(%q) = %v, want a *Error", in, err)
		}
	}
	if _, err := ParseDirAt("bucket/x/..", 4); err == nil || err.Error() != "Path 'bucket/x/..' at index 4 has a '..' segment at key index 2: relative segments are not allowed in S3 paths, name the folder itself" {
		t.Errorf("ParseDirAt: %v", err)
	}
}

func TestDirContains(t *testing.T) {
	t.Parallel()
	dir := func(s string) Dir {
		d, err := ParseDir(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	path := func(s string) Path {
		p, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		dir, path string
		want      bool
	}{
		{"b12/out", "b12/out/x", true},
		{"b12/out/", "b12/out/a/b/c", true},
		{"b12", "b12/anything", true},
		{"b12/out", "b12/outside/x", false},
		{"b12/out", "b12/out", false}, // the folder's own name is not inside it
		{"b12/out", "b13/out/x", false},
		{"b12/out", "b123/out/x", false},
		{"cts-logs/container_logs", "cts-logs/container_logs/j/container-0-stdout.txt", true},
	}
	for _, tt := range tests {
		if got := dir(tt.dir).Contains(path(tt.path)); got != tt.want {
			t.Errorf("%q contains %q = %v, want %v", tt.dir, tt.path, got, tt.want)
		}
	}
	overlaps := []struct {
		a, b string
		want bool
	}{
		{"b12/a", "b12/a/b", true},
		{"b12/a/b", "b12/a", true},
		{"b12/a", "b12/a", true},
		{"b12", "b12/a", true},
		{"b12/a", "b12/ab", false},
		{"b12/a", "b13/a", false},
	}
	for _, tt := range overlaps {
		if got := dir(tt.a).Overlaps(dir(tt.b)); got != tt.want {
			t.Errorf("%q overlaps %q = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
	if got := path("b12/out").AsDir(); got != dir("b12/out/") {
		t.Errorf("AsDir = %+v", got)
	}
}
