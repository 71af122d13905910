// Package transfer owns the data path to and from S3 of the agent (job inputs and outputs)
// and of the cts CLI (`cts cp`): streaming, CRC64/NVME-verified downloads and uploads, with
// bounded memory whatever the file size, retries with backoff for transient failures
// (downloads resume with a Range request, and across runs with Download.Resume), and
// multipart uploads that never leave a partial object behind.
//
// Integrity rules:
//   - A download is written to Dest+".part", its CRC64/NVME is computed while streaming and
//     compared with the expected value; only a verified, fsynced file is renamed to Dest. A
//     wrong object yields a *checksum.MismatchError (or *SizeMismatchError) and leaves no file.
//   - An upload hands S3 a CRC64/NVME computed here (never by the SDK, whose CRC code is ~40x
//     slower), so the server refuses any byte that changed on the way; multipart uploads use a
//     FULL_OBJECT checksum that is checked again after completion with HeadObject.
//
// The package must not decide what to transfer or where (its callers do), must not
// log (errors are returned, progress goes to Config.OnProgress) and must not buffer whole
// files or parts in memory: a transfer (or part) in flight holds one pooled 1 MiB buffer
// besides the HTTP client's own small ones.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/shared/checksum"
)

// Defaults for the zero fields of Config.
const (
	DefaultConcurrency        = 10
	DefaultPartSize           = 16 << 20
	DefaultMultipartThreshold = 8 << 20
	DefaultPartConcurrency    = 4
	DefaultRetries            = 5
	DefaultStallTimeout       = 2 * time.Minute
)

// S3 limits on multipart uploads.
const (
	minPartSize = 5 << 20
	maxPartSize = 5 << 30
	maxParts    = 10000
)

// Backoff between attempts: exponential from backoffBase, capped at backoffCap, jittered.
const (
	backoffBase = 200 * time.Millisecond
	backoffCap  = 10 * time.Second
)

// bufSize is the size of the pooled copy buffer (one per transfer or part in flight) and the
// granularity of OnProgress calls.
const bufSize = 1 << 20

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, bufSize)
	return &b
}}

// Errors callers can branch on with errors.Is. Checksum and size mismatches match
// checksum.ErrMismatch.
var (
	// ErrNotFound: the S3 object (or its bucket) does not exist. Not retried.
	ErrNotFound = errors.New("s3 object not found")
	// ErrAccessDenied: the credentials may not read or write the S3 path. Not retried.
	ErrAccessDenied = errors.New("s3 access denied")
	// ErrSourceChanged: a local file changed (size or modification time) while it was being
	// uploaded. The partial or torn object has been removed.
	ErrSourceChanged = errors.New("source file changed during upload")
	// ErrInvalid: a transfer request is malformed (bad S3 path, bad checksum, duplicate
	// destination, directory as a source, file too large for S3).
	ErrInvalid = errors.New("invalid transfer request")
)

// Config tunes a Client. Zero fields take the Default* values.
type Config struct {
	// Concurrency is the number of files DownloadAll and UploadAll move in parallel.
	Concurrency int
	// PartSize is the multipart part size. It is raised to at least
	// max(5 MiB, ceil(size/10000)) for each file.
	PartSize int64
	// MultipartThreshold is the largest file uploaded with a single PutObject.
	MultipartThreshold int64
	// PartConcurrency is the number of parts of one file uploaded in parallel.
	PartConcurrency int
	// Retries is the number of attempts for a transient failure (5xx, throttling, connection
	// reset, unexpected EOF, timeout), with exponential backoff (200 ms base, 10 s cap) and
	// jitter. A download attempt that moved at least 1 MiB before failing resets the count.
	Retries int
	// StallTimeout aborts (and retries) a data stream that moved no byte for this long.
	StallTimeout time.Duration
	// OnProgress, if set, is called with an S3 path and the number of bytes of that file
	// transferred so far: at most about once per MiB (downloads) or per part (multipart
	// uploads), the last call with the file's full size. A download that restarts reports
	// from 0 again. It is called from several goroutines at once and must be fast and safe
	// for concurrent use.
	OnProgress func(path string, bytes int64)
}

// withDefaults returns c with every zero or invalid field set to its default.
func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PartSize <= 0 {
		c.PartSize = DefaultPartSize
	}
	if c.MultipartThreshold <= 0 {
		c.MultipartThreshold = DefaultMultipartThreshold
	}
	if c.MultipartThreshold > maxPartSize {
		c.MultipartThreshold = maxPartSize // a single PUT cannot exceed 5 GiB
	}
	if c.PartConcurrency <= 0 {
		c.PartConcurrency = DefaultPartConcurrency
	}
	if c.Retries <= 0 {
		c.Retries = DefaultRetries
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	return c
}

// Client moves files between the local disk and S3. It is safe for concurrent use.
type Client struct {
	s3  *s3.Client
	cfg Config
	// backoffBase and backoffCap are fields so tests can shorten the waits.
	backoffBase time.Duration
	backoffCap  time.Duration
	// afterFunc arms an attempt's stall watchdog (time.AfterFunc); tests replace it with a
	// timer they fire themselves, so no test depends on how fast a loaded machine runs.
	afterFunc func(d time.Duration, f func()) watchdog
}

// watchdog is the part of *time.Timer the stall watchdog uses.
type watchdog interface {
	Reset(d time.Duration) bool
	Stop() bool
}

func realAfterFunc(d time.Duration, f func()) watchdog { return time.AfterFunc(d, f) }

// New returns a Client that uses s3c (see NewS3Client) with cfg (zero fields default).
func New(s3c *s3.Client, cfg Config) *Client {
	return &Client{s3: s3c, cfg: cfg.withDefaults(), backoffBase: backoffBase, backoffCap: backoffCap, afterFunc: realAfterFunc}
}

// splitPath splits "bucket/key" into its parts. Full validation of S3 paths belongs to the
// coordinator; this only refuses what cannot be addressed at all.
func splitPath(p string) (bucket, key string, err error) {
	bucket, key, ok := strings.Cut(p, "/")
	if !ok || bucket == "" || key == "" {
		return "", "", fmt.Errorf("%w: s3 path %q must be bucket/key", ErrInvalid, p)
	}
	return bucket, key, nil
}

// SizeMismatchError reports an S3 object whose size differs from the recorded one.
// errors.Is(err, checksum.ErrMismatch) is true for it: the object is not the one recorded.
type SizeMismatchError struct {
	Path string
	Want int64
	Got  int64
}

// Error returns "size mismatch for <path>: expected <want> bytes, got <got>".
func (e *SizeMismatchError) Error() string {
	return fmt.Sprintf("size mismatch for %s: expected %d bytes, got %d", e.Path, e.Want, e.Got)
}

// Is makes errors.Is(err, checksum.ErrMismatch) true.
func (e *SizeMismatchError) Is(target error) bool { return target == checksum.ErrMismatch }

// progress reports n bytes of path to OnProgress, if set.
func (c *Client) progress(path string, n int64) {
	if c.cfg.OnProgress != nil {
		c.cfg.OnProgress(path, n)
	}
}

// partSize returns the multipart part size for a file of size bytes.
func (c *Client) partSize(size int64) int64 {
	ps := max(c.cfg.PartSize, minPartSize, (size+maxParts-1)/maxParts)
	return min(ps, maxPartSize)
}

// ctxErr returns the reason ctx is done: its cause if one was given, else ctx.Err().
func ctxErr(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return ctx.Err()
}
