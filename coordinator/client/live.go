package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// LiveFollower follows a container log through the live route
// (GET /jobs/{id}/log/{n}/{stream}/live, server-sent events) and falls back to a PollFollower
// where that route is missing.
//
// What the writer receives, and why (the live lines are best effort: the agent rate-limits
// them and truncates long ones, a slow reader misses some, and only the coordinator replica
// the agent is connected to has them; the stored log, uploaded when the container ends, is
// the complete record):
//
//   - Live lines are written as they arrive, each followed by "\n": first the recent lines
//     the coordinator keeps (like tail -f), then each new line.
//   - When the job ends (the "end" event) and no live line was written, the stored log is
//     written whole, so a job followed after it ended (or on a replica without its lines)
//     prints exactly what cts logs prints.
//   - When live lines were written, the stored log is not written: the live view cannot be
//     lined up with it byte for byte, and writing it would repeat lines. Notice is called
//     instead, so the caller can point at the complete log.
//   - A stream that drops while the job runs is opened again. The coordinator then sends its
//     recent lines again: the follower writes only the lines after those it already wrote,
//     and only when exactly one overlap with the lines it wrote fits, at least 8 lines long
//     (or all of them, when fewer were written). Otherwise it writes no more live lines,
//     calls Notice, and waits for the end.
//
// A line is therefore never written twice, and a line the live view did not show is either
// written from the stored log or announced through Notice.
type LiveFollower struct {
	Client *Client
	// Backoff paces reconnections and the status polls of the fallbacks (zero: 0.5 s to 5 s).
	Backoff Backoff
	// Tolerate is how long failed connections are retried before Follow gives up (default 30 s).
	Tolerate time.Duration
	// IdleTimeout is how long a stream may stay silent (the service sends a heartbeat every
	// 15 s) before it is taken as dropped and opened again (default 45 s).
	IdleTimeout time.Duration
	// Notice, when set, is told what the writer did not get: live lines were shown (so the
	// stored log was not), or the live view stopped after a reconnection.
	Notice func(msg string)
}

var _ LogFollower = (*LiveFollower)(nil)

// minOverlap is the fewest lines a reopened stream must repeat (when that many were written)
// for the follower to resume there: a shorter repeat (a blank line) may be a coincidence.
const minOverlap = 8

// historyLines bounds how many written lines are remembered to line up a reopened stream
// with (the service keeps 1000 recent lines per container by default).
const historyLines = 4096

// Notices of a LiveFollower.
const (
	NoticeLiveShown   = "the lines shown are the live view (best effort: lines may be missing or truncated)"
	NoticeLiveStopped = "the live stream was interrupted and could not be resumed exactly: live lines stopped there"
)

// errRouteMissing marks a live route the service does not serve.
var errRouteMissing = errors.New("live log route not served")

// liveState is what one Follow has written so far.
type liveState struct {
	w io.Writer
	// shown counts written live lines; history holds the hashes of the last historyLines.
	shown   int
	history []uint64
	// quiet: live lines are no longer written (an inexact reconnection).
	quiet bool
	// align is non-nil while a reopened stream is lined up with history.
	align *aligner
}

func lineHash(s string) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, s)
	return h.Sum64()
}

// line handles one live line.
func (s *liveState) line(text string) error {
	if s.quiet {
		return nil
	}
	if s.align != nil {
		out, done, ok := s.align.add(lineHash(text), text)
		if !done {
			return nil
		}
		s.align = nil
		if !ok {
			s.quiet = true
			return nil
		}
		for _, t := range out {
			if err := s.write(t); err != nil {
				return err
			}
		}
		return nil
	}
	return s.write(text)
}

func (s *liveState) write(text string) error {
	if _, err := io.WriteString(s.w, text+"\n"); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	s.shown++
	s.history = append(s.history, lineHash(text))
	if len(s.history) > 2*historyLines {
		s.history = append(s.history[:0], s.history[len(s.history)-historyLines:]...)
	}
	return nil
}

// streamEnd settles a reopened stream that ended before its overlap was known.
func (s *liveState) streamEnd() {
	if s.align != nil {
		s.align, s.quiet = nil, true
	}
}

// aligner lines up a reopened stream with the lines already written: the stream starts with
// the coordinator's recent lines, some of which (the last m written) were shown already. A
// candidate m survives while the stream's first lines equal the last m written; when every
// surviving candidate has been checked through, exactly one must remain.
type aligner struct {
	history []uint64
	cands   []int // surviving overlaps m ≥ 1
	got     []string
	hashes  []uint64
}

func newAligner(history []uint64) *aligner {
	h := history
	if len(h) > historyLines {
		h = h[len(h)-historyLines:]
	}
	a := &aligner{history: h}
	for m := min(minOverlap, len(h)); m <= len(h); m++ {
		a.cands = append(a.cands, m)
	}
	return a
}

