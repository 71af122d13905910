package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Stream names a container log.
type Stream string

// The two container logs.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// LogRequest selects a container log and, optionally, a byte range of it.
type LogRequest struct {
	JobID     string
	Container int
	Stream    Stream
	// Seek skips that many bytes; Length (when > 0) bounds how many are returned.
	Seek, Length int64
}

// Log returns GET /jobs/{id}/log/{n}/{stdout|stderr}; the caller closes the reader. A job whose
// logs are not (yet) stored gives an *APIError with CodeNoLogs.
func (c *Client) Log(ctx context.Context, r LogRequest) (io.ReadCloser, error) {
	if r.Stream == "" {
		r.Stream = Stdout
	}
	if r.Stream != Stdout && r.Stream != Stderr {
		return nil, fmt.Errorf("log stream %q: want stdout or stderr", r.Stream)
	}
	q := url.Values{}
	if r.Seek > 0 {
		q.Set("seek", strconv.FormatInt(r.Seek, 10))
	}
	if r.Length > 0 {
		q.Set("length", strconv.FormatInt(r.Length, 10))
	}
	path := fmt.Sprintf("%s/log/%d/%s", jobPath("", r.JobID), r.Container, r.Stream)
	resp, err := c.send(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return nil, err
	}
	return &transportReader{rc: resp.Body, ctx: ctx, c: c, path: path}, nil
}

// transportReader marks failures while reading the body as transport failures.
type transportReader struct {
	rc   io.ReadCloser
	ctx  context.Context
	c    *Client
	path string
}

func (t *transportReader) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if err != nil && err != io.EOF {
		err = t.c.transportError(t.ctx, http.MethodGet, t.path, err)
	}
	return n, err
}

func (t *transportReader) Close() error { return t.rc.Close() }

// LogFollower copies a container log to w as it grows, and returns once the job has ended and
// everything of the log has been written. Implementations differ in where the bytes come from
// (polling the log route, or a live stream); callers hold the interface so the source can be
// swapped.
type LogFollower interface {
	// Follow returns nil after the whole log of a job that has ended was written; an *APIError
	// when the job has ended without such a log, or the job or container does not exist; an
	// error wrapping ctx.Err() when ctx ends first.
	Follow(ctx context.Context, r LogRequest, w io.Writer) error
}

// PollFollower follows a log by fetching it repeatedly from the byte offset already written
// (seek), until the job is terminal. The logs route serves a log once the container's agent
// has stored it, so this shows a log no later than when it is stored.
type PollFollower struct {
	Client *Client
	// Backoff paces the polls (zero: 0.5 s growing to 5 s, reset when bytes arrive).
	Backoff Backoff
	// Tolerate is how long unanswered requests (ErrUnreachable, HTTP 5xx without app code) are
	// retried before Follow gives up (default 30 s).
	Tolerate time.Duration
}

var _ LogFollower = (*PollFollower)(nil)

// Follow implements LogFollower.
func (f *PollFollower) Follow(ctx context.Context, r LogRequest, w io.Writer) error {
	bo := f.Backoff.withDefaults()
	tol := retrier{window: f.Tolerate}
	seen := r.Seek
	for {
		st, err := f.Client.Status(ctx, r.JobID)
		if err != nil {
			if !tol.retry(err) {
				return err
			}
			if err := sleep(ctx, bo.next(false)); err != nil {
				return err
			}
			continue
		}
		// The state is read before the log: a log fetched after a terminal state is complete.
		terminal := st.State.Terminal()
		n, err := f.fetch(ctx, r, seen, w)
		seen += n
		if err != nil && !noNewBytes(err) {
			if !tol.retry(err) {
				return err
			}
		} else {
			tol.ok()
			if terminal {
				if isNoLogs(err) && seen == 0 {
					return err // the job ended without this log
				}
				return nil
			}
		}
		if err := sleep(ctx, bo.next(n > 0)); err != nil {
			return err
		}
	}
}

// fetch copies the log from seek to w and returns how many bytes it wrote.
func (f *PollFollower) fetch(ctx context.Context, r LogRequest, seek int64, w io.Writer) (int64, error) {
	r.Seek, r.Length = seek, 0
	rc, err := f.Client.Log(ctx, r)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(w, rc)
}

func isNoLogs(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.AppCode == CodeNoLogs
}

// noNewBytes reports the answers that mean "nothing (new) to show yet": no log stored, or a
// seek at the end of the log.
func noNewBytes(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	return ae.AppCode == CodeNoLogs ||
		ae.AppCode == CodeIllegalParameter && strings.HasPrefix(ae.Message, "Seek parameter")
}

// Backoff is a polling interval that starts at Min, grows by Factor while nothing changes, is
// capped at Max, and returns to Min on a change.
type Backoff struct {
	Min, Max time.Duration
	Factor   float64
	cur      time.Duration
}

func (b Backoff) withDefaults() *Backoff {
	if b.Min <= 0 {
		b.Min = 500 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = 5 * time.Second
		if b.Max < b.Min {
			b.Max = b.Min
		}
	}
	if b.Factor <= 1 {
		b.Factor = 1.5
	}
	return &b
}

// next returns the interval to wait before the next poll; changed says the last poll saw
// something new.
func (b *Backoff) next(changed bool) time.Duration {
	if changed || b.cur == 0 {
		b.cur = b.Min
		return b.cur
	}
	b.cur = min(time.Duration(float64(b.cur)*b.Factor), b.Max)
	return b.cur
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retrier decides whether a failed poll is retried: failures without an answer from the
// service (or 5xx answers without an app code, from a proxy or a restarting service) are
// retried until they have lasted window.
type retrier struct {
	window time.Duration
	since  time.Time
}

func (r *retrier) retry(err error) bool {
	if !transient(err) {
		return false
	}
	w := r.window
	if w <= 0 {
		w = 30 * time.Second
	}
	if r.since.IsZero() {
		r.since = time.Now()
	}
	return time.Since(r.since) < w
}

func (r *retrier) ok() { r.since = time.Time{} }

func transient(err error) bool {
	if errors.Is(err, ErrUnreachable) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && ae.AppCode == 0 && ae.StatusCode >= 500
}
