package store_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
)

// TestImportFinishedJobs writes a batch of finished jobs as CreateJob would one by one: each
// readable with its sub-jobs, listed, counted, queued for the cleaner unless cleaned; a batch
// holding a job with something left to happen is refused whole, and one that repeats a job
// is a conflict.
func TestImportFinishedJobs(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	var js []*jobs.Job
	var subs [][]jobs.SubJob
	for i, id := range []string{"i0", "i1", "i2"} {
		j := fullJob()
		j.ID = id
		j.UpdateTime = t0.Add(time.Duration(i) * time.Minute)
		j.Cleaned = id != "i2"
		for k := range j.Transitions {
			j.Transitions[k].NotifSent = true
		}
		js = append(js, j)
		subs = append(subs, []jobs.SubJob{{SubID: 0, State: job.Complete}, {SubID: 1, State: job.Complete}})
	}
	pending := fullJob()
	pending.ID = "pending" // a transition not notified
	if err := s.ImportFinishedJobs(ctx, append(js[:3:3], pending), append(subs[:3:3], nil)); err == nil {
		t.Fatal("a job with a transition not notified was imported")
	}
	if _, err := s.GetJob(ctx, "i0"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("a refused batch wrote job i0: %v", err)
	}
	if err := s.ImportFinishedJobs(ctx, js, subs); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"i0", "i1", "i2"} {
		j, err := s.GetJob(ctx, id)
		if err != nil || j.State != job.Complete {
			t.Fatalf("job %s: %+v, %v", id, j, err)
		}
		if ss, err := s.GetSubJobs(ctx, id); err != nil || len(ss) != 2 {
			t.Fatalf("sub-jobs of %s: %v, %v", id, ss, err)
		}
	}
	if got, want := listIDs(t, s, jobs.ListFilter{}), []string{"i2:complete", "i1:complete", "i0:complete"}; !reflect.DeepEqual(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
	dirty, err := s.DirtyJobs(ctx, time.Now(), 0)
	if err != nil || len(dirty) != 1 || dirty[0].ID != "i2" {
		t.Errorf("jobs to clean %v, %v; want [i2]", dirty, err)
	}
	st, err := store.NewCounter(db).CountJobsByState(ctx)
	if err != nil || st[job.Complete] != 3 {
		t.Errorf("counts %v, %v; want 3 complete", st, err)
	}
	for _, coll := range []string{"job_work", "job_due"} {
		if n, err := db.Collection(coll).CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
			t.Errorf("%s holds %d documents (%v) for finished jobs", coll, n, err)
		}
	}
	if err := s.ImportFinishedJobs(ctx, js[:1], subs[:1]); !errors.Is(err, jobs.ErrConflict) {
		t.Errorf("importing job i0 again: %v, want a conflict", err)
	}
}