// add takes the stream's next line. done reports that the overlap is settled; then ok says
// whether it was unique, and out holds the received lines after it.
func (a *aligner) add(h uint64, text string) (out []string, done, ok bool) {
	i := len(a.got)
	a.got, a.hashes = append(a.got, text), append(a.hashes, h)
	keep := a.cands[:0]
	for _, m := range a.cands {
		if i >= m || a.history[len(a.history)-m+i] == h {
			keep = append(keep, m)
		}
	}
	a.cands = keep
	if len(a.cands) == 0 {
		return nil, true, false
	}
	if a.cands[len(a.cands)-1] > len(a.got) {
		return nil, false, false // a longer overlap is still possible
	}
	if len(a.cands) != 1 {
		return nil, true, false
	}
	return a.got[a.cands[0]:], true, true
}

// Follow implements LogFollower. A request with Seek or Length set is served by polling.
func (f *LiveFollower) Follow(ctx context.Context, r LogRequest, w io.Writer) error {
	if r.Stream == "" {
		r.Stream = Stdout
	}
	if r.Stream != Stdout && r.Stream != Stderr {
		return fmt.Errorf("log stream %q: want stdout or stderr", r.Stream)
	}
	poll := &PollFollower{Client: f.Client, Backoff: f.Backoff, Tolerate: f.Tolerate}
	if r.Seek != 0 || r.Length != 0 {
		return poll.Follow(ctx, r, w)
	}
	bo := f.Backoff.withDefaults()
	tol := retrier{window: f.Tolerate}
	st := &liveState{w: w}
	connected := false
	for {
		ended, err := f.stream(ctx, r, st, func() { connected = true; tol.ok() })
		switch {
		case ended:
			return f.finish(ctx, r, st, poll)
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errRouteMissing) || !connected && errors.Is(err, ErrUnreachable):
			if st.shown == 0 {
				return poll.Follow(ctx, r, w) // an older service, or no live logs here
			}
			// Live lines were shown: wait for the end, then settle as after an end event.
			st.quiet = true
			if _, err := f.Client.Wait(ctx, r.JobID, WaitOptions{Backoff: f.Backoff, Tolerate: f.Tolerate}); err != nil {
				return err
			}
			return f.finish(ctx, r, st, poll)
		case err != nil && !transient(err) && !errors.Is(err, errDropped):
			return err
		case err != nil && !errors.Is(err, errDropped) && !tol.retry(err):
			return err
		}
		// Dropped while the job runs: open it again, lining the recent lines up.
		if st.shown > 0 && !st.quiet {
			st.align = newAligner(st.history)
		}
		if err := sleep(ctx, bo.next(false)); err != nil {
			return err
		}
	}
}

// errDropped marks a stream that ended without its end event.
var errDropped = errors.New("live log stream dropped")

// finish settles a followed log once the job has ended.
func (f *LiveFollower) finish(ctx context.Context, r LogRequest, st *liveState, poll *PollFollower) error {
	if st.shown == 0 {
		return poll.Follow(ctx, r, st.w) // the job is terminal: one fetch of the stored log
	}
	if f.Notice != nil {
		if st.quiet {
			f.Notice(NoticeLiveStopped)
		} else {
			f.Notice(NoticeLiveShown)
		}
	}
	return nil
}

// stream reads one connection of the live route into st; ended reports the end event.
// connected is called once the service accepted the stream.
func (f *LiveFollower) stream(ctx context.Context, r LogRequest, st *liveState, connected func()) (ended bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	path := fmt.Sprintf("%s/log/%d/%s/live", jobPath("", r.JobID), r.Container, r.Stream)
	resp, err := f.Client.sendAccept(sctx, http.MethodGet, path, nil, nil, eventStream)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && liveMissing(ae) {
			return false, fmt.Errorf("%w: %w", errRouteMissing, err)
		}
		return false, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != eventStream {
		return false, fmt.Errorf("%w: GET %s answered %q", errRouteMissing, path, mt)
	}
	connected()
	idle := f.IdleTimeout
	if idle <= 0 {
		idle = 45 * time.Second
	}
	timer := time.AfterFunc(idle, cancel)
	defer timer.Stop()
	defer st.streamEnd()
	br := bufio.NewReader(resp.Body)
	var event string
	var data []string
	for {
		raw, err := br.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, errDropped // EOF, a reset, or the idle timeout
		}
		timer.Reset(idle)
		line := strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
		if line == "" { // dispatch
			if data != nil {
				text := strings.Join(data, "\n")
				switch event {
				case "", "message":
					if err := st.line(text); err != nil {
						return false, err
					}
				case "end": // its data, {"state": ...}, is not needed: finish reads the log
					st.streamEnd()
					return true, nil
				}
			}
			event, data = "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: the heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data = append(data, value)
		case "event":
			event = value
		}
	}
}

// eventStream is the media type of server-sent events.
const eventStream = "text/event-stream"

// liveMissing reports the answers of a service without the live route (404 or 405 from its
// router) or without live logs (400 / 60000, resource unavailable).
func liveMissing(ae *APIError) bool {
	switch {
	case ae.StatusCode == http.StatusMethodNotAllowed:
		return true
	case ae.StatusCode == http.StatusNotFound:
		return ae.AppCode == 0 || ae.AppCode == CodeNotFound
	}
	return ae.AppCode == CodeResourceUnavailable
}
