package transfer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/kbase/cts/shared/checksum"
)

// errStalled is the cause given to an attempt's context when its stream moved no byte for
// Config.StallTimeout. It is transient: the attempt is retried (and a download resumes).
var errStalled = errors.New("transfer stalled")

// errRestart marks an attempt abandoned because the object changed under a download; the
// next attempt starts again from byte 0.
var errRestart = errors.New("object changed during download, restarting")

// localError wraps a failure of the local disk (write, sync, read of a source file). It is
// never retried: the next attempt would fail the same way.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// attemptFunc is one try of a data stream. ctx is the attempt's context (canceled with
// errStalled by the watchdog); kick must be called whenever bytes move. It reports whether it
// made durable progress, which resets the failure count.
type attemptFunc func(ctx context.Context, kick func()) (progressed bool, err error)

// withRetry runs op until it succeeds, fails permanently, ctx ends, or Config.Retries
// consecutive attempts without progress failed. Each attempt runs under a stall watchdog.
func (c *Client) withRetry(ctx context.Context, op attemptFunc) error {
	failures := 0
	for {
		actx, cancel := context.WithCancelCause(ctx)
		timer := c.afterFunc(c.cfg.StallTimeout, func() { cancel(errStalled) })
		progressed, err := op(actx, func() { timer.Reset(c.cfg.StallTimeout) })
		timer.Stop()
		stalled := errors.Is(context.Cause(actx), errStalled)
		cancel(nil)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctxErr(ctx)
		}
		switch {
		case stalled:
			err = fmt.Errorf("%w after %v: %w", errStalled, c.cfg.StallTimeout, err)
		case !transient(err):
			return err
		}
		if progressed {
			failures = 0
		}
		failures++
		if failures >= c.cfg.Retries {
			return fmt.Errorf("giving up after %d attempts: %w", failures, err)
		}
		if err := sleep(ctx, c.backoff(failures)); err != nil {
			return err
		}
	}
}

// backoff returns the wait before attempt n+1 after n failures: backoffBase·2^(n-1), capped
// at backoffCap, with "equal jitter" (uniform in [d/2, d]) so parallel transfers that failed
// together do not retry in lockstep.
func (c *Client) backoff(n int) time.Duration {
	d := c.backoffCap
	if n < 32 {
		if e := c.backoffBase << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-t.C:
		return nil
	}
}

// httpStatus returns the HTTP status of an S3 error response, or 0 if err carries none.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// apiCode returns the S3 error code (e.g. "NoSuchKey", "SlowDown"), or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// transient reports whether err is worth another attempt: 5xx, throttling and request
// timeouts from S3, and network failures (reset, refused, unexpected EOF, timeouts). Local
// disk errors, certificate errors, our own mismatch errors and other 4xx are permanent.
func transient(err error) bool {
	var le *localError
	if errors.As(err, &le) {
		return false
	}
	if errors.Is(err, errRestart) {
		return true
	}
	code := apiCode(err)
	if _, ok := retry.DefaultThrottleErrorCodes[code]; ok {
		return true
	}
	if _, ok := retry.DefaultRetryableErrorCodes[code]; ok {
		return true
	}
	switch code {
	case "InternalError", "ServiceUnavailable":
		return true
	case "ExistingObjectIsDirectory":
		// A gateway that keeps objects as files (versitygw's posix backend) answers so when
		// another request's delete removed the (then empty) folder this write had just made:
		// the next attempt makes it again. A key that really names a folder is refused on
		// every attempt and the transfer fails after Config.Retries.
		return true
	}
	if s := httpStatus(err); s != 0 {
		return s >= 500 || s == 408 || s == 429
	}
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true // any other network-level failure: timeouts, DNS hiccups, closed conns
	}
	var rse interface{ ConnectionError() bool }
	return errors.As(err, &rse) && rse.ConnectionError()
}

// s3Error names the S3 path and maps the S3 error onto this package's sentinels (and
// checksum.ErrMismatch for a checksum the server refused).
func s3Error(op, path string, err error) error {
	switch code, status := apiCode(err), httpStatus(err); {
	case code == "NoSuchKey" || code == "NoSuchBucket" || code == "NotFound" || status == 404:
		return fmt.Errorf("%s %s: %w: %w", op, path, ErrNotFound, err)
	case code == "AccessDenied" || status == 403:
		return fmt.Errorf("%s %s: %w: %w", op, path, ErrAccessDenied, err)
	case code == "BadDigest" || code == "XAmzContentChecksumMismatch" || code == "InvalidDigest":
		// The server refused bytes that did not match the CRC we computed and sent.
		return fmt.Errorf("%s %s: %w: %w", op, path, checksum.ErrMismatch, err)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}
