package store_test

import (
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// TestDirtyJobs: the cleaner finds the finished jobs not cleaned and older than its age,
// oldest first, through its queue; cleaned jobs leave it, and a job whose queue document a
// crash lost is queued again by the next periodic pass.
func TestDirtyJobs(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	end := func(id string, at time.Time, st job.State) {
		t.Helper()
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", at.Add(-time.Minute)), nil); err != nil {
			t.Fatal(err)
		}
		if st != "" {
			if _, err := s.TransitionJob(ctx, id, []job.State{job.Created}, jobs.Transition{State: st, Time: at}, jobs.JobUpdate{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	end("old-complete", t0, job.Complete)
	end("old-error", t0.Add(time.Hour), job.Error)
	end("recent", t0.Add(5*time.Hour), job.Canceled)
	end("running", t0, "")
	seeded := newJob("seeded", "bob", "kbase", t0.Add(30*time.Minute))
	seeded.State = job.Complete
	if err := s.CreateJob(ctx, seeded, nil); err != nil {
		t.Fatal(err)
	}
	dirty := func(olderThan time.Time) []string {
		t.Helper()
		js, err := s.DirtyJobs(ctx, olderThan, 0)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	if got, want := dirty(t0.Add(2*time.Hour)), []string{"old-complete", "seeded", "old-error"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("dirty jobs = %v, want %v", got, want)
	}
	if err := s.SetCleaned(ctx, "old-complete"); err != nil {
		t.Fatal(err)
	}
	if got, want := dirty(t0.Add(6*time.Hour)), []string{"seeded", "old-error", "recent"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("dirty jobs after a clean = %v, want %v", got, want)
	}
	// A cleaned job whose queue document stayed (its delete failed) is dropped from the queue.
	if _, err := db.Collection("jobs").UpdateOne(ctx, bson.D{{Key: "_id", Value: "seeded"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "cleaned", Value: true}}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := dirty(t0.Add(6*time.Hour)), []string{"old-error", "recent"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("dirty jobs after a clean behind the store's back = %v, want %v", got, want)
	}
	if n, _ := db.Collection("job_clean").CountDocuments(ctx, bson.D{{Key: "_id", Value: "seeded"}}); n != 0 {
		t.Error("the queue document of a cleaned job stayed")
	}
	// A crash after the terminal transition, before the queue and the work document.
	if _, err := db.Collection("job_clean").DeleteOne(ctx, bson.D{{Key: "_id", Value: "recent"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("job_work").UpdateOne(ctx, bson.D{{Key: "_id", Value: "recent"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}, {Key: "state", Value: job.Created}}}}); err != nil {
		t.Fatal(err)
	}
	if got := dirty(t0.Add(6 * time.Hour)); !reflect.DeepEqual(got, []string{"old-error"}) {
		t.Fatalf("dirty jobs after the crash = %v, want [old-error]", got)
	}
	if _, err := s.UnfinishedJobs(ctx, 0); err != nil { // the reconciler's pass
		t.Fatal(err)
	}
	if got, want := dirty(t0.Add(6*time.Hour)), []string{"old-error", "recent"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("dirty jobs after the pass repaired the crash = %v, want %v", got, want)
	}
}
