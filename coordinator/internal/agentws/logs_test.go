package agentws_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

func texts(ls []agentws.LogLine) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.String())
	}
	return out
}

func TestLiveLogsTailAndSubscribe(t *testing.T) {
	f := newFixture(t, agentws.Config{Logs: agentws.LogConfig{LinesPerContainer: 3}})
	follow, stop := f.h.Subscribe("job1", 1, 10)
	defer stop()
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	send(t, c, protocol.Log{Stream: "stdout", Lines: []string{"a", "b"}})
	send(t, c, protocol.Log{Stream: "stderr", Lines: []string{"c", "d"}})
	// An event after the logs: once it is acknowledged, the logs were handled.
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	mustRecv[protocol.Ack](t, c)

	if got, want := strings.Join(texts(f.h.Tail("job1", 1)), "|"), "stdout: b|stderr: c|stderr: d"; got != want {
		t.Errorf("Tail = %q, want %q (the last 3)", got, want)
	}
	if got := f.h.Tail("job1", 0); got != nil {
		t.Errorf("Tail of another container = %v", got)
	}
	var followed []string
	for range 4 {
		select {
		case l := <-follow:
			followed = append(followed, l.String())
		case <-time.After(5 * time.Second):
			t.Fatalf("followed %q, then nothing", followed)
		}
	}
	if got := strings.Join(followed, "|"); got != "stdout: a|stdout: b|stderr: c|stderr: d" {
		t.Errorf("followed %q", got)
	}
	stop()
	stop() // idempotent
	if _, ok := <-follow; ok {
		t.Error("channel still open after cancel")
	}
}

func TestLiveLogsBounded(t *testing.T) {
	f := newFixture(t, agentws.Config{Logs: agentws.LogConfig{LinesPerContainer: 2, MaxContainers: 2}})
	for n := range 3 {
		c := f.dialWith(t, f.credential(hello.JobID, n))
		h := hello
		h.Container = n
		send(t, c, h)
		assigned(t, c)
		send(t, c, protocol.Log{Stream: "stdout", Lines: []string{fmt.Sprint("line of ", n), strings.Repeat("x", 10000)}})
		send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
		mustRecv[protocol.Ack](t, c)
		time.Sleep(5 * time.Millisecond) // distinct receive times
	}
	if got := f.h.Tail("job1", 0); got != nil {
		t.Errorf("the oldest container's buffer was kept: %v", texts(got))
	}
	got := f.h.Tail("job1", 2)
	if len(got) != 2 || got[0].Text != "line of 2" || len(got[1].Text) > 5000 {
		t.Errorf("Tail(2) = %d lines, first %q, second %d bytes", len(got), got[0].Text, len(got[1].Text))
	}
}

func TestDryRunHelloRecordsNothing(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	c := f.dial(t)
	h := hello
	h.DryRun = true
	send(t, c, h)
	if a := mustRecv[protocol.Assignment](t, c); a.JobID != "job1" {
		t.Fatalf("assignment %+v", a)
	}
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	wantFatalThenClose(t, c, "a dry run may not report events")
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if f.svc.touches != 0 || len(f.svc.events) != 0 {
		t.Errorf("a dry run recorded %d heartbeats and %d events", f.svc.touches, len(f.svc.events))
	}

}

// TestLiveLogsFollow checks that Follow hands over the tail and then every later line, with
// no line repeated or lost between the two, and that Connected counts open sessions.
func TestLiveLogsFollow(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	if n := f.h.Connected(); n != 0 {
		t.Fatalf("Connected = %d before any agent", n)
	}
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	if n := f.h.Connected(); n != 1 {
		t.Errorf("Connected = %d with one agent", n)
	}
	send(t, c, protocol.Log{Stream: "stdout", Lines: []string{"a", "b"}})
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	mustRecv[protocol.Ack](t, c)

	tail, lines, stop := f.h.Follow(t.Context(), "job1", 1, 10)
	defer stop()
	if got := strings.Join(texts(tail), "|"); got != "stdout: a|stdout: b" {
		t.Fatalf("tail %q", got)
	}
	send(t, c, protocol.Log{Stream: "stderr", Lines: []string{"c"}})
	select {
	case l := <-lines:
		if l.String() != "stderr: c" {
			t.Fatalf("followed %q, want the line after the tail", l.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no line followed")
	}
	stop()
	if _, ok := <-lines; ok {
		t.Error("channel open after cancel")
	}
	_ = c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for f.h.Connected() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.h.Connected(); n != 0 {
		t.Errorf("Connected = %d after the agent left", n)
	}
}
