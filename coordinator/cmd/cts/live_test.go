package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLogsFollowLive checks cts logs -f on the live route: the lines on stdout, and on stderr
// the notice with the command that prints the complete log.
func TestLogsFollowLive(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jobs/j1/log/2/stderr/live" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n: heartbeat\n\ndata: two\n\nevent: end\ndata: {\"state\": \"error\"}\n\n")
	}))
	t.Cleanup(srv.Close)
	r := runCLI(t, map[string]string{"CTS_URL": srv.URL, "CTS_TOKEN": "T"}, "logs", "j1", "-f", "--container", "2", "--stderr")
	r.want(t, exitOK)
	if r.stdout != "one\ntwo\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	if want := "cts logs: the lines shown are the live view (best effort: lines may be missing or truncated); " +
		"the complete log: cts logs j1 --container 2 --stderr\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
}
