package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/shared/checksum"
)

// testBucket is created once in the shared gateway; tests use distinct keys under it.
const testBucket = "cts-transfer-test"

// shared is one embedded S3 gateway for the whole test binary: starting one per test would
// cost more than the tests themselves.
var shared struct {
	once sync.Once
	dir  string
	s3   *devstack.S3
	err  error
}

// cleanups run after all tests and benchmarks, before the gateway stops.
var cleanups []func()

func TestMain(m *testing.M) {
	devstack.Main()
	code := m.Run()
	for _, f := range cleanups {
		f()
	}
	if shared.s3 != nil {
		if err := shared.s3.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// gateway returns the shared S3 gateway, starting it on first use.
func gateway(tb testing.TB) *devstack.S3 {
	tb.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "transfer-s3-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if shared.s3, shared.err = devstack.StartS3(ctx, shared.dir); shared.err != nil {
			return
		}
		shared.err = shared.s3.CreateBucket(ctx, testBucket)
	})
	if shared.err != nil {
		tb.Fatalf("embedded s3: %v", shared.err)
	}
	return shared.s3
}

// doFunc intercepts one HTTP request of the SDK; next sends it for real.
type doFunc func(req *http.Request, next s3.HTTPClient) (*http.Response, error)

// interceptor is an s3.HTTPClient that wraps the SDK's real one, to observe requests and
// inject faults where the transport sits.
type interceptor struct {
	next s3.HTTPClient
	fn   doFunc
}

func (i interceptor) Do(req *http.Request) (*http.Response, error) { return i.fn(req, i.next) }

// newS3 returns an SDK client built exactly as NewS3Client builds it, with fn (if not nil)
// in front of its HTTP client.
func newS3(tb testing.TB, fn doFunc) *s3.Client {
	tb.Helper()
	g := gateway(tb)
	opts, err := s3Options(S3Config{Endpoint: g.Endpoint, AccessKey: g.AccessKey, SecretKey: g.SecretKey, Region: g.Region})
	if err != nil {
		tb.Fatal(err)
	}
	// A request canceled while its connection was being dialed leaves that connection in the
	// pool, never used; the gateway's shutdown waits for such connections, so drop them.
	tb.Cleanup(opts.HTTPClient.(*http.Client).CloseIdleConnections)
	if fn != nil {
		opts.HTTPClient = interceptor{next: opts.HTTPClient, fn: fn}
	}
	return s3.New(opts)
}

// newClient returns a transfer Client over newS3(fn) with short backoffs.
func newClient(tb testing.TB, cfg Config, fn doFunc) *Client {
	tb.Helper()
	c := New(newS3(tb, fn), cfg)
	c.backoffBase, c.backoffCap = time.Millisecond, 5*time.Millisecond
	return c
}

// key returns an object key unique to the test and name.
func key(tb testing.TB, name string) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name()) + "/" + name
}

// randomFile writes size pseudo-random bytes (seeded by size) to dir/name.
func randomFile(tb testing.TB, dir, name string, size int64) (string, []byte) {
	tb.Helper()
	data := make([]byte, size)
	var seed [32]byte
	copy(seed[:], fmt.Sprint(size, name))
	_, _ = rand.NewChaCha8(seed).Read(data)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p, data
}

// put stores data at bucket/key with a plain PutObject (test setup, not the code under test).
func put(tb testing.TB, k string, data []byte) {
	tb.Helper()
	_, err := gateway(tb).Client().PutObject(tb.Context(), &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(k), Body: bytes.NewReader(data),
		ChecksumCRC64NVME: aws.String(checksum.Encode(checksum.Sum(data))),
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// stored returns the object's size and stored CRC64/NVME, or an error (404 for absent).
func stored(tb testing.TB, k string) (int64, string, error) {
	tb.Helper()
	h, err := gateway(tb).Client().HeadObject(tb.Context(), &s3.HeadObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(k), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return 0, "", err
	}
	return aws.ToInt64(h.ContentLength), aws.ToString(h.ChecksumCRC64NVME), nil
}

// assertAbsent fails unless the object is absent and no multipart upload is pending for it.
func assertAbsent(tb testing.TB, k string) {
	tb.Helper()
	if _, _, err := stored(tb, k); httpStatus(err) != http.StatusNotFound {
		tb.Errorf("object %s: want 404, got err %v", k, err)
	}
	l, err := gateway(tb).Client().ListMultipartUploads(tb.Context(), &s3.ListMultipartUploadsInput{
		Bucket: aws.String(testBucket), Prefix: aws.String(k),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(l.Uploads) != 0 {
		tb.Errorf("multipart uploads left for %s: %d", k, len(l.Uploads))
	}
}

// assertNoFile fails if path exists.
func assertNoFile(tb testing.TB, path string) {
	tb.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		tb.Errorf("%s: want no file, stat err %v", path, err)
	}
}

// op names the S3 operation of a request by method and query.
func op(req *http.Request) string {
	q := req.URL.Query()
	switch {
	case req.Method == http.MethodGet && !q.Has("uploads") && !q.Has("uploadId") && !q.Has("list-type"):
		return "GetObject"
	case req.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case req.Method == http.MethodPut:
		return "PutObject"
	case req.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case req.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case req.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case req.Method == http.MethodDelete:
		return "DeleteObject"
	case req.Method == http.MethodHead:
		return "HeadObject"
	}
	return req.Method
}

// s3Fault is a response with an S3 error document.
func s3Fault(req *http.Request, status int, code string) *http.Response {
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>injected</Message></Error>`
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode:    status,
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/xml"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// cutBody passes left bytes through, then fails like a dropped connection (or, with block,
// hangs until the request is canceled, like a stalled one).
type cutBody struct {
	rc    io.ReadCloser
	left  int64
	block <-chan struct{}
	// onBlock, when set, is called once the body starts hanging (tests fire the stall
	// watchdog from it).
	onBlock func()
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if c.block != nil {
			if c.onBlock != nil {
				c.onBlock()
				c.onBlock = nil
			}
			<-c.block
			return 0, errors.New("stalled body canceled")
		}
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.rc.Close() }

// recorder counts requests per operation and keeps their headers.
type recorder struct {
	mu   sync.Mutex
	reqs map[string][]http.Header
}

func (r *recorder) add(req *http.Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reqs == nil {
		r.reqs = map[string][]http.Header{}
	}
	o := op(req)
	h := req.Header.Clone()
	h.Set("X-Test-Query", req.URL.RawQuery)
	r.reqs[o] = append(r.reqs[o], h)
	return len(r.reqs[o])
}

func (r *recorder) get(o string) []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.reqs[o]...)
}
