package api_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/api"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// fakeObserver records what the API reports of each request (api.Observer is this package's
// interface).
type fakeObserver struct {
	mu   sync.Mutex
	seen []observed
}

type observed struct {
	route, method string
	status        int
	streaming     bool
}

func (o *fakeObserver) ObserveRequest(route, method string, status int, _ time.Duration, streaming bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, observed{route, method, status, streaming})
}

func (o *fakeObserver) find(route, method string) (observed, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.seen) - 1; i >= 0; i-- {
		if o.seen[i].route == route && o.seen[i].method == method {
			return o.seen[i], true
		}
	}
	return observed{}, false
}

// agent connects to the fixture's agent endpoint as container n of job id.
func (f *fixture) agent(t *testing.T, id string, n int) *websocket.Conn {
	t.Helper()
	url := "ws" + strings.TrimPrefix(f.url, "http") + protocol.Path
	c, resp, err := websocket.DefaultDialer.DialContext(t.Context(), url, http.Header{"Authorization": {f.agentAuth(id, n)}})
	if err != nil {
		t.Fatalf("dial agent endpoint: %v (%v)", err, resp)
	}
	t.Cleanup(func() { _ = c.Close() })
	wsSend(t, c, protocol.Hello{JobID: id, Container: n, Attempt: "1.0", AgentVersion: "test"})
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read assignment: %v", err)
	}
	if m, err := protocol.Decode(frame); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*protocol.Assignment); !ok {
		t.Fatalf("got %T %s, want an assignment", m, frame)
	}
	return c
}

// agentAuth is the Authorization header of container n of job id's agent: its launch
// credential for the first launch.
func (f *fixture) agentAuth(id string, n int) string {
	return "Bearer " + f.keys.Mint(agentcred.Claims{Kind: agentcred.KindLaunch, JobID: id, Container: n,
		Expires: time.Now().Add(time.Hour).Unix()})
}

func wsSend(t *testing.T, c *websocket.Conn, body any) {
	t.Helper()
	b, err := protocol.Encode(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

// sseEvent is one server-sent event or comment.
type sseEvent struct {
	event, data, comment string
}

// stream reads server-sent events from a response body.
type stream struct {
	t      *testing.T
	events chan sseEvent
	done   chan error
}

func openStream(t *testing.T, f *fixture, path, authz string) (*http.Response, *stream) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authz)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	s := &stream{t: t, events: make(chan sseEvent, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				ev.data = strings.Join(data, "\n")
				s.events <- ev
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ": "):
				s.events <- sseEvent{comment: strings.TrimPrefix(line, ": ")}
				_ = sc.Scan() // the blank line closing the comment
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
		s.done <- sc.Err()
		close(s.events)
	}()
	return resp, s
}

// next returns the next event that is not a heartbeat.
func (s *stream) next() sseEvent {
	s.t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatal("the stream ended")
			}
			if ev.comment == "heartbeat" {
				continue
			}
			return ev
		case <-time.After(5 * time.Second):
			s.t.Fatal("no event within 5 s")
		}
	}
}

func (s *stream) wantEnded() {
	s.t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("stream read: %v", err)
		}
	case <-time.After(5 * time.Second):
		s.t.Fatal("the stream did not end")
	}
}

