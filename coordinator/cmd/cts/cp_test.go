package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/shared/checksum"
)

// s3Env is the environment of a CLI talking to gw, as .dev/env sets it.
func s3Env(gw *devstack.S3) map[string]string {
	return map[string]string{"AWS_ENDPOINT_URL": gw.Endpoint, "AWS_ACCESS_KEY_ID": gw.AccessKey,
		"AWS_SECRET_ACCESS_KEY": gw.SecretKey, "AWS_REGION": gw.Region}
}

func storedCRC(t *testing.T, gw *devstack.S3, p string) string {
	t.Helper()
	bucket, key, _ := strings.Cut(p, "/")
	h, err := gw.Client().HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("head %s: %v", p, err)
	}
	return aws.ToString(h.ChecksumCRC64NVME)
}

func writeRandom(t *testing.T, p string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCopy copies files and folders both ways through the real embedded S3: every upload is
// stored with the CRC64/NVME of the local bytes (multipart ones too), every download is the
// object's bytes, and nothing is printed when the output is not a terminal.
func TestCopy(t *testing.T) {
	gw := devstack.TestS3(t, "data")
	env := s3Env(gw)
	dir := t.TempDir()
	small := writeRandom(t, filepath.Join(dir, "small.bin"), 1000)
	big := writeRandom(t, filepath.Join(dir, "big.bin"), 12<<20+3)

	run := func(args ...string) result {
		t.Helper()
		r := runCLI(t, env, args...)
		r.want(t, exitOK)
		if r.stdout != "" || r.stderr != "" {
			t.Fatalf("cts %s printed %q / %q, want nothing off a terminal", strings.Join(args, " "), r.stdout, r.stderr)
		}
		return r
	}
	run("cp", filepath.Join(dir, "small.bin"), "data/in/small.bin")
	run("cp", filepath.Join(dir, "big.bin"), "s3://data/in/", "--multipart-threshold", "5242880", "--part-size", "5242880")
	for name, b := range map[string][]byte{"small.bin": small, "big.bin": big} {
		if got, want := storedCRC(t, gw, "data/in/"+name), checksum.Encode(checksum.Sum(b)); got != want {
			t.Errorf("%s: S3 stores CRC64/NVME %q, the file has %s", name, got, want)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	run("cp", "data/in/big.bin", out+"/")
	if got, _ := os.ReadFile(filepath.Join(out, "big.bin")); !bytes.Equal(got, big) {
		t.Fatal("downloaded big.bin differs")
	}
	run("cp", "s3://data/in/small.bin", filepath.Join(out, "copy"))
	if got, _ := os.ReadFile(filepath.Join(out, "copy")); !bytes.Equal(got, small) {
		t.Fatal("downloaded small.bin differs")
	}

	// Folders, recursively.
	tree := filepath.Join(t.TempDir(), "tree")
	files := map[string][]byte{"a.txt": nil, "sub/b.txt": nil, "sub/deeper/c.txt": nil}
	for rel := range files {
		files[rel] = writeRandom(t, filepath.Join(tree, rel), 100+len(rel))
	}
	run("cp", "-r", tree, "data/tree/")
	back := filepath.Join(t.TempDir(), "back")
	run("cp", "-r", "data/tree/", back)
	for rel, b := range files {
		if got := storedCRC(t, gw, "data/tree/"+rel); got != checksum.Encode(checksum.Sum(b)) {
			t.Errorf("data/tree/%s: CRC %q", rel, got)
		}
		if got, err := os.ReadFile(filepath.Join(back, rel)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s came back different: %v", rel, err)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(back, "*.part*")); len(leftovers) != 0 {
		t.Errorf("part files left: %v", leftovers)
	}
}

func TestCopyErrors(t *testing.T) {
	gw := devstack.TestS3(t, "data")
	env := s3Env(gw)
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 10)
	// An object stored without a CRC64/NVME.
	if _, err := gw.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("plain.txt"),
		Body: strings.NewReader("no crc64"), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no source", env, []string{"cp", "nosuchfile", "data/x"}, exitUsage, "SRC nosuchfile: no such local file or folder, and not an S3 path (bucket/key)"},
		{"folder without -r", env, []string{"cp", dir, "data/x/"}, exitUsage, "is a folder: add -r to copy it and everything below it"},
		{"s3 to s3", env, []string{"cp", "s3://data/a", "s3://data/b"}, exitUsage, "both SRC and DST are S3 paths"},
		{"no such object", env, []string{"cp", "data/missing.txt", filepath.Join(dir, "m")}, exitAPI, "no such object"},
		{"no such bucket", env, []string{"cp", filepath.Join(dir, "f"), "nobucket/f"}, exitAPI, "nobucket/f"},
		{"download without crc", env, []string{"cp", "data/plain.txt", filepath.Join(dir, "p")}, exitAPI,
			"data/plain.txt has no CRC64/NVME checksum, so its download cannot be verified: give it one with `cts checksum --add data/plain.txt`"},
		{"no credentials", map[string]string{"AWS_ENDPOINT_URL": gw.Endpoint}, []string{"cp", filepath.Join(dir, "f"), "data/f"}, exitUsage,
			"no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (on a dev site: source .dev/env)"},
		{"wrong secret", map[string]string{"AWS_ENDPOINT_URL": gw.Endpoint, "AWS_ACCESS_KEY_ID": gw.AccessKey, "AWS_SECRET_ACCESS_KEY": "wrong"},
			[]string{"cp", filepath.Join(dir, "f"), "data/f"}, exitAPI, "check the S3 credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range c.env {
				e[k] = v
			}
			r := runCLI(t, e, c.args...)
			r.want(t, c.code)
			if !strings.Contains(r.stderr, c.want) {
				t.Fatalf("stderr %q does not say %q", r.stderr, c.want)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Errorf("more than two lines: %q", r.stderr)
			}
		})
	}
}

