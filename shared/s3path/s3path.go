// Package s3path owns the CTS rules for S3 paths ("bucket/key"): what is a valid path, how it
// is normalised, and the exact error texts of the Python service
// (s3/paths.py validate_path). It is pure string validation: it never talks to S3, does not
// decide which paths a user may use (allowed_s3_paths is the coordinator's business) and does
// not map errors to HTTP or CTS app codes (the API layer maps *Error to 30020).
//
// Rules, in the order they are checked (the first failure is reported):
//
//  1. The path is valid UTF-8 and not empty or whitespace only. Leading whitespace is removed
//     (Unicode whitespace as Python's str.lstrip: unicode.IsSpace plus U+001C..U+001F);
//     trailing whitespace is kept, spaces being valid key characters.
//  2. It does not start with "/". It is split on the first "/" into bucket and key, and both
//     are required (a key of whitespace only counts as missing).
//  3. The bucket, with surrounding whitespace removed, is 3–63 characters, has no ".", does not
//     start or end with "-", and contains only '-', 'a'–'z' and '0'–'9' with at least one
//     letter: Python checks str.islower(), which is false for a name without cased
//     characters, so "123" is refused although S3 itself would allow it.
//  4. The key does not start with "/", is at most 1024 bytes of UTF-8, does not contain "'",
//     ";" or "//", and contains no character of Unicode category C (Cc, Cf, Cs, Co and
//     unassigned Cn, as Python's unicodedata.category(c)[0] == "C").
//  5. No segment of the key (the text between two "/") is "." or "..". The Python service
//     accepts them, but S3 stores disagree on what they mean: AWS keeps them as literal
//     names, a file-system backed store (MinIO, versitygw) resolves them, so "out/../logs/x"
//     would name another folder's object there. Together with rule 4 this leaves exactly one
//     empty segment possible, after a trailing "/".
//
// Because every valid key is made of plain segments, one path is inside a folder exactly when
// the folder's segments are a prefix of the path's: Dir compares paths that way, and every
// prefix rule of the service (the log folder, allowed paths, per-user paths) uses it instead
// of comparing raw strings.
//
// Positions in messages count characters (runes) of the key, as Python does; the length limit
// counts bytes. The normalised path is Path.String(): "bucket/key".
package s3path

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// MinLength is the shortest path the API models accept (S3_PATH_MIN_LENGTH: "abc/d").
	MinLength = 5
	// MaxLength is the longest path the API models accept (S3_PATH_MAX_LENGTH = 63 + 1 +
	// 1024). The API layer checks both limits on the raw string; Parse enforces the bucket and
	// key limits, which imply them for the normalised path.
	MaxLength = 1088
	// MaxKeyBytes is the longest key in bytes of UTF-8.
	MaxKeyBytes = 1024
	// MinBucketLength and MaxBucketLength bound a bucket name, in characters.
	MinBucketLength = 3
	MaxBucketLength = 63
)

// Path is a validated, normalised S3 path. The zero value is not a valid path; obtain one
// from Parse or ParseAt.
type Path struct {
	Bucket string
	Key    string
}

// String returns the normalised path "bucket/key".
func (p Path) String() string { return p.Bucket + "/" + p.Key }

// Error is a violated path rule. Msg is the user-facing text, identical to the Python
// service's where it has one.
type Error struct {
	Msg string
}

// Error returns Msg.
func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// Parse validates and normalises s (see the package comment). Every rule violation is a
// *Error.
func Parse(s string) (Path, error) { return parse(s, "") }

// ParseAt is Parse for the index-th path of a list: its messages say " at index <index>"
// where the Python service's do.
func ParseAt(s string, index int) (Path, error) {
	return parse(s, fmt.Sprintf(" at index %d", index))
}

// ValidateBucket checks a bucket name exactly as given (surrounding whitespace is not
// removed and fails the character rule). Violations are a *Error.
func ValidateBucket(name string) error { return validateBucket(name, "") }

