package store_test

import (
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// TestTouchSubJobs: a batch of heartbeats in one write, with TouchSubJob's rules.
func TestTouchSubJobs(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	var subs []jobs.SubJob
	for n := range 4 {
		subs = append(subs, jobs.SubJob{SubID: n, State: job.DownloadSubmitted})
	}
	if err := s.CreateJob(ctx, newJob("j1", "alice", "kbase", t0), subs); err != nil {
		t.Fatal(err)
	}
	for n, attempt := range map[int]string{0: "A", 2: "C", 3: "D"} {
		if _, err := s.TransitionSubJob(ctx, "j1", n, []job.State{job.DownloadSubmitted}, jobs.Transition{State: job.JobSubmitting, Time: t0},
			jobs.SubJobUpdate{}, jobs.Seq{Attempt: attempt, Seq: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TouchSubJob(ctx, "j1", 3, "D", t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := s.TouchSubJobs(ctx, []jobs.Touch{
		{JobID: "j1", Sub: 0, Attempt: "A", At: t0.Add(time.Minute)},     // the current attempt
		{JobID: "j1", Sub: 1, Attempt: "B", At: t0.Add(2 * time.Minute)}, // a sub-job without attempt yet
		{JobID: "j1", Sub: 2, Attempt: "Z", At: t0.Add(time.Minute)},     // a replaced attempt: ignored
		{JobID: "j1", Sub: 3, Attempt: "D", At: t0.Add(time.Minute)},     // never backwards
		{JobID: "j1", Sub: 9, Attempt: "A", At: t0},                      // missing: ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("matched %d, want 3", n)
	}
	got, err := s.GetSubJobs(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	// The batch's time is its latest heartbeat's.
	for i, want := range []time.Time{t0.Add(2 * time.Minute), t0.Add(2 * time.Minute), t0, t0.Add(5 * time.Hour)} { // sub-job 2: its transition's
		if want = want.Truncate(time.Millisecond); !got[i].LastSeen.Equal(want) {
			t.Errorf("sub-job %d: last_seen = %v, want %v", i, got[i].LastSeen, want)
		}
	}
	if n, err := s.TouchSubJobs(ctx, nil); n != 0 || err != nil {
		t.Fatalf("no heartbeats = %d, %v", n, err)
	}
}
