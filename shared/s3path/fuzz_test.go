package s3path

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// bucketRule restates the bucket rules independently of validateBucket: 3–63 of [a-z0-9-],
// no dash at either end, at least one letter.
var bucketRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

// FuzzParse checks properties of Parse on arbitrary input. The seed corpus is in
// testdata/fuzz/FuzzParse plus the strings below. Run:
//
//	go test -run=^$ -fuzz=FuzzParse -fuzztime=60s ./shared/s3path/
func FuzzParse(f *testing.F) {
	for _, s := range []string{"bucket/key", " bucket/a b ", "bucket/a//b", "bücket/k", "b/k",
		"bucket/f\x07", "bucket/日本/語", "/bucket/key", "bucket//k", "123/k", "bucket/\ufeff",
		"bucket/a/../b", "bucket/..", "bucket/./", "bucket/.. /x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		pa, errAt := ParseAt(s, 7)
		if (err == nil) != (errAt == nil) || p != pa {
			t.Fatalf("Parse and ParseAt disagree on %q: %+v, %v / %+v, %v", s, p, err, pa, errAt)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg == "" || !errors.As(errAt, &pe) {
				t.Fatalf("Parse(%q) error %v (%T) is not a *Error with a message", s, err, err)
			}
			if !strings.Contains(errAt.Error(), " at index 7") {
				t.Fatalf("ParseAt(%q, 7) error lacks the index: %v", s, errAt)
			}
			return
		}
		again, err := Parse(p.String())
		if err != nil || again != p {
			t.Fatalf("Parse(%q) = %+v but its String() %q re-parses to %+v, %v", s, p, p.String(), again, err)
		}
		if lead, err := Parse(" \t" + s); err != nil || lead != p {
			t.Fatalf("leading whitespace changed the result for %q: %+v, %v", s, lead, err)
		}
		if !bucketRule.MatchString(p.Bucket) || !strings.ContainsAny(p.Bucket, "abcdefghijklmnopqrstuvwxyz") {
			t.Fatalf("Parse(%q) accepted bucket %q", s, p.Bucket)
		}
		k := p.Key
		switch {
		case k == "" || strings.TrimSpace(k) == "":
			t.Fatalf("Parse(%q) accepted an empty key %q", s, k)
		case strings.HasPrefix(k, "/"):
			t.Fatalf("Parse(%q) accepted key %q starting with /", s, k)
		case strings.Contains(k, "//") || strings.ContainsAny(k, "';"):
			t.Fatalf("Parse(%q) accepted key %q with an illegal character", s, k)
		case len(k) > MaxKeyBytes || !utf8.ValidString(k):
			t.Fatalf("Parse(%q) accepted key of %d bytes (valid UTF-8: %v)", s, len(k), utf8.ValidString(k))
		}
		for _, seg := range strings.Split(k, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Parse(%q) accepted key %q with a %q segment", s, k, seg)
			}
		}
		for i, r := range k {
			// L, M, N, P, S, Zs are graphic; Zl and Zp are the rest of Z. Nothing of C.
			if !unicode.IsGraphic(r) && !unicode.In(r, unicode.Zl, unicode.Zp) {
				t.Fatalf("Parse(%q) accepted key %q with %U at byte %d", s, k, r, i)
			}
		}
		if n := len(p.String()); n < MinLength || n > MaxLength {
			t.Fatalf("Parse(%q) produced a path of %d bytes", s, n)
		}
	})
}
