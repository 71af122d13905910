package agentws_test

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// TestProgressKeepsLatest checks that the latest progress of each container is kept and
// served, and that a frame of an unknown type (a newer agent's) is skipped, not fatal.
func TestProgressKeepsLatest(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	if got := f.h.Progress(t.Context(), "job1"); got != nil {
		t.Fatalf("Progress before any agent = %v", got)
	}
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	before := time.Now()
	send(t, c, protocol.Progress{Phase: protocol.PhaseDownload, BytesDone: 5, BytesTotal: 40, FilesDone: 1, FilesTotal: 4})
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"v":1,"type":"from_the_future","body":{"x":1}}`)); err != nil {
		t.Fatal(err)
	}
	send(t, c, protocol.Progress{Phase: protocol.PhaseDownload, BytesDone: 40, BytesTotal: 40, FilesDone: 4, FilesTotal: 4})
	// An event after them: once it is acknowledged, they were handled (and the session lives).
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	mustRecv[protocol.Ack](t, c)

	got := f.h.Progress(t.Context(), "job1")
	want := protocol.Progress{Phase: protocol.PhaseDownload, BytesDone: 40, BytesTotal: 40, FilesDone: 4, FilesTotal: 4}
	if len(got) != 1 || got[1].Progress != want {
		t.Fatalf("Progress = %+v, want container 1: %+v", got, want)
	}
	if u := got[1].Updated; u.Before(before) || u.After(time.Now()) {
		t.Errorf("Updated = %v, not during the test", u)
	}
	if got := f.h.Progress(t.Context(), "job2"); got != nil {
		t.Errorf("Progress of another job = %v", got)
	}
}

func TestProgressBounded(t *testing.T) {
	f := newFixture(t, agentws.Config{Logs: agentws.LogConfig{MaxContainers: 2}})
	for n := range 3 {
		c := f.dialWith(t, f.credential(hello.JobID, n))
		h := hello
		h.Container = n
		send(t, c, h)
		assigned(t, c)
		send(t, c, protocol.Progress{Phase: protocol.PhaseUpload, BytesDone: int64(n), BytesTotal: 10, FilesTotal: 1})
		send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
		mustRecv[protocol.Ack](t, c)
		time.Sleep(5 * time.Millisecond) // distinct receive times
	}
	got := f.h.Progress(t.Context(), "job1")
	if _, ok := got[0]; ok || len(got) != 2 || got[2].BytesDone != 2 {
		t.Errorf("Progress = %+v, want containers 1 and 2 (the oldest dropped)", got)
	}
}

func TestDryRunIgnoresProgress(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	c := f.dial(t)
	h := hello
	h.DryRun = true
	send(t, c, h)
	mustRecv[protocol.Assignment](t, c)
	send(t, c, protocol.Progress{Phase: protocol.PhaseDownload, BytesTotal: 1})
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	wantFatalThenClose(t, c, "a dry run may not report events")
	if got := f.h.Progress(t.Context(), "job1"); got != nil {
		t.Errorf("a dry run recorded progress %v", got)
	}
}
