package launch_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

// terminalMsg is the message of a cancel that comes too late; state is the job's.
func terminalMsg(id string, state ...job.State) string {
	s := job.Canceling
	if len(state) > 0 {
		s = state[0]
	}
	if s == job.Canceling || s == job.Canceled {
		return "Job " + id + " is already " + string(s) + ": there is nothing more to cancel"
	}
	return "Job " + id + " has already ended (" + string(s) + "): only a job that has not ended can be canceled"
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()

	t.Run("owner", func(t *testing.T) {
		id := f.Submit(t, nil)
		watch, unwatch := f.Launch.WatchCancel(id)
		defer unwatch()
		other, unwatchOther := f.Launch.WatchCancel("some-other-job")
		defer unwatchOther()
		if err := f.Launch.Cancel(ctx, alice, id); err != nil {
			t.Fatal(err)
		}
		f.WantState(t, id, job.Canceling)
		// Canceling twice: the job is already canceling.
		wantCTSErr(t, f.Launch.Cancel(ctx, alice, id), ctserr.CodeNoSuchJob, terminalMsg(id))

		if err := f.Launch.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		j := f.WantState(t, id, job.Canceled)
		select {
		case c := <-watch:
			if c.Reason == "" {
				t.Fatal("the cancel has no reason")
			}
		default:
			t.Fatal("the job's watcher got no cancel")
		}
		select {
		case <-other:
			t.Fatal("another job's watcher got the cancel")
		default:
		}
		cs := f.Launcher.Cancels()
		if len(cs) != 1 || cs[0] != (launcher.JobRef{JobID: id, Handle: j.Launch.Handle}) {
			t.Fatalf("launcher cancels %+v, want the job's handle %q", cs, j.Launch.Handle)
		}
		wantCTSErr(t, f.Launch.Cancel(ctx, alice, id), ctserr.CodeNoSuchJob, terminalMsg(id, job.Canceled))
	})
	t.Run("other user", func(t *testing.T) {
		id := f.Submit(t, nil)
		wantCTSErr(t, f.Launch.Cancel(ctx, bob, id), ctserr.CodeUnauthorized, "User bob may not access job "+id)
		f.WantState(t, id, job.DownloadSubmitted)
	})
	t.Run("admin", func(t *testing.T) {
		id := f.Submit(t, nil)
		if err := f.Launch.Cancel(ctx, admin, id); err != nil {
			t.Fatal(err)
		}
		f.WantState(t, id, job.Canceling)
	})
	t.Run("unknown job", func(t *testing.T) {
		wantCTSErr(t, f.Launch.Cancel(ctx, admin, "nope"), ctserr.CodeNoSuchJob, "No job with ID 'nope' exists")
	})
	t.Run("terminal job", func(t *testing.T) {
		id := f.Submit(t, func(in *jobinput.JobInput) { in.NumContainers = 1 })
		if err := f.Agent(id, 0, "x").Send(ctx, protocol.Event{State: job.Error, AdminError: "x"}); err != nil {
			t.Fatal(err)
		}
		f.WantState(t, id, job.Error)
		wantCTSErr(t, f.Launch.Cancel(ctx, alice, id), ctserr.CodeNoSuchJob, terminalMsg(id, job.Error))
		f.WantState(t, id, job.Error)
	})
	t.Run("unwatched channels get nothing", func(t *testing.T) {
		id := f.Submit(t, nil)
		watch, unwatch := f.Launch.WatchCancel(id)
		unwatch()
		if err := f.Launch.Cancel(ctx, alice, id); err != nil {
			t.Fatal(err)
		}
		if err := f.Launch.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-watch:
			t.Fatal("an unregistered watcher got the cancel")
		default:
		}
	})
}

func TestCancelBeforeSubmission(t *testing.T) {
	f := newFixture(t)
	id, err := f.Admission.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Launch.Cancel(t.Context(), alice, id); err != nil {
		t.Fatal(err)
	}
	if err := f.Launch.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.Canceled)
	if d, _ := f.Launcher.Launches(); d != 0 || len(f.Launcher.Cancels()) != 0 {
		t.Fatal("a job canceled before submission reached the launcher")
	}
}

