package s3path

import (
	"errors"
	"strings"
	"testing"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		bucket string
		key    string
	}{
		{"simple", "bucket/key", "bucket", "key"},
		{"nested key", "test-bucket/a/b/c.fna.gz", "test-bucket", "a/b/c.fna.gz"},
		{"shortest", "abc/d", "abc", "d"},
		{"digits and dash in bucket", "b-1-2/k", "b-1-2", "k"},
		{"bucket with one letter", "1a1/k", "1a1", "k"},
		{"leading spaces stripped", "   bucket/key", "bucket", "key"},
		{"leading unicode whitespace stripped", "\t\n\u3000\u00a0\u2028bucket/key", "bucket", "key"},
		{"leading python-only whitespace stripped", "\x1c\x1d\x1e\x1fbucket/key", "bucket", "key"},
		{"trailing whitespace kept", "bucket/key  ", "bucket", "key  "},
		{"trailing non-breaking space kept", "bucket/key\u00a0", "bucket", "key\u00a0"},
		{"space before the key kept", "bucket/ key", "bucket", " key"},
		{"bucket surrounding whitespace stripped", " bucket \t/key", "bucket", "key"},
		{"trailing slash kept", "bucket/dir/", "bucket", "dir/"},
		{"dots inside names are plain", "bucket/.hidden/a..b/.../x.", "bucket", ".hidden/a..b/.../x."},
		{"dot-dot with a space is a name", "bucket/.. /x", "bucket", ".. /x"},
		{"single slashes in key", "bucket/a/b/c/", "bucket", "a/b/c/"},
		{"spaces inside key", "bucket/my file (1).txt", "bucket", "my file (1).txt"},
		{"accented", "bucket/café/é.txt", "bucket", "café/é.txt"},
		{"cyrillic", "bucket/файл.txt", "bucket", "файл.txt"},
		{"cjk", "bucket/日本/語.txt", "bucket", "日本/語.txt"},
		{"emoji", "bucket/🙂", "bucket", "🙂"},
		{"combining mark", "bucket/e\u0301", "bucket", "e\u0301"},
		{"replacement character is So", "bucket/\ufffd", "bucket", "\ufffd"},
		{"63 character bucket", strings.Repeat("a", 63) + "/k", strings.Repeat("a", 63), "k"},
		{"1024 byte ascii key", "b12/" + strings.Repeat("k", 1024), "b12", strings.Repeat("k", 1024)},
		// 341 × 3 bytes + 1 = 1024 bytes, 342 characters.
		{"1024 byte key with 3-byte runes", "b12/" + strings.Repeat("語", 341) + "k", "b12", strings.Repeat("語", 341) + "k"},
		{"1024 byte key of 4-byte runes", "b12/" + strings.Repeat("🙂", 256), "b12", strings.Repeat("🙂", 256)},
		{"other punctuation allowed", "bucket/a!@#$%^&*()_+=[]{}\\|,.<>?`~\"", "bucket", "a!@#$%^&*()_+=[]{}\\|,.<>?`~\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, parse := range []func(string) (Path, error){Parse, func(s string) (Path, error) { return ParseAt(s, 3) }} {
				p, err := parse(tt.in)
				if err != nil {
					t.Fatalf("Parse(%q) error: %v", tt.in, err)
				}
				if p.Bucket != tt.bucket || p.Key != tt.key {
					t.Fatalf("Parse(%q) = %q / %q, want %q / %q", tt.in, p.Bucket, p.Key, tt.bucket, tt.key)
				}
				if want := tt.bucket + "/" + tt.key; p.String() != want {
					t.Fatalf("String() = %q, want %q", p.String(), want)
				}
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		in   string
		msg  string // Parse's message
		at   string // ParseAt(in, 0)'s message
	}{
		// The three texts verified against the Python service.
		{"double slash (verified)", "bucket/a//b",
			"Path 'bucket/a//b' contains illegal character(s) '//' at key index 1",
			"Path 'bucket/a//b' at index 0 contains illegal character(s) '//' at key index 1"},
		{"non-ascii bucket (verified)", "bücket/key",
			"Bucket name may only contain '-' and lowercase ascii alphanumerics: bücket",
			"Bucket name at index 0 may only contain '-' and lowercase ascii alphanumerics: bücket"},
		{"control character (verified)", "bucket/f\x07",
			"Path bucket/f\x07 contains a control character in the key at position 1",
			"Path bucket/f\x07 at index 0 contains a control character in the key at position 1"},

		{"empty", "",
			"The s3 path cannot be null or a whitespace string",
			"The s3 path at index 0 cannot be null or a whitespace string"},
		{"whitespace only", " \t\u3000\n",
			"The s3 path cannot be null or a whitespace string",
			"The s3 path at index 0 cannot be null or a whitespace string"},
		{"invalid utf-8", "bucket/\xff",
			`Path "bucket/\xff" is not valid UTF-8`,
			`Path "bucket/\xff" at index 0 is not valid UTF-8`},
		{"lone surrogate bytes", "bucket/\xed\xa0\x80",
			`Path "bucket/\xed\xa0\x80" is not valid UTF-8`,
			`Path "bucket/\xed\xa0\x80" at index 0 is not valid UTF-8`},
		{"leading slash", "/bucket/key",
			"Path '/bucket/key' cannot start with '/'",
			"Path '/bucket/key' at index 0 cannot start with '/'"},
		{"leading slash after whitespace", "  /bucket/key",
			"Path '/bucket/key' cannot start with '/'",
			"Path '/bucket/key' at index 0 cannot start with '/'"},
		{"no slash", "bucket",
			"Path 'bucket' must start with the s3 bucket and include a key",
			"Path 'bucket' at index 0 must start with the s3 bucket and include a key"},
		{"empty key", "bucket/",
			"Path 'bucket/' must start with the s3 bucket and include a key",
			"Path 'bucket/' at index 0 must start with the s3 bucket and include a key"},
		{"whitespace key", "bucket/  \t",
			"Path 'bucket/  \t' must start with the s3 bucket and include a key",
			"Path 'bucket/  \t' at index 0 must start with the s3 bucket and include a key"},
		{"short bucket after leading whitespace", "  \u00a0 x/key",
			"Bucket name must be > 2 and < 64 characters: x",
			"Bucket name at index 0 must be > 2 and < 64 characters: x"},
		{"short bucket after trailing whitespace stripped", "x  /key",
			"Bucket name must be > 2 and < 64 characters: x",
			"Bucket name at index 0 must be > 2 and < 64 characters: x"},
		{"short bucket", "ab/key",
			"Bucket name must be > 2 and < 64 characters: ab",
			"Bucket name at index 0 must be > 2 and < 64 characters: ab"},
		{"long bucket", long + "/key",
			"Bucket name must be > 2 and < 64 characters: " + long,
			"Bucket name at index 0 must be > 2 and < 64 characters: " + long},
		{"dot in bucket", "my.bucket/key",
			"Bucket has `.` in the name which is unsupported: my.bucket",
			"Bucket at index 0 has `.` in the name which is unsupported: my.bucket"},
		{"leading dash", "-bucket/key",
			"Bucket name cannot start or end with '-': -bucket",
			"Bucket name at index 0 cannot start or end with '-': -bucket"},
		{"trailing dash", "bucket-/key",
			"Bucket name cannot start or end with '-': bucket-",
			"Bucket name at index 0 cannot start or end with '-': bucket-"},
		{"upper case bucket", "Bucket/key",
			"Bucket name may only contain '-' and lowercase ascii alphanumerics: Bucket",
			"Bucket name at index 0 may only contain '-' and lowercase ascii alphanumerics: Bucket"},
		{"underscore in bucket", "my_bucket/key",
			"Bucket name may only contain '-' and lowercase ascii alphanumerics: my_bucket",
			"Bucket name at index 0 may only contain '-' and lowercase ascii alphanumerics: my_bucket"},
		{"inner space in bucket", "my bucket/key",
			"Bucket name may only contain '-' and lowercase ascii alphanumerics: my bucket",
			"Bucket name at index 0 may only contain '-' and lowercase ascii alphanumerics: my bucket"},
		{"digits-only bucket (python islower)", "123/key",
			"Bucket name may only contain '-' and lowercase ascii alphanumerics: 123",
			"Bucket name at index 0 may only contain '-' and lowercase ascii alphanumerics: 123"},
		{"key starts with slash", "bucket//key",
			"Path 'bucket//key''s key cannot start with '/'",
			"Path 'bucket//key' at index 0's key cannot start with '/'"},
		{"1025 byte key", "b12/" + strings.Repeat("k", 1025),
			"Path 'b12/" + strings.Repeat("k", 1025) + "''s key is longer than 1024 bytes in UTF-8",
			"Path 'b12/" + strings.Repeat("k", 1025) + "' at index 0's key is longer than 1024 bytes in UTF-8"},
		// 342 × 3 = 1026 bytes but only 342 characters: the limit is in bytes.
		{"342 three-byte runes", "b12/" + strings.Repeat("語", 342),
			"Path 'b12/" + strings.Repeat("語", 342) + "''s key is longer than 1024 bytes in UTF-8",
			"Path 'b12/" + strings.Repeat("語", 342) + "' at index 0's key is longer than 1024 bytes in UTF-8"},
		{"1023 bytes plus a 2-byte rune", "b12/" + strings.Repeat("k", 1023) + "é",
			"Path 'b12/" + strings.Repeat("k", 1023) + "é''s key is longer than 1024 bytes in UTF-8",
			"Path 'b12/" + strings.Repeat("k", 1023) + "é' at index 0's key is longer than 1024 bytes in UTF-8"},
		{"semicolon", "bucket/a;b",
			"Path 'bucket/a;b' contains illegal character(s) ';' at key index 1",
			"Path 'bucket/a;b' at index 0 contains illegal character(s) ';' at key index 1"},
		{"quote", "bucket/it's",
			"Path 'bucket/it's' contains illegal character(s) ''' at key index 2",
			"Path 'bucket/it's' at index 0 contains illegal character(s) ''' at key index 2"},
		{"dot-dot segment", "cts-logs/x/../container_logs/j/",
			"Path 'cts-logs/x/../container_logs/j/' has a '..' segment at key index 2: relative segments are not allowed in S3 paths, name the folder itself",
			"Path 'cts-logs/x/../container_logs/j/' at index 0 has a '..' segment at key index 2: relative segments are not allowed in S3 paths, name the folder itself"},
		{"dot-dot key", "cts-data/..",
			"Path 'cts-data/..' has a '..' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself",
			"Path 'cts-data/..' at index 0 has a '..' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself"},
		{"leading dot-dot then key", "cts-data/../cts-logs/x",
			"Path 'cts-data/../cts-logs/x' has a '..' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself",
			"Path 'cts-data/../cts-logs/x' at index 0 has a '..' segment at key index 0: relative segments are not allowed in S3 paths, name the folder itself"},
		{"dot segment", "bucket/a/./b",
			"Path 'bucket/a/./b' has a '.' segment at key index 2: relative segments are not allowed in S3 paths, name the folder itself",
			"Path 'bucket/a/./b' at index 0 has a '.' segment at key index 2: relative segments are not allowed in S3 paths, name the folder itself"},
		{"trailing dot folder", "bucket/日本/./",
			"Path 'bucket/日本/./' has a '.' segment at key index 3: relative segments are not allowed in S3 paths, name the folder itself",
			"Path 'bucket/日本/./' at index 0 has a '.' segment at key index 3: relative segments are not allowed in S3 paths, name the folder itself"},
		{"first match wins", "bucket/ab//c;d'",
			"Path 'bucket/ab//c;d'' contains illegal character(s) '//' at key index 2",
			"Path 'bucket/ab//c;d'' at index 0 contains illegal character(s) '//' at key index 2"},
		{"index counts runes", "bucket/日本語;x",
			"Path 'bucket/日本語;x' contains illegal character(s) ';' at key index 3",
			"Path 'bucket/日本語;x' at index 0 contains illegal character(s) ';' at key index 3"},
		{"triple slash", "bucket/a///b",
			"Path 'bucket/a///b' contains illegal character(s) '//' at key index 1",
			"Path 'bucket/a///b' at index 0 contains illegal character(s) '//' at key index 1"},
		{"trailing double slash", "bucket/a//",
			"Path 'bucket/a//' contains illegal character(s) '//' at key index 1",
			"Path 'bucket/a//' at index 0 contains illegal character(s) '//' at key index 1"},
		{"illegal before control", "bucket/\x00;",
			"Path 'bucket/\x00;' contains illegal character(s) ';' at key index 1",
			"Path 'bucket/\x00;' at index 0 contains illegal character(s) ';' at key index 1"},
		{"newline (Cc)", "bucket/a\nb",
			"Path bucket/a\nb contains a control character in the key at position 1",
			"Path bucket/a\nb at index 0 contains a control character in the key at position 1"},
		{"tab (Cc)", "bucket/\tb",
			"Path bucket/\tb contains a control character in the key at position 0",
			"Path bucket/\tb at index 0 contains a control character in the key at position 0"},
		{"DEL (Cc)", "bucket/ab\x7f",
			"Path bucket/ab\x7f contains a control character in the key at position 2",
			"Path bucket/ab\x7f at index 0 contains a control character in the key at position 2"},
		{"C1 control (Cc)", "bucket/é\u0085",
			"Path bucket/é\u0085 contains a control character in the key at position 1",
			"Path bucket/é\u0085 at index 0 contains a control character in the key at position 1"},
		{"zero width space (Cf)", "bucket/日本\u200b",
			"Path bucket/日本\u200b contains a control character in the key at position 2",
			"Path bucket/日本\u200b at index 0 contains a control character in the key at position 2"},
		{"byte order mark (Cf)", "bucket/\ufeffa",
			"Path bucket/\ufeffa contains a control character in the key at position 0",
			"Path bucket/\ufeffa at index 0 contains a control character in the key at position 0"},
		{"private use (Co)", "bucket/x\ue000",
			"Path bucket/x\ue000 contains a control character in the key at position 1",
			"Path bucket/x\ue000 at index 0 contains a control character in the key at position 1"},
		{"unassigned (Cn)", "bucket/x\U000e0080",
			"Path bucket/x\U000e0080 contains a control character in the key at position 1",
			"Path bucket/x\U000e0080 at index 0 contains a control character in the key at position 1"},
		{"noncharacter (Cn)", "bucket/\uffff",
			"Path bucket/\uffff contains a control character in the key at position 0",
			"Path bucket/\uffff at index 0 contains a control character in the key at position 0"},
		{"trailing python-only whitespace is Cc in the key", "bucket/k\x1f",
			"Path bucket/k\x1f contains a control character in the key at position 1",
			"Path bucket/k\x1f at index 0 contains a control character in the key at position 1"},
		{"message keeps the original trailing part", "  bucket/f\x07 ",
			"Path bucket/f\x07  contains a control character in the key at position 1",
			"Path bucket/f\x07  at index 0 contains a control character in the key at position 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check := func(got Path, err error, want string) {
				t.Helper()
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("Parse(%q) = %+v, %v; want *Error %q", tt.in, got, err, want)
				}
				if pe.Msg != want || err.Error() != want {
					t.Errorf("message\n got %q\nwant %q", pe.Msg, want)
				}
				if got != (Path{}) {
					t.Errorf("Parse returned %+v with an error", got)
				}
			}
			p, err := Parse(tt.in)
			check(p, err, tt.msg)
			p, err = ParseAt(tt.in, 0)
			check(p, err, tt.at)
		})
	}
}

