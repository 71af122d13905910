package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// ImportFinishedJobs writes a batch of finished jobs with nothing left to happen to them
// (ended, every transition notified; their accounting is not waited for) and their sub-jobs
// (subs[i] are js[i]'s), as CreateJob would one by one, in a few commands per batch instead
// of several per job: the sub-jobs and the jobs in one insert each, their job list entries as
// the migration writes them (one update per list document), the cleaner's queue for those not
// cleaned in one insert, the counts of finished jobs once. It is for a history imported or seeded. A job
// that is not finished, or has a transition not notified, is refused before anything is
// written; a job or sub-job that exists fails the batch with ErrConflict, and what the batch
// wrote before stays (the job list skips entries of jobs that are not there).
func (s *Store) ImportFinishedJobs(ctx context.Context, js []*jobs.Job, subs [][]jobs.SubJob) error {
	const op = "import finished jobs"
	if len(subs) != len(js) {
		return fmt.Errorf("%s: %d jobs, %d lists of sub-jobs", op, len(js), len(subs))
	}
	if len(js) == 0 {
		return nil
	}
	docs := make([]*jobDoc, len(js))
	jobDocs := make([]any, len(js))
	var subDocs []any
	ended := map[job.State]int64{}
	for i, j := range js {
		normalizeJob(j)
		if _, pending := workOf(j, true); pending {
			return fmt.Errorf("%s: job %s is %s or has a transition not notified: create it with CreateJob", op, j.ID, j.State)
		}
		in, err := encodeInput(&j.Input)
		if err != nil {
			return fmt.Errorf("%s: job %s: %w", op, j.ID, err)
		}
		docs[i] = &jobDoc{Key: j.ID, Job: *j, Input: in, ListVersion: 1}
		jobDocs[i] = docs[i]
		for k := range subs[i] {
			sj := &subs[i][k]
			sj.JobID = j.ID
			normalizeSubJob(sj)
			subDocs = append(subDocs, &subJobDoc{Key: subKey(j.ID, sj.SubID), SubJob: *sj})
		}
		ended[j.State]++
	}
	unordered := options.InsertMany().SetOrdered(false)
	if len(subDocs) > 0 {
		if _, err := s.subjobs.InsertMany(ctx, subDocs, unordered); err != nil {
			if isDuplicateKey(err) || allDuplicates(err) {
				return fmt.Errorf("%s: sub-jobs exist: %w", op, jobs.ErrConflict)
			}
			return fmt.Errorf("%s: insert sub-jobs: %w", op, err)
		}
	}
	if _, err := s.jobs.InsertMany(ctx, jobDocs, unordered); err != nil {
		if isDuplicateKey(err) || allDuplicates(err) {
			return fmt.Errorf("%s: jobs exist: %w", op, jobs.ErrConflict)
		}
		return fmt.Errorf("%s: insert jobs: %w", op, err)
	}
	if err := s.listBatch(ctx, docs); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// The cleaner's queue in one insert (a document there already, from an earlier try, stays).
	var queue []any
	for _, j := range js {
		if j.State.Terminal() && !j.Cleaned {
			queue = append(queue, cleanDoc{ID: j.ID, Time: msTime(j.UpdateTime)})
		}
	}
	if len(queue) > 0 {
		if _, err := s.clean.InsertMany(ctx, queue, unordered); err != nil && !allDuplicates(err) {
			return fmt.Errorf("%s: queue for the cleaner: %w", op, err)
		}
	}
	for st, n := range ended {
		s.countTerminal(ctx, st, n)
	}
	return nil
}
