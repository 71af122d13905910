package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/job"
)

// LiveLogs is the source of live container output: the agent endpoint keeps a bounded tail
// of the lines its agents streamed (agentws.Handler implements it).
type LiveLogs interface {
	// Follow returns a container's recent lines, then every later line on the channel until
	// cancel is called (or the buffer is dropped, which closes the channel).
	Follow(ctx context.Context, jobID string, container int, buffer int) (tail []agentws.LogLine, lines <-chan agentws.LogLine, cancel func())
}

// eventStream is the media type of server-sent events.
const eventStream = "text/event-stream"

// liveBuffer is how many lines a slow follower may lag behind before it misses lines.
const liveBuffer = 1024

// liveWriteTimeout bounds one write to a follower, so a client that stopped reading cannot
// hold the stream open forever.
const liveWriteTimeout = 30 * time.Second

// CloseStreams ends every live log stream (the clients may reconnect elsewhere); call it
// when the HTTP server shuts down (http.Server.RegisterOnShutdown), whose Shutdown would
// otherwise wait for them. It is idempotent.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

// liveLog serves GET /jobs/{job_id}/log/{container_num}/{stream}/live as server-sent events:
//
//	data: <line>          one event per line of the stream, first the tail, then as they arrive
//	: heartbeat           a comment every LiveLogHeartbeat
//	event: end            once the job is terminal, data {"state": "<state>"}; then the stream ends
//
// A stream that ends without the end event (server shutdown, the buffer dropped) may be
// opened again; the tail is then sent again. Lines live in the memory of the replica the
// container's agent is connected to; a follower on another replica gets them through the
// store, a moment later (see docs/observability.md).
func (s *Server) liveLog(stream string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := s.requireUser(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		p := newParams(r)
		id := p.jobID()
		n := p.integer("path", "container_num", 0, 0, -1)
		if err := p.err(); err != nil {
			s.fail(w, r, err)
			return
		}
		// The job's owner, or any admin.
		ju := jobsUser(u)
		j, err := s.jobs.Records.Get(r.Context(), ju, id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if n >= j.Input.NumContainers {
			s.fail(w, r, ctserr.New(ctserr.CodeIllegalParameter, "Container number %d is out of range for job %s with %d containers", n, j.ID, j.Input.NumContainers))
			return
		}
		if s.cfg.LiveLogs == nil {
			s.fail(w, r, ctserr.New(ctserr.CodeResourceUnavailable, "This service does not keep live logs"))
			return
		}
		tail, lines, cancel := s.cfg.LiveLogs.Follow(r.Context(), j.ID, n, liveBuffer)
		defer cancel()

		h := w.Header()
		h.Set("Content-Type", eventStream)
		h.Set("Cache-Control", "no-store")
		// nginx buffers responses unless told not to.
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		sse := &sseWriter{w: w, rc: rc}
		for _, l := range tail {
			if l.Stream == stream {
				sse.line(l.Text)
			}
		}
		if j.State.Terminal() {
			sse.end(string(j.State))
			return
		}
		if !sse.flush() {
			return
		}
		hb := time.NewTicker(s.cfg.LiveLogHeartbeat)
		defer hb.Stop()
		poll := time.NewTicker(s.cfg.LiveLogPoll)
		defer poll.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-s.closing:
				return
			case l, ok := <-lines:
				if !ok {
					sse.flush()
					return
				}
				if l.Stream == stream {
					sse.line(l.Text)
				}
				if len(lines) == 0 && !sse.flush() {
					return
				}
			case <-hb.C:
				sse.comment("heartbeat")
				if !sse.flush() {
					return
				}
			case <-poll.C:
				cur, err := s.jobs.Records.Get(r.Context(), jobs.User{Name: j.User}, j.ID)
				if err != nil {
					// A store outage: keep streaming; the next poll tries again.
					s.log.WarnContext(r.Context(), "live log: read job state", "job_id", j.ID, "error", err)
					continue
				}
				if cur.State.Terminal() {
					// The agent sends its last lines before its final report: take what has
					// arrived.
					for drained := false; !drained; {
						select {
						case l, ok := <-lines:
							if !ok {
								drained = true
							} else if l.Stream == stream {
								sse.line(l.Text)
							}
						default:
							drained = true
						}
					}
					sse.end(string(cur.State))
					return
				}
			}
		}
	}
}

// sseWriter writes server-sent events; after the first failed write it writes nothing more.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (e *sseWriter) write(s string) {
	if e.err != nil {
		return
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
	_, e.err = e.w.Write([]byte(s))
}

// line writes one log line as an event. A line holding line breaks becomes several data
// fields, which the client joins with "\n"; a lone "\r" would end the field early, so it goes.
func (e *sseWriter) line(text string) {
	var b strings.Builder
	for _, part := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n") {
		b.WriteString("data: ")
		b.WriteString(part)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	e.write(b.String())
}

func (e *sseWriter) comment(c string) { e.write(": " + c + "\n\n") }

func (e *sseWriter) end(state string) {
	b, _ := json.Marshal(wire.LiveEnd{State: job.State(state)})
	e.write("event: end\ndata: " + string(b) + "\n\n")
	e.flush()
}

// flush sends what was written; false once the client is gone.
func (e *sseWriter) flush() bool {
	if e.err == nil {
		_ = e.rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
		e.err = e.rc.Flush()
	}
	return e.err == nil
}
