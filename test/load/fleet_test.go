package load

import (
	"context"
	"testing"
	"time"

	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

// within fails the test unless f returns within a generous bound (a call that waits for a lock
// held elsewhere never returns).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not return within 30 s: it waits for a lock held elsewhere", what)
	}
}

// TestFleetLockOrder pins the fleet's lock order (Fleet.mu): the launcher's calls never hold
// the fleet while they wait for an agent, and an agent's acknowledgement never needs the
// fleet. With both orders, the reconciler's Status meeting an acknowledgement of job_submitted
// deadlocked the generator: the 5,000- and 10,000-agent runs stopped at about 4,500 agents,
// every launcher call timing out.
func TestFleetLockOrder(t *testing.T) {
	f := NewFleet(FleetConfig{}, NewStats()) // not run: scheduled steps only queue
	ctx := context.Background()
	resp, err := f.Submit(ctx, launcher.SubmitRequest{JobID: "lockorder", Containers: 2})
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: "lockorder", Handle: resp.Handle}
	a := f.JobAgents("lockorder")[0]

	// An agent's reader inside an acknowledgement holds the agent's lock: Status waits for it
	// (it reports that agent), but the fleet stays free meanwhile.
	a.mu.Lock()
	status := make(chan struct{})
	go func() { defer close(status); _, _ = f.Status(ctx, []launcher.JobRef{ref}) }()
	within(t, "Submit while Status waits for an agent", func() {
		_, _ = f.Submit(ctx, launcher.SubmitRequest{JobID: "lockorder2", Containers: 1})
	})
	within(t, "Cancel while Status waits for an agent", func() { _ = f.Cancel(ctx, launcher.JobRef{JobID: "none", Handle: "none"}) })
	a.mu.Unlock()
	within(t, "Status", func() { <-status })

	// The fleet held (a launcher call in progress): the acknowledgement of job_submitted,
	// which schedules the container's end, completes.
	a.mu.Lock()
	a.pending = &protocol.Event{Seq: 2, State: job.JobSubmitted}
	a.step = 1
	a.mu.Unlock()
	f.mu.Lock()
	within(t, "an acknowledgement of job_submitted while the fleet is held", func() { a.handleAck(2, true) })
	f.mu.Unlock()
	a.mu.Lock()
	running := a.running
	a.mu.Unlock()
	if !running {
		t.Error("the acknowledgement of job_submitted did not start the container")
	}

	// Release reaches the agent started before it.
	f.Release(time.Millisecond)
	a.mu.Lock()
	finishing := a.finishing
	a.mu.Unlock()
	if !finishing {
		t.Error("Release did not schedule the end of a running container")
	}
}
