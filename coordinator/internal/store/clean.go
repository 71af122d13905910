package store

// The cleaner's queue: the finished jobs not yet cleaned, kept apart from the history.
//
// The cleaner asks every interval for the finished jobs that are not cleaned and whose last
// change is older than its age. Asked of the jobs collection, that is a pass over every job
// ever run on a server without the matching index (FerretDB, the embedded stack), so each
// finished job that is not cleaned has a document {_id: <job id>, t: <_update_time>} in
// job_clean, written by its terminal transition and deleted when it is cleaned. The queue
// holds the jobs that ended within the cleaner's age and those it failed to clean, not the
// history.
//
// The job document stays the only truth: DirtyJobs re-reads the job of each queue document and
// acts on the job; a document whose job is cleaned or gone is deleted on the spot. A
// coordinator that stops between a terminal transition and its queue document leaves the
// job's work document stale too (afterTransition writes the work document last), and the next
// periodic pass writes both (work.go).

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
)

// collClean is the cleaner's queue.
const collClean = "job_clean"

// cleanDoc is a job's document in job_clean.
type cleanDoc struct {
	ID   string    `bson:"_id"`
	Time time.Time `bson:"t"`
}

// syncClean puts job j in the cleaner's queue when it has ended and is not cleaned.
func (s *Store) syncClean(ctx context.Context, j *jobs.Job) error {
	if !j.State.Terminal() || j.Cleaned {
		return nil
	}
	_, err := s.clean.UpdateOne(ctx, bson.D{{Key: "_id", Value: j.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "t", Value: msTime(j.UpdateTime)}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("queue job %s for the cleaner: %w", j.ID, err)
	}
	return nil
}

// DirtyJobs returns up to limit (default 1000) finished jobs not yet cleaned whose UpdateTime
// is before olderThan, oldest first, without outputs and input files. It reads the cleaner's
// queue, then each job; queue documents of jobs cleaned or gone meanwhile are deleted.
func (s *Store) DirtyJobs(ctx context.Context, olderThan time.Time, limit int) ([]*jobs.Job, error) {
	const op = "dirty jobs"
	cur, err := s.clean.Find(ctx, bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: msTime(olderThan)}}}},
		options.Find().SetSort(bson.D{{Key: "t", Value: 1}}).SetLimit(limitOrDefault(limit)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	var queued []cleanDoc
	if err := cur.All(ctx, &queued); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ws := make([]workDoc, len(queued))
	for i, q := range queued {
		ws[i] = workDoc{ID: q.ID, Time: q.Time, Created: time.Now()} // never an orphan to readWork
	}
	wjs, err := s.readWork(ctx, nil, ws, listProjection(), false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out := []*jobs.Job{}
	for i, wj := range wjs {
		j := wj.Job
		if j == nil || j.Cleaned || !j.State.Terminal() {
			if _, err := s.clean.DeleteOne(ctx, bson.D{{Key: "_id", Value: queued[i].ID}}); err != nil {
				return nil, fmt.Errorf("%s: %w", op, err)
			}
			continue
		}
		if j.UpdateTime.Before(olderThan) {
			out = append(out, j)
		}
	}
	return out, nil
}

// rebuildClean queues every finished job that is not cleaned; it returns how many.
func (s *Store) rebuildClean(ctx context.Context) (int, error) {
	cur, err := s.jobs.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{
		{Key: "id", Value: 1}, {Key: "state", Value: 1}, {Key: "cleaned", Value: 1}, {Key: "_update_time", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("read jobs: %w", err)
	}
	defer cur.Close(ctx)
	n := 0
	for cur.Next(ctx) {
		var d jobDoc
		if err := cur.Decode(&d); err != nil {
			return n, fmt.Errorf("read jobs: %w", err)
		}
		if d.ID == "" || !d.State.Terminal() || d.Cleaned {
			continue
		}
		if err := s.syncClean(ctx, &d.Job); err != nil {
			return n, err
		}
		n++
	}
	if err := cur.Err(); err != nil {
		return n, fmt.Errorf("read jobs: %w", err)
	}
	return n, nil
}
