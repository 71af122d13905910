package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/kbase/cts/shared/checksum"
)

func TestParseContentRange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in           string
		first, total int64
		wantErr      bool
	}{
		{"bytes 0-9/10", 0, 10, false},
		{"bytes 100-199/1000", 100, 1000, false},
		{"bytes 5-9/*", 5, -1, false},
		{"bytes 5-4/10", 0, 0, true},
		{"bytes 10-19/10", 0, 0, true},
		{"items 0-9/10", 0, 0, true},
		{"bytes 0-9", 0, 0, true},
		{"bytes -9/10", 0, 0, true},
		{"", 0, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			first, total, err := parseContentRange(tc.in)
			if (err != nil) != tc.wantErr || (err == nil && (first != tc.first || total != tc.total)) {
				t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, error %v", tc.in, first, total, err, tc.first, tc.total, tc.wantErr)
			}
		})
	}
}

// statusErr builds the error the SDK returns for an HTTP error response.
func statusErr(status int, code string) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: resp, Err: &smithy.GenericAPIError{Code: code}},
	}}
}

func TestTransient(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"500", statusErr(500, "InternalError"), true},
		{"503 slow down", statusErr(503, "SlowDown"), true},
		{"429", statusErr(429, ""), true},
		{"400 request timeout", statusErr(400, "RequestTimeout"), true},
		{"404", statusErr(404, "NoSuchKey"), false},
		{"403", statusErr(403, "AccessDenied"), false},
		{"400 bad digest", statusErr(400, "BadDigest"), false},
		{"400 folder removed under the write", statusErr(400, "ExistingObjectIsDirectory"), true},
		{"400 parent is a file", statusErr(400, "ObjectParentIsFile"), false},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"connection reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"send error", &smithyhttp.RequestSendError{Err: errors.New("dial failed")}, true},
		{"timeout", &net.DNSError{IsTimeout: true}, true},
		{"object changed", fmt.Errorf("%w: etag", errRestart), true},
		{"local disk", &localError{fmt.Errorf("write: %w", syscall.ENOSPC)}, false},
		{"local disk inside a send error", &smithyhttp.RequestSendError{Err: &localError{io.ErrUnexpectedEOF}}, false},
		{"mismatch", &checksum.MismatchError{Path: "b/k", Want: "a", Got: "b"}, false},
		{"size mismatch", &SizeMismatchError{Path: "b/k", Want: 1, Got: 2}, false},
		{"canceled", context.Canceled, false},
		{"other", errors.New("something"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := transient(tc.err); got != tc.want {
				t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestS3Error(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"no such key", statusErr(404, "NoSuchKey"), ErrNotFound},
		{"head 404", statusErr(404, "NotFound"), ErrNotFound},
		{"no such bucket", statusErr(404, "NoSuchBucket"), ErrNotFound},
		{"access denied", statusErr(403, "AccessDenied"), ErrAccessDenied},
		{"bad digest", statusErr(400, "BadDigest"), checksum.ErrMismatch},
		{"minio checksum", statusErr(400, "XAmzContentChecksumMismatch"), checksum.ErrMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s3Error("download", "b/k", tc.err)
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.err) {
				t.Errorf("s3Error = %v, want it to wrap %v and the original", err, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c := New(nil, Config{})
	for n := 1; n <= 40; n++ {
		want := min(backoffBase<<min(n-1, 20), backoffCap)
		for range 50 {
			if d := c.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestPartSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  int64
		size int64
		want int64
	}{
		{"default", 0, 100 << 20, 16 << 20},
		{"raised to the S3 minimum", 1 << 20, 100 << 20, 5 << 20},
		{"raised to fit 10000 parts", 16 << 20, 1 << 40, (1<<40 + 9999) / 10000},
		{"capped at 5 GiB", 8 << 30, 10 << 30, 5 << 30},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New(nil, Config{PartSize: tc.cfg})
			got := c.partSize(tc.size)
			if got != tc.want {
				t.Errorf("partSize(%d) = %d, want %d", tc.size, got, tc.want)
			}
			if (tc.size+got-1)/got > maxParts {
				t.Errorf("%d parts", (tc.size+got-1)/got)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	got := Config{Concurrency: -1, MultipartThreshold: 1 << 40}.withDefaults()
	want := Config{
		Concurrency: DefaultConcurrency, PartSize: DefaultPartSize, MultipartThreshold: maxPartSize,
		PartConcurrency: DefaultPartConcurrency, Retries: DefaultRetries, StallTimeout: DefaultStallTimeout,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
}

func TestWithRetry(t *testing.T) {
	t.Parallel()
	transientErr := io.ErrUnexpectedEOF
	cases := []struct {
		name     string
		results  []error // per attempt; attempts past the end succeed
		progress bool
		wantN    int
		wantErr  bool
	}{
		{"success", nil, false, 1, false},
		{"two transient failures", []error{transientErr, transientErr}, false, 3, false},
		{"permanent failure", []error{errors.New("bad")}, false, 1, true},
		{"out of attempts", []error{transientErr, transientErr, transientErr, transientErr}, false, 3, true},
		{"progress resets the count", []error{transientErr, transientErr, transientErr, transientErr}, true, 5, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New(nil, Config{Retries: 3})
			c.backoffBase, c.backoffCap = time.Microsecond, time.Microsecond
			n := 0
			err := c.withRetry(t.Context(), func(context.Context, func()) (bool, error) {
				n++
				if n <= len(tc.results) {
					return tc.progress, tc.results[n-1]
				}
				return true, nil
			})
			if n != tc.wantN || (err != nil) != tc.wantErr {
				t.Errorf("attempts %d, err %v; want %d attempts, error %v", n, err, tc.wantN, tc.wantErr)
			}
		})
	}
	t.Run("stall", func(t *testing.T) {
		c := New(nil, Config{Retries: 2, StallTimeout: time.Hour})
		c.backoffBase, c.backoffCap = time.Microsecond, time.Microsecond
		timers := &fakeTimers{}
		c.afterFunc = timers.afterFunc
		n := 0
		err := c.withRetry(t.Context(), func(ctx context.Context, kick func()) (bool, error) {
			n++
			if n == 1 {
				timers.fireAll() // the watchdog's time passes without a kick: it must cancel us
				<-ctx.Done()
				return false, errors.New("read canceled")
			}
			for range 5 { // kicking re-arms the watchdog of a slow attempt
				kick()
			}
			return true, ctx.Err()
		})
		if err != nil || n != 2 {
			t.Errorf("attempts %d, err %v; want success on the second", n, err)
		}
		if got := timers.resets(); got != 5 {
			t.Errorf("the second attempt re-armed its watchdog %d times, want 5", got)
		}
	})
	t.Run("stall on the last attempt names the stall", func(t *testing.T) {
		c := New(nil, Config{Retries: 1, StallTimeout: time.Hour})
		timers := &fakeTimers{}
		c.afterFunc = timers.afterFunc
		err := c.withRetry(t.Context(), func(ctx context.Context, kick func()) (bool, error) {
			timers.fireAll()
			<-ctx.Done()
			return false, errors.New("read canceled")
		})
		if !errors.Is(err, errStalled) {
			t.Errorf("err %v, want errStalled", err)
		}
	})
}

// fakeTimers replaces the stall watchdog's clock: a timer fires only when the test says so.
type fakeTimers struct {
	mu     sync.Mutex
	timers []*fakeTimer
}

type fakeTimer struct {
	mu      sync.Mutex
	f       func()
	stopped bool
	resets  int
}

func (ft *fakeTimers) afterFunc(_ time.Duration, f func()) watchdog {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{f: f}
	ft.timers = append(ft.timers, t)
	return t
}

// fireAll fires every armed timer, as if its whole timeout had passed.
func (ft *fakeTimers) fireAll() {
	ft.mu.Lock()
	ts := append([]*fakeTimer(nil), ft.timers...)
	ft.mu.Unlock()
	for _, t := range ts {
		t.mu.Lock()
		fire := !t.stopped
		t.stopped = true
		t.mu.Unlock()
		if fire {
			t.f()
		}
	}
}

// resets counts the Reset calls of every timer.
func (ft *fakeTimers) resets() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	n := 0
	for _, t := range ft.timers {
		t.mu.Lock()
		n += t.resets
		t.mu.Unlock()
	}
	return n
}

func (t *fakeTimer) Reset(time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resets++
	was := !t.stopped
	t.stopped = false
	return was
}

func (t *fakeTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}