// waitTail waits until the agent endpoint holds n lines of job id's container 0.
func (f *fixture) waitTail(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(f.live.Tail(id, 0)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the agent endpoint holds %d lines, want %d", len(f.live.Tail(id, 0)), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLiveLogs follows a container's output through a real agent websocket session: the tail
// first, then lines as the agent sends them, heartbeats, and the end event when the job ends.
func TestLiveLogs(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, alice)
	c := f.agent(t, id, 0)
	wsSend(t, c, protocol.Log{Stream: "stdout", Lines: []string{"early 1", "early 2"}})
	wsSend(t, c, protocol.Log{Stream: "stderr", Lines: []string{"an error line"}})
	f.waitTail(t, id, 3)

	resp, out := openStream(t, f, "/jobs/"+id+"/log/0/stdout/live", alice)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("live = %d %v", resp.StatusCode, resp.Header)
	}
	// The admin follows any job; the same lines, of the other stream.
	_, errs := openStream(t, f, "/jobs/"+id+"/log/0/stderr/live", root)
	for _, want := range []string{"early 1", "early 2"} {
		if ev := out.next(); ev.data != want || ev.event != "" {
			t.Fatalf("event %+v, want the tail line %q", ev, want)
		}
	}
	if ev := errs.next(); ev.data != "an error line" {
		t.Fatalf("stderr event %+v", ev)
	}
	wsSend(t, c, protocol.Log{Stream: "stdout", Lines: []string{"live", "two\nparts\r"}})
	if ev := out.next(); ev.data != "live" {
		t.Fatalf("event %+v, want the live line", ev)
	}
	if ev := out.next(); ev.data != "two\nparts" {
		t.Fatalf("event %q, want a line with a break kept whole", ev.data)
	}
	// Heartbeats keep idle proxies from closing the stream.
	deadline := time.After(5 * time.Second)
	for heard := false; !heard; {
		select {
		case ev := <-out.events:
			heard = ev.comment == "heartbeat"
		case <-deadline:
			t.Fatal("no heartbeat")
		}
	}
	if o, ok := f.obs.find("/jobs/{job_id}/log/{container_num}/stderr/live", "GET"); ok {
		t.Fatalf("an open stream was already observed: %+v", o)
	}
	// The job ends: the streams send the end event and close.
	if _, err := f.st.TransitionJob(t.Context(), id, []job.State{job.Created}, jobs.Transition{State: job.Error, Time: time.Now()},
		jobs.JobUpdate{Error: "e", AdminError: "ae"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*stream{out, errs} {
		if ev := s.next(); ev.event != "end" || ev.data != `{"state":"error"}` {
			t.Fatalf("event %+v, want the end event", ev)
		}
		s.wantEnded()
	}
	// A stream on a job that has ended sends the tail and the end event at once.
	_, ended := openStream(t, f, "/jobs/"+id+"/log/0/stdout/live", alice)
	for _, want := range []string{"early 1", "early 2", "live", "two\nparts"} {
		if ev := ended.next(); ev.data != want {
			t.Fatalf("event %+v, want %q", ev, want)
		}
	}
	if ev := ended.next(); ev.event != "end" {
		t.Fatalf("event %+v, want the end", ev)
	}
	ended.wantEnded()
	deadline = time.After(5 * time.Second)
	for {
		o, ok := f.obs.find("/jobs/{job_id}/log/{container_num}/stderr/live", "GET")
		if ok {
			if o.status != 200 || !o.streaming {
				t.Fatalf("observed %+v, want a 200 stream", o)
			}
			break
		}
		select {
		case <-deadline:
			t.Fatal("the stream was not observed")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestLiveLogsRefusals(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, alice)
	live := "/jobs/" + id + "/log/0/stdout/live"
	f.wantError(t, "GET", live, "", "", 401, 10010, "Authorization header required")
	f.wantError(t, "GET", live, bob, "", 403, 20000, "User bob may not access job "+id)
	f.wantError(t, "GET", "/jobs/"+id+"/log/1/stdout/live", alice, "", 400, 30001,
		"Container number 1 is out of range for job "+id+" with 1 containers")
	f.wantError(t, "GET", "/jobs/"+id+"/log/x/stdout/live", alice, "", 400, 30010, "")
	f.wantError(t, "GET", "/jobs/nope/log/0/stdout/live", alice, "", 404, 40040, "No job with ID 'nope' exists")

	t.Run("without a live log source", func(t *testing.T) {
		g := newFixtureWith(t, func(c *api.Config) { c.LiveLogs = nil })
		id := g.submit(t, alice)
		g.wantError(t, "GET", "/jobs/"+id+"/log/0/stdout/live", alice, "", 400, 60000, "This service does not keep live logs")
	})
	t.Run("server shutdown ends the stream without an end event", func(t *testing.T) {
		_, s := openStream(t, f, live, alice)
		time.Sleep(20 * time.Millisecond)
		f.srv.CloseStreams()
		for {
			select {
			case ev, ok := <-s.events:
				if !ok {
					return
				}
				if ev.event == "end" {
					t.Fatal("an end event at shutdown: the client would not reconnect")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the stream outlived CloseStreams")
			}
		}
	})
}

// TestAgentBinary serves the configured agent binary with caching headers, to anyone.
func TestAgentBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cts-agent")
	body := []byte("\x7fELF pretend agent")
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, func(c *api.Config) { c.AgentBinary = bin })
	get := func(h http.Header) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", f.url+"/external_exec/files/cts-agent", nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	sum := sha256.Sum256(body)
	etag := `"sha256:` + hex.EncodeToString(sum[:]) + `"`
	resp, b := get(nil)
	if resp.StatusCode != 200 || string(b) != string(body) || resp.Header.Get("ETag") != etag ||
		resp.Header.Get("Last-Modified") == "" || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("agent = %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if resp, _ := get(http.Header{"If-None-Match": {etag}}); resp.StatusCode != 304 {
		t.Fatalf("revalidation = %d, want 304", resp.StatusCode)
	}
	if resp, b := get(http.Header{"Range": {"bytes=1-3"}}); resp.StatusCode != 206 || string(b) != "ELF" {
		t.Fatalf("range = %d %q", resp.StatusCode, b)
	}
	// An upgrade in place: the new file and a new ETag, without a restart.
	newer := []byte("\x7fELF newer agent, longer")
	if err := os.WriteFile(bin, newer, 0o755); err != nil {
		t.Fatal(err)
	}
	if resp, b := get(http.Header{"If-None-Match": {etag}}); resp.StatusCode != 200 || string(b) != string(newer) || resp.Header.Get("ETag") == etag {
		t.Fatalf("after the upgrade = %d %q %s", resp.StatusCode, b, resp.Header.Get("ETag"))
	}
	t.Run("not configured", func(t *testing.T) {
		g := newFixture(t)
		g.wantError(t, "GET", "/external_exec/files/cts-agent", "", "", 404, 40000,
			"This service does not serve the agent binary: agent_binary is not configured")
	})
	t.Run("file gone", func(t *testing.T) {
		if err := os.Remove(bin); err != nil {
			t.Fatal(err)
		}
		f.wantError(t, "GET", "/external_exec/files/cts-agent", "", "", 500, 0, "")
	})
}