// A cancel that lands between the launcher's Submit and the recorded transition: the
// submitter takes the containers back, and the job ends canceled.
func TestCancelDuringSubmission(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id, err := f.Admission.Submit(ctx, alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	f.Store.SetHook(once(job.DownloadSubmitted, func(id string) error { return f.Launch.Cancel(ctx, alice, id) }))
	if err := f.Launch.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.Canceled)
	cs := f.Launcher.Cancels()
	if len(cs) != 1 || cs[0] != (launcher.JobRef{JobID: id, Handle: "cluster-1"}) {
		t.Fatalf("launcher cancels %+v, want the launch just made", cs)
	}
}

func TestFinishCancelLauncherErrors(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, nil)
	if err := f.Launch.Cancel(ctx, alice, id); err != nil {
		t.Fatal(err)
	}
	f.Launcher.Mu.Lock()
	f.Launcher.CancelErr = launcher.ErrUnavailable
	f.Launcher.Mu.Unlock()
	if err := f.Launch.Pass(ctx); !errors.Is(err, launcher.ErrUnavailable) {
		t.Fatalf("pass = %v, want the launcher's error", err)
	}
	f.WantState(t, id, job.Canceling)
	// A launcher that no longer knows the job has nothing to stop.
	f.Launcher.Mu.Lock()
	f.Launcher.CancelErr = launcher.ErrNotFound
	f.Launcher.Mu.Unlock()
	if err := f.Launch.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.Canceled)
}

// Two cancels (the owner's and an admin's) and the final complete event race: exactly one
// wins. Either one Cancel succeeds, the other gets the documented 40040 and the job ends
// canceled, or the job completes and both Cancels get the 40040.
func TestCancelRacesCompletion(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	good := f.Put(t, "outputs/run1/good.txt", []byte("good"))
	outcomes := map[job.State]int{}
	for round := range 8 {
		id := f.Submit(t, func(in *jobinput.JobInput) { in.NumContainers = 1 })
		a := f.Agent(id, 0, "x")
		a.Walk(t, running...)
		f.WantState(t, id, job.UploadSubmitted)

		var wg sync.WaitGroup
		start := make(chan struct{})
		var eventErr error
		cancelErrs := make([]error, 2)
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			eventErr = a.Send(ctx, protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}}})
		}()
		for i, u := range []jobs.User{alice, admin} {
			go func() {
				defer wg.Done()
				<-start
				if round%2 == 1 {
					time.Sleep(time.Duration(round+i) * time.Millisecond)
				}
				cancelErrs[i] = f.Launch.Cancel(ctx, u, id)
			}()
		}
		close(start)
		wg.Wait()
		if eventErr != nil {
			t.Fatalf("round %d: the complete event = %v", round, eventErr)
		}
		if err := f.Launch.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		j := f.Job(t, id)
		won := 0
		for _, err := range cancelErrs {
			if err == nil {
				won++
				continue
			}
			if j.State == job.Complete { // the complete event came first
				wantCTSErr(t, err, ctserr.CodeNoSuchJob, terminalMsg(id, job.Complete))
			} else { // the other cancel came first
				wantCTSErr(t, err, ctserr.CodeNoSuchJob, terminalMsg(id))
			}
		}
		switch {
		case won == 1 && j.State == job.Canceled:
		case won == 0 && j.State == job.Complete:
		default:
			t.Fatalf("round %d: Cancels = %v and the job is %s", round, cancelErrs, j.State)
		}
		outcomes[j.State]++
	}
	t.Logf("outcomes: %v", outcomes)
}

// A cancel accepted between the fold's read and its terminal error write must not be
// overwritten by that write: the job ends canceled, as Cancel promised.
func TestCancelBetweenFoldReadAndWrite(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.Submit(t, func(in *jobinput.JobInput) { in.NumContainers = 1 })
	a := f.Agent(id, 0, "x")
	a.Walk(t, job.JobSubmitting, job.JobSubmitted)
	var cancelErr error
	f.Store.SetHook(once(job.Error, func(id string) error {
		cancelErr = f.Launch.Cancel(ctx, alice, id)
		return nil
	}))
	if err := a.Send(ctx, protocol.Event{State: job.Error, AdminError: "killed"}); err != nil {
		t.Fatal(err)
	}
	if cancelErr != nil {
		t.Fatalf("Cancel = %v", cancelErr)
	}
	f.WantState(t, id, job.Canceling)
	if err := f.Launch.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.Canceled)
}