// parse implements Parse; at is "" or " at index i".
func parse(s, at string) (Path, error) {
	if !utf8.ValidString(s) {
		// Python never sees this (its strings are code points); quote to keep the text printable.
		return Path{}, errorf("Path %q%s is not valid UTF-8", s, at)
	}
	path := strings.TrimLeftFunc(s, isSpace)
	if path == "" {
		return Path{}, errorf("The s3 path%s cannot be null or a whitespace string", at)
	}
	if path[0] == '/' {
		return Path{}, errorf("Path '%s'%s cannot start with '/'", path, at)
	}
	bucket, key, ok := strings.Cut(path, "/")
	if !ok || strings.TrimFunc(key, isSpace) == "" {
		return Path{}, errorf("Path '%s'%s must start with the s3 bucket and include a key", path, at)
	}
	bucket = strings.TrimFunc(bucket, isSpace)
	if err := validateBucket(bucket, at); err != nil {
		return Path{}, err
	}
	if key[0] == '/' {
		return Path{}, errorf("Path '%s'%s's key cannot start with '/'", path, at)
	}
	if len(key) > MaxKeyBytes {
		return Path{}, errorf("Path '%s'%s's key is longer than %d bytes in UTF-8", path, at, MaxKeyBytes)
	}
	if illegal, pos := findIllegal(key); illegal != "" {
		return Path{}, errorf("Path '%s'%s contains illegal character(s) '%s' at key index %d",
			path, at, illegal, pos)
	}
	pos := 0
	for _, r := range key {
		if isCategoryC(r) {
			return Path{}, errorf("Path %s%s contains a control character in the key at position %d",
				path, at, pos)
		}
		pos++
	}
	if seg, pos := findDotSegment(key); seg != "" {
		return Path{}, errorf("Path '%s'%s has a '%s' segment at key index %d: relative segments are not allowed "+
			"in S3 paths, name the folder itself", path, at, seg, pos)
	}
	return Path{Bucket: bucket, Key: key}, nil
}

// findDotSegment returns the first "." or ".." segment of key and its position in runes, or
// "" if there is none.
func findDotSegment(key string) (seg string, pos int) {
	runes := 0
	for rest := key; ; {
		s, after, more := strings.Cut(rest, "/")
		if s == "." || s == ".." {
			return s, runes
		}
		if !more {
			return "", 0
		}
		runes += utf8.RuneCountInString(s) + 1
		rest = after
	}
}

// findIllegal returns the first match of the Python regex ([';]|[/]{2}) in key and its
// position in runes, or "" if there is none.
func findIllegal(key string) (match string, pos int) {
	for i, r := range key {
		switch {
		case r == '\'' || r == ';':
			return string(r), pos
		case r == '/' && strings.HasPrefix(key[i+1:], "/"):
			return "//", pos
		}
		pos++
	}
	return "", 0
}

// validateBucket implements ValidateBucket; at is "" or " at index i".
func validateBucket(bn, at string) error {
	if bn == "" {
		return errorf("Bucket name%s cannot be whitespace only", at)
	}
	if n := utf8.RuneCountInString(bn); n < MinBucketLength || n > MaxBucketLength {
		return errorf("Bucket name%s must be > 2 and < 64 characters: %s", at, bn)
	}
	if strings.Contains(bn, ".") {
		return errorf("Bucket%s has `.` in the name which is unsupported: %s", at, bn)
	}
	if bn[0] == '-' || bn[len(bn)-1] == '-' {
		return errorf("Bucket name%s cannot start or end with '-': %s", at, bn)
	}
	// Python: bn.replace("-", "").isalnum() and bn.isascii() and bn.islower(); islower()
	// needs at least one cased character, hence the letter requirement.
	letter := false
	for i := 0; i < len(bn); i++ {
		switch c := bn[i]; {
		case 'a' <= c && c <= 'z':
			letter = true
		case '0' <= c && c <= '9', c == '-':
		default:
			return errorf("Bucket name%s may only contain '-' and lowercase ascii alphanumerics: %s", at, bn)
		}
	}
	if !letter {
		return errorf("Bucket name%s may only contain '-' and lowercase ascii alphanumerics: %s", at, bn)
	}
	return nil
}

// isSpace reports whether Python's str.isspace() is true for r: general category Zs or
// bidirectional class WS, B or S. That is Go's unicode.IsSpace plus the information
// separators U+001C..U+001F (bidi B and S).
func isSpace(r rune) bool {
	return unicode.IsSpace(r) || 0x1c <= r && r <= 0x1f
}

// notC are the general categories other than C ("Other"). Go's unicode.C covers Cc, Cf, Co
// and Cs but not Cn (unassigned), which Python also counts as "C"; so a rune is in C exactly
// when it is in none of the other categories.
var notC = []*unicode.RangeTable{unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z}

// isCategoryC reports whether unicodedata.category(r)[0] == "C" in Python, up to the
// difference in Unicode versions between Go and the Python service.
func isCategoryC(r rune) bool {
	if 0x20 <= r && r < 0x7f {
		return false
	}
	return !unicode.In(r, notC...)
}