func TestParseAtIndex(t *testing.T) {
	t.Parallel()
	_, err := ParseAt("bucket/a;b", 17)
	const want = "Path 'bucket/a;b' at index 17 contains illegal character(s) ';' at key index 1"
	if err == nil || err.Error() != want {
		t.Fatalf("ParseAt error = %v, want %q", err, want)
	}
}

func TestValidateBucket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		msg  string // "" when valid
	}{
		{"valid", "test-bucket", ""},
		{"min length", "abc", ""},
		{"max length", strings.Repeat("z", 63), ""},
		{"digits with a letter", "2024-data", ""},
		{"empty", "", "Bucket name cannot be whitespace only"},
		{"surrounding space not stripped", " abc ", "Bucket name may only contain '-' and lowercase ascii alphanumerics:  abc "},
		{"two characters", "ab", "Bucket name must be > 2 and < 64 characters: ab"},
		{"length counts characters", "éé", "Bucket name must be > 2 and < 64 characters: éé"},
		{"64 characters", strings.Repeat("z", 64), "Bucket name must be > 2 and < 64 characters: " + strings.Repeat("z", 64)},
		{"dot", "a.b.c", "Bucket has `.` in the name which is unsupported: a.b.c"},
		{"dash edge", "-ab", "Bucket name cannot start or end with '-': -ab"},
		{"digits only", "12345", "Bucket name may only contain '-' and lowercase ascii alphanumerics: 12345"},
		{"digits and dashes only", "1-2-3", "Bucket name may only contain '-' and lowercase ascii alphanumerics: 1-2-3"},
		{"slash", "ab/c", "Bucket name may only contain '-' and lowercase ascii alphanumerics: ab/c"},
		{"fullwidth letter", "ａｂｃ", "Bucket name may only contain '-' and lowercase ascii alphanumerics: ａｂｃ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateBucket(tt.in)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("ValidateBucket(%q) = %v", tt.in, err)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Msg != tt.msg {
				t.Fatalf("ValidateBucket(%q) = %v, want *Error %q", tt.in, err, tt.msg)
			}
		})
	}
}