// TestChecksum shows an object's CRC64/NVME, says how to add a missing one, and adds it
// without changing the content.
func TestChecksum(t *testing.T) {
	gw := devstack.TestS3(t, "data")
	env := s3Env(gw)
	content := bytes.Repeat([]byte("genome "), 1000)
	if _, err := gw.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("data"), Key: aws.String("in/g.fna"),
		Body: bytes.NewReader(content), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32}); err != nil {
		t.Fatal(err)
	}
	want := checksum.Encode(checksum.Sum(content))

	r := runCLI(t, env, "checksum", "data/in/g.fna")
	r.want(t, exitAPI)
	if !strings.Contains(r.stderr, "data/in/g.fna has no CRC64/NVME checksum (S3 stores a CRC32 checksum only), so jobs cannot use it as an input: give it one with `cts checksum --add data/in/g.fna`") {
		t.Fatalf("stderr %q", r.stderr)
	}
	r = runCLI(t, env, "checksum", "--add", "s3://data/in/g.fna")
	r.want(t, exitOK)
	if strings.TrimSpace(r.stdout) != want {
		t.Fatalf("--add printed %q, want %s", r.stdout, want)
	}
	if got := storedCRC(t, gw, "data/in/g.fna"); got != want {
		t.Fatalf("S3 stores %q after --add, want %s", got, want)
	}
	obj, err := gw.Client().GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("in/g.fna")})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, _ = got.ReadFrom(obj.Body)
	obj.Body.Close()
	if !bytes.Equal(got.Bytes(), content) {
		t.Fatal("--add changed the content")
	}
	r = runCLI(t, env, "checksum", "data/in/g.fna")
	r.want(t, exitOK)
	if strings.TrimSpace(r.stdout) != want {
		t.Fatalf("printed %q, want %s", r.stdout, want)
	}
	local := filepath.Join(t.TempDir(), "g.fna")
	if err := os.WriteFile(local, content, 0o644); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, env, "checksum", "--file", local)
	r.want(t, exitOK)
	if strings.TrimSpace(r.stdout) != want {
		t.Fatalf("--file printed %q, want %s", r.stdout, want)
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine("upload", 12<<20, 48<<20, 3, 2*time.Second)
	want := "upload  [#####...............]  25%  12.0 MiB / 48.0 MiB  6.0 MiB/s  ETA 6s  (3 files)"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := progressLine("download", 0, 0, 1, 0); !strings.Contains(got, "  0%") || !strings.Contains(got, "(1 file)") {
		t.Fatalf("empty: %q", got)
	}
}

// BenchmarkCopy measures cts cp (CRC64/NVME computed locally and sent, multipart in parallel
// parts above the threshold; downloads verified) against the raw SDK calls with no checksum
// work (one PutObject, one GetObject read to the end), on the embedded S3 over loopback:
//
//	go test -run '^$' -bench BenchmarkCopy -benchtime 3x ./coordinator/cmd/cts/
func BenchmarkCopy(b *testing.B) {
	gw, err := devstack.StartS3(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Close()
	if err := gw.CreateBucket(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	env := s3Env(gw)
	env["HOME"] = b.TempDir()
	const size = 256 << 20
	src := filepath.Join(b.TempDir(), "src.bin")
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	data = nil
	cli := func(args ...string) {
		var out bytes.Buffer
		if code := run(args, &out, &out, func(k string) string { return env[k] }); code != 0 {
			b.Fatalf("cts %v: %d %s", args, code, out.String())
		}
	}
	raw := gw.Client()
	b.Run("cts-cp-upload", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			cli("cp", src, "bench/up.bin")
		}
	})
	b.Run("cts-cp-upload-single-put", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			cli("cp", src, "bench/up1.bin", "--multipart-threshold", "1073741824")
		}
	})
	b.Run("raw-sdk-put", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			_, err = raw.PutObject(b.Context(), &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String("raw.bin"), Body: f,
				ContentLength: aws.Int64(size)}, func(o *s3.Options) {
				o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
			})
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	dst := filepath.Join(b.TempDir(), "dst.bin")
	b.Run("cts-cp-download", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			cli("cp", "bench/up.bin", dst)
		}
	})
	b.Run("raw-sdk-get", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			o, err := raw.GetObject(b.Context(), &s3.GetObjectInput{Bucket: aws.String("bench"), Key: aws.String("raw.bin")})
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(dst)
			if err != nil {
				b.Fatal(err)
			}
			_, err = io.Copy(f, o.Body)
			o.Body.Close()
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
