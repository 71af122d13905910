package s3path

import (
	"fmt"
	"strings"
)

// Dir is a validated, normalised S3 folder: a bucket and a key prefix that is either empty
// (the whole bucket) or ends with "/". The zero value is not a valid folder; obtain one from
// ParseDir or Path.AsDir.
//
// Folders compare by whole segments: "b/out/" contains "b/out/x" but not "b/outside/x".
type Dir struct {
	Bucket string
	Prefix string
}

// String returns the normalised folder "bucket/prefix/" ("bucket/" for a whole bucket).
func (d Dir) String() string { return d.Bucket + "/" + d.Prefix }

// ParseDir validates and normalises a folder: "bucket", "bucket/", "bucket/a/b" or
// "bucket/a/b/" (a "/" is appended when missing). The rules are Parse's, except that the key
// may be empty. Violations are a *Error.
func ParseDir(s string) (Dir, error) { return parseDir(s, "") }

// ParseDirAt is ParseDir for the index-th folder of a list.
func ParseDirAt(s string, index int) (Dir, error) {
	return parseDir(s, fmt.Sprintf(" at index %d", index))
}

func parseDir(s, at string) (Dir, error) {
	trimmed := strings.TrimLeftFunc(s, isSpace)
	if bucket, key, _ := strings.Cut(trimmed, "/"); key == "" && bucket != "" {
		// A bucket alone: check it with the bucket rules (and their messages).
		if _, err := parse(bucket+"/k", at); err != nil {
			return Dir{}, err
		}
		return Dir{Bucket: strings.TrimFunc(bucket, isSpace)}, nil
	}
	p, err := parse(s, at)
	if err != nil {
		return Dir{}, err
	}
	return p.AsDir(), nil
}

// AsDir returns the folder named by p: its key with a "/" appended when missing.
func (p Path) AsDir() Dir {
	k := p.Key
	if !strings.HasSuffix(k, "/") {
		k += "/"
	}
	return Dir{Bucket: p.Bucket, Prefix: k}
}

// Contains reports whether p is inside d (at any depth). Valid keys have no ".", ".." or
// empty segments (but a trailing "/") and d.Prefix is empty or ends with "/", so the string
// prefix test below is exactly "d's segments are the first segments of p".
func (d Dir) Contains(p Path) bool {
	return p.Bucket == d.Bucket && strings.HasPrefix(p.Key, d.Prefix)
}

// ContainsDir reports whether o is d or a folder inside d.
func (d Dir) ContainsDir(o Dir) bool {
	return o.Bucket == d.Bucket && strings.HasPrefix(o.Prefix, d.Prefix)
}

// Overlaps reports whether one of d and o contains the other: an object could then be in
// both.
func (d Dir) Overlaps(o Dir) bool { return d.ContainsDir(o) || o.ContainsDir(d) }
