package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// sseJob is a scripted live log route for job "j1" container 0: connection i of the stdout
// live route writes conns[i] (raw server-sent events; a connection past the script repeats
// the last one). The stored log is served once status says the job ended.
type sseJob struct {
	mu      sync.Mutex
	conns   []string
	hold    bool // keep each connection open after its script (no end: the idle timeout)
	opened  int
	stored  string
	logHits int
}

func (f *sseJob) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/services/cts")
	f.mu.Lock()
	switch path {
	case "/jobs/j1/log/0/stdout/live":
		if r.Header.Get("Accept") != eventStream {
			f.mu.Unlock()
			http.Error(w, "wrong Accept", 400)
			return
		}
		script := f.conns[min(f.opened, len(f.conns)-1)]
		f.opened++
		hold := f.hold
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, script)
		w.(http.Flusher).Flush()
		if hold && !strings.Contains(script, "event: end") {
			<-r.Context().Done()
		}
		return
	case "/jobs/j1/status":
		_, _ = io.WriteString(w, `{"id":"j1","user":"u","state":"complete","transition_times":[]}`)
	case "/jobs/j1/log/0/stdout":
		f.logHits++
		_, _ = io.WriteString(w, f.stored)
	case "/jobs/j2/log/0/stdout/live":
		writeCTSError(w, 404, CodeNoSuchJob, "No such job", "No job with ID 'j2' exists")
	default:
		writeCTSError(w, 404, CodeNotFound, "Not Found", "Not Found")
	}
	f.mu.Unlock()
}

// events renders lines as data events; "END" is the end event, "HB" a heartbeat.
func events(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		switch l {
		case "END":
			b.WriteString("event: end\ndata: {\"state\": \"complete\"}\n\n")
		case "HB":
			b.WriteString(": heartbeat\n\n")
		default:
			for _, part := range strings.Split(l, "\n") {
				b.WriteString("data: " + part + "\n")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestLiveFollower(t *testing.T) {
	t.Parallel()
	ten := seq("line ", 0, 10)
	for _, tc := range []struct {
		name    string
		conns   []string
		hold    bool
		stored  string
		want    string
		notice  string
		logHits int
	}{
		{name: "live lines, then the end: the stored log is not repeated",
			conns:  []string{events("a", "HB", "b\nc", "END")},
			stored: "a\nb\nc\n", want: "a\nb\nc\n", notice: NoticeLiveShown},
		{name: "no live line: the stored log whole",
			conns:  []string{events("HB", "END")},
			stored: "x\ny", want: "x\ny", logHits: 1},
		{name: "a dropped stream resumes after the repeated tail",
			conns: []string{events(ten[:6]...), events(append(append([]string{}, ten...), "END")...)},
			want:  strings.Join(ten, "\n") + "\n", notice: NoticeLiveShown},
		{name: "a dropped stream whose tail holds all earlier lines",
			conns: []string{events(ten[:9]...), events(append(append([]string{}, ten...), "END")...)},
			want:  strings.Join(ten, "\n") + "\n", notice: NoticeLiveShown},
		{name: "a reopened stream that does not repeat enough lines goes quiet",
			conns: []string{events(ten...), events(append(seq("line ", 7, 10), "new", "END")...)},
			want:  strings.Join(ten, "\n") + "\n", notice: NoticeLiveStopped},
		{name: "an ambiguous overlap goes quiet",
			conns: []string{events(append(seq("x", 0, 0), "r", "r", "r", "r", "r", "r", "r", "r", "r")...),
				events("r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "END")},
			want: strings.Repeat("r\n", 9), notice: NoticeLiveStopped},
		{name: "a silent stream is opened again after the idle timeout",
			conns: []string{events("a"), events("a", "b", "END")}, hold: true,
			want: "a\nb\n", notice: NoticeLiveShown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &sseJob{conns: tc.conns, stored: tc.stored, hold: tc.hold}
			c := newTestClient(t, f, "owner")
			var out strings.Builder
			var notices []string
			lf := &LiveFollower{Client: c, Backoff: fast, IdleTimeout: 100 * time.Millisecond,
				Notice: func(m string) { notices = append(notices, m) }}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := lf.Follow(ctx, LogRequest{JobID: "j1"}, &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("wrote %q, want %q", out.String(), tc.want)
			}
			wantNotices := []string(nil)
			if tc.notice != "" {
				wantNotices = []string{tc.notice}
			}
			if fmt.Sprint(notices) != fmt.Sprint(wantNotices) {
				t.Errorf("notices %q, want %q", notices, wantNotices)
			}
			if f.logHits != tc.logHits {
				t.Errorf("stored log fetched %d times, want %d", f.logHits, tc.logHits)
			}
		})
	}

	t.Run("a service without the live route is polled", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{owner: "owner", script: []step{{state: "job_submitted", log: "-"}, {state: "job_submitted", log: "ab"}, {state: "complete", log: "cd"}}}
		var out strings.Builder
		err := (&LiveFollower{Client: newTestClient(t, f, "owner"), Backoff: fast}).Follow(context.Background(), LogRequest{JobID: "j1"}, &out)
		if err != nil || out.String() != "abcd" {
			t.Errorf("Follow = %q, %v; want the polled log", out.String(), err)
		}
	})
	t.Run("an unreachable service is polled, and its failure returned", func(t *testing.T) {
		t.Parallel()
		c, err := New("http://127.0.0.1:1", "t")
		if err != nil {
			t.Fatal(err)
		}
		err = (&LiveFollower{Client: c, Backoff: fast, Tolerate: 20 * time.Millisecond}).Follow(context.Background(), LogRequest{JobID: "j1"}, io.Discard)
		if !errors.Is(err, ErrUnreachable) {
			t.Errorf("Follow error %v, want ErrUnreachable", err)
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		t.Parallel()
		err := (&LiveFollower{Client: newTestClient(t, &sseJob{}, "owner"), Backoff: fast}).Follow(context.Background(), LogRequest{JobID: "j2"}, io.Discard)
		var ae *APIError
		if !errors.As(err, &ae) || ae.AppCode != CodeNoSuchJob {
			t.Errorf("Follow error %v, want no such job (40040)", err)
		}
	})
}

func TestAligner(t *testing.T) {
	t.Parallel()
	hashes := func(ls ...string) []uint64 {
		var out []uint64
		for _, l := range ls {
			out = append(out, lineHash(l))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		history []string
		stream  []string
		out     []string
		ok      bool
		settled int // lines read when settled (0: never)
	}{
		{"all written lines repeated", []string{"a", "b"}, []string{"a", "b", "c"}, nil, true, 2},
		{"a suffix repeated", seq("l", 0, 20), append(seq("l", 10, 20), "n"), nil, true, 10},
		{"repeat shorter than the minimum", seq("l", 0, 20), seq("l", 15, 22), nil, false, 1},
		{"periodic lines", []string{"a", "b", "a", "b", "a", "b", "a", "b", "a", "b"},
			[]string{"a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "c"}, nil, false, 10},
		{"still open", []string{"a", "b", "c"}, []string{"a", "b"}, nil, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAligner(hashes(tc.history...))
			for i, l := range tc.stream {
				out, done, ok := a.add(lineHash(l), l)
				if !done {
					continue
				}
				if i+1 != tc.settled || ok != tc.ok || len(out) != 0 {
					t.Errorf("settled after %d lines, ok %v, out %q; want %d, %v", i+1, ok, out, tc.settled, tc.ok)
				}
				return
			}
			if tc.settled != 0 {
				t.Errorf("never settled, want after %d lines", tc.settled)
			}
		})
	}
}
