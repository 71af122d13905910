package objects_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/test/tcpproxy"
)

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}

// fixture is one S3 gateway shared by the tests of this file: starting one costs a child
// process, and every test works on its own keys.
type fixture struct {
	s3   *devstack.S3
	objs *objects.Objects
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	s := devstack.TestS3(t, "bucket")
	o := objects.New(objects.NewClient(objects.Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Region: s.Region}))
	// The gateway's shutdown waits for idle keep-alive connections: drop ours before it stops
	// (cleanups run last-registered first).
	t.Cleanup(func() { closeIdle(o) })
	return &fixture{s3: s, objs: o}
}

func closeIdle(o *objects.Objects) {
	if hc, ok := o.Client().Options().HTTPClient.(*http.Client); ok {
		hc.CloseIdleConnections()
	}
}

// put uploads body with its CRC64/NVME (as the agents do) and returns the encoded CRC.
func (f *fixture) put(t *testing.T, key string, body []byte) string {
	t.Helper()
	crc := checksum.Encode(checksum.Sum(body))
	_, err := f.objs.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String("bucket"), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumCRC64NVME: aws.String(crc),
	})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return crc
}

func wantCTSErr(t *testing.T, err error, code ctserr.Code, msg string) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ctserr.Error", err, err)
	}
	if ce.Code != code || (msg != "" && ce.Message != msg) {
		t.Fatalf("got code %d message %q, want %d %q", ce.Code, ce.Message, code, msg)
	}
}

func TestObjects(t *testing.T) {
	f := newFixture(t)
	body := []byte("hello, checksummed world")
	crc := f.put(t, "in/with-crc.txt", body)
	f.put(t, "logs/empty.txt", nil)

	// An object uploaded as a multipart upload with a composite CRC32 has no whole-object
	// CRC64/NVME: Head must report none.
	c := f.objs.Client()
	mp, err := c.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{
		Bucket: aws.String("bucket"), Key: aws.String("in/composite.txt"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, ChecksumType: types.ChecksumTypeComposite,
	})
	if err != nil {
		t.Fatal(err)
	}
	part, err := c.UploadPart(t.Context(), &s3.UploadPartInput{
		Bucket: aws.String("bucket"), Key: aws.String("in/composite.txt"), UploadId: mp.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(body), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CompleteMultipartUpload(t.Context(), &s3.CompleteMultipartUploadInput{
		Bucket: aws.String("bucket"), Key: aws.String("in/composite.txt"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{PartNumber: aws.Int32(1), ETag: part.ETag, ChecksumCRC32: part.ChecksumCRC32},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("head", func(t *testing.T) {
		cases := []struct {
			name    string
			path    string
			size    int64
			crc     string
			code    ctserr.Code
			message string
		}{
			{name: "with crc", path: "bucket/in/with-crc.txt", size: int64(len(body)), crc: crc},
			{name: "composite crc is no crc", path: "bucket/in/composite.txt", size: int64(len(body)), crc: ""},
			{name: "missing object", path: "bucket/in/nope.txt", code: ctserr.CodeS3PathNotFound,
				message: "The path 'bucket/in/nope.txt' was not found on the s3 system"},
			// HEAD responses have no body, so a missing bucket is a bare 404 too.
			{name: "missing bucket", path: "nobucket/in/x.txt", code: ctserr.CodeS3PathNotFound,
				message: "The path 'nobucket/in/x.txt' was not found on the s3 system"},
			{name: "illegal path", path: "Bucket/x", code: ctserr.CodeIllegalS3Path},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				m, err := f.objs.Head(t.Context(), tc.path)
				if tc.code != 0 {
					wantCTSErr(t, err, tc.code, tc.message)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if m.Size != tc.size || m.CRC64NVME != tc.crc {
					t.Fatalf("Head = %+v, want size %d crc %q", m, tc.size, tc.crc)
				}
			})
		}
	})

	t.Run("check writable", func(t *testing.T) {
		if err := f.objs.CheckWritable(t.Context(), "bucket/out/dir/"); err != nil {
			t.Fatal(err)
		}
		// The test object is gone again.
		_, err := f.objs.Head(t.Context(), "bucket/out/dir/"+objects.WriteTestObject)
		wantCTSErr(t, err, ctserr.CodeS3PathNotFound, "")
		// Without the trailing slash the same object is written.
		if err := f.objs.CheckWritable(t.Context(), "bucket/out/dir"); err != nil {
			t.Fatal(err)
		}
		err = f.objs.CheckWritable(t.Context(), "nobucket/out/")
		wantCTSErr(t, err, ctserr.CodeS3BucketNotFound, "The bucket for path 'nobucket/out/' was not found on the s3 system")
		// A file-backed gateway refuses the write test's object when a folder has its name:
		// refused on every try (not taken for a race with another request's delete), so the
		// caller hears it; and a folder below an object.
		f.put(t, "taken/"+objects.WriteTestObject+"/x", []byte("x"))
		err = f.objs.CheckWritable(t.Context(), "bucket/taken/")
		wantCTSErr(t, err, ctserr.CodeIllegalS3Path, "The s3 system refused write of the path 'bucket/taken/': ExistingObjectIsDirectory")
		f.put(t, "out/file.txt", []byte("x"))
		err = f.objs.CheckWritable(t.Context(), "bucket/out/file.txt/sub/")
		wantCTSErr(t, err, ctserr.CodeIllegalS3Path, "The s3 system refused write of the path 'bucket/out/file.txt/sub/': ObjectParentIsFile")
	})

	t.Run("wrong service credentials are an outage, not the caller's fault", func(t *testing.T) {
		for name, cfg := range map[string]objects.Config{
			"wrong secret": {Endpoint: f.s3.Endpoint, AccessKey: f.s3.AccessKey, SecretKey: "wrong", Region: f.s3.Region},
			"unknown key":  {Endpoint: f.s3.Endpoint, AccessKey: "nosuchkey", SecretKey: "wrong", Region: f.s3.Region},
		} {
			t.Run(name, func(t *testing.T) {
				bad := objects.New(objects.NewClient(cfg))
				defer closeIdle(bad)
				err := bad.CheckWritable(t.Context(), "bucket/out/")
				var ce *ctserr.Error
				var ue *ctserr.UnavailableError
				if errors.As(err, &ce) || !errors.As(err, &ue) || ue.Dependency != "S3" || ue.Reason != "refused the service's credentials" ||
					!strings.Contains(err.Error(), "s3 access credentials are invalid") {
					t.Fatalf("CheckWritable = %v, want S3 unavailable for its credentials", err)
				}
				err = bad.Stream(t.Context(), "bucket/in/with-crc.txt", 0, 0, func(int64) io.Writer { return io.Discard })
				if errors.As(err, &ce) || !errors.As(err, &ue) {
					t.Fatalf("Stream = %v, want S3 unavailable", err)
				}
			})
		}
	})

	t.Run("stream", func(t *testing.T) {
		cases := []struct {
			name         string
			path         string
			seek, length int64
			want         string
			code         ctserr.Code
			message      string
		}{
			{name: "whole", path: "bucket/in/with-crc.txt", want: string(body)},
			{name: "seek", path: "bucket/in/with-crc.txt", seek: 7, want: string(body[7:])},
			{name: "seek and length", path: "bucket/in/with-crc.txt", seek: 7, length: 11, want: "checksummed"},
			{name: "length past the end", path: "bucket/in/with-crc.txt", seek: 20, length: 100, want: string(body[20:])},
			{name: "length only", path: "bucket/in/with-crc.txt", length: 5, want: "hello"},
			{name: "empty object", path: "bucket/logs/empty.txt", want: ""},
			{name: "length of an empty object", path: "bucket/logs/empty.txt", length: 5, want: ""},
			{name: "seek at the end", path: "bucket/in/with-crc.txt", seek: int64(len(body)), code: ctserr.CodeIllegalParameter,
				message: "Seek parameter 24 is >= file size 24"},
			{name: "seek past the end", path: "bucket/in/with-crc.txt", seek: 1000, code: ctserr.CodeIllegalParameter,
				message: "Seek parameter 1000 is >= file size 24"},
			{name: "seek in an empty object", path: "bucket/logs/empty.txt", seek: 1, code: ctserr.CodeIllegalParameter,
				message: "Seek parameter 1 is >= file size 0"},
			{name: "missing", path: "bucket/logs/nope.txt", code: ctserr.CodeS3PathNotFound,
				message: "The path 'bucket/logs/nope.txt' was not found on the s3 system"},
			{name: "missing with seek", path: "bucket/logs/nope.txt", seek: 3, code: ctserr.CodeS3PathNotFound},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var buf bytes.Buffer
				called := false
				var size int64
				err := f.objs.Stream(t.Context(), tc.path, tc.seek, tc.length, func(n int64) io.Writer {
					called, size = true, n
					return &buf
				})
				if tc.code != 0 {
					wantCTSErr(t, err, tc.code, tc.message)
					if called {
						t.Fatal("the writer was requested before the error")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if buf.String() != tc.want || size != int64(len(tc.want)) {
					t.Fatalf("streamed %q (announced size %d), want %q", buf.String(), size, tc.want)
				}
			})
		}
	})
}

func TestStreamStopsWithContext(t *testing.T) {
	f := newFixture(t)
	f.put(t, "big.txt", []byte(strings.Repeat("x", 1<<20)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := f.objs.Stream(ctx, "bucket/big.txt", 0, 0, func(int64) io.Writer { return io.Discard })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream with a canceled context = %v, want context.Canceled", err)
	}
}

// TestList lists a prefix folder by folder and page by page against the real gateway.
func TestList(t *testing.T) {
	f := newFixture(t)
	for _, k := range []string{"list/a.txt", "list/b.txt", "list/c.txt", "list/sub/x.txt", "list/sub2/y.txt", "listing-other/z"} {
		f.put(t, k, []byte(k))
	}
	l, err := f.objs.List(t.Context(), "bucket/list/", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, o := range l.Files {
		files = append(files, o.Path)
		if o.Size != int64(len(strings.TrimPrefix(o.Path, "bucket/"))) || o.Modified.IsZero() {
			t.Errorf("object %+v", o)
		}
	}
	if strings.Join(files, ",") != "bucket/list/a.txt,bucket/list/b.txt,bucket/list/c.txt" ||
		strings.Join(l.Folders, ",") != "bucket/list/sub/,bucket/list/sub2/" || l.Next != "" {
		t.Fatalf("listing %+v", l)
	}
	// Pages of two: every entry once, in order.
	var all []string
	next := ""
	for range 10 {
		p, err := f.objs.List(t.Context(), "bucket/list/", next, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Folders...)
		for _, o := range p.Files {
			all = append(all, o.Path)
		}
		if next = p.Next; next == "" {
			break
		}
	}
	if len(all) != 5 {
		t.Fatalf("paged listing %v, want 5 entries", all)
	}
	// A partial name lists what starts with it.
	if l, err = f.objs.List(t.Context(), "bucket/list/s", "", 1000); err != nil || len(l.Folders) != 2 || len(l.Files) != 0 {
		t.Fatalf("partial prefix: %+v %v", l, err)
	}
	for prefix, code := range map[string]ctserr.Code{
		"bucket":         ctserr.CodeIllegalS3Path,
		"Bad_Bucket/x":   ctserr.CodeIllegalS3Path,
		"nosuchbucket/x": ctserr.CodeS3BucketNotFound,
	} {
		var ce *ctserr.Error
		if _, err := f.objs.List(t.Context(), prefix, "", 10); !errors.As(err, &ce) || ce.Code != code {
			t.Errorf("List(%q) = %v, want app code %d", prefix, err, code)
		}
	}
}

// TestOutage performs the attack of a hung (then refusing) S3 behind a proxy: every call
// answers within its deadline with S3 named as unavailable, never a 500 and never a wait
// without end.
func TestOutage(t *testing.T) {
	f := newFixture(t)
	f.put(t, "in/x.txt", []byte("x"))
	u, err := url.Parse(f.s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	o := objects.Open(objects.Config{Endpoint: "http://" + proxy.Addr(), AccessKey: f.s3.AccessKey, SecretKey: f.s3.SecretKey,
		Region: f.s3.Region, Timeout: time.Second})
	defer closeIdle(o)
	if _, err := o.Head(t.Context(), "bucket/in/x.txt"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	calls := map[string]func() error{
		"head":       func() error { _, err := o.Head(t.Context(), "bucket/in/x.txt"); return err },
		"write test": func() error { return o.CheckWritable(t.Context(), "bucket/out/") },
		"stream": func() error {
			return o.Stream(t.Context(), "bucket/in/x.txt", 0, 0, func(int64) io.Writer { return io.Discard })
		},
	}
	for _, mode := range []tcpproxy.Mode{tcpproxy.Hang, tcpproxy.Refuse} {
		if err := proxy.Set(mode); err != nil {
			t.Fatal(err)
		}
		want := map[tcpproxy.Mode]string{tcpproxy.Hang: "did not answer in time", tcpproxy.Refuse: "refused the connection"}[mode]
		for name, call := range calls {
			start := time.Now()
			err := call()
			var ue *ctserr.UnavailableError
			if !errors.As(err, &ue) || ue.Dependency != ctserr.DependencyS3 || ue.Reason != want {
				t.Errorf("%s, %s: %v, want S3 unavailable (%s)", mode, name, err, want)
			}
			// The deadline is 1 s; the SDK's retries stay inside it. Generous for a loaded machine.
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("%s, %s took %s", mode, name, d)
			}
		}
	}
	if err := proxy.Set(tcpproxy.Pass); err != nil {
		t.Fatal(err)
	}
	// Back to normal without a restart.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := o.Head(t.Context(), "bucket/in/x.txt")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCheckWritableConcurrentSiblings runs many write tests at once in sibling folders below
// one new parent, as concurrent submits with outputs side by side do. A POSIX-backed gateway
// (versitygw here) removes a folder its last object left and may remove the parent while a
// sibling's write is creating it below: the sibling's write then fails with a refusal of the
// path that is not about the caller's path at all. Every write test must pass.
func TestCheckWritableConcurrentSiblings(t *testing.T) {
	f := newFixture(t)
	const rounds, siblings = 40, 16
	for r := range rounds {
		errs := make(chan error, siblings)
		for i := range siblings {
			go func() {
				errs <- f.objs.CheckWritable(t.Context(), fmt.Sprintf("bucket/siblings-%d/job-%d/out", r%2, i))
			}()
		}
		for range siblings {
			if err := <-errs; err != nil {
				t.Errorf("round %d: %v", r, err)
			}
		}
	}
}
