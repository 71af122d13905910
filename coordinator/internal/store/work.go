package store

// The job_work collection: what the periodic passes look for, kept apart from the history.
//
// The submitter, the reconciler, the notifier and the metrics look for jobs by state, by
// unsent transitions and by missing accounting, on every tick. Asked of the jobs collection,
// each of those questions costs a pass over every job ever run on a server without a matching
// index (FerretDB, the embedded stack, has none that it uses), and an index scan of a growing
// history on MongoDB for the metrics' counts. So each job that still has something to happen
// to it has a small work document, keyed by the job ID, holding a copy of what the passes
// select on:
//
//	{_id: <job id>, state, t: <_update_time>, v: <number of transitions>, unsent: bool,
//	 account: bool}
//
// In job_work, unsent is set only for a job that has ended (workCopy): it is what keeps an
// ended job's document, while a job that has not ended has one anyway. So the notifier's
// marks leave the work document of a running job as it was (a write fewer per notification);
// the due queue (below) holds unsent for every job, and the notifier asks it.
//
// A job has one while it has not ended, while any of its transitions waits for Kafka, and,
// once ended, until its accounting is recorded or the accounting window has passed. Finished
// jobs have none, so the passes cost what the work in flight costs, however long the history.
//
// The job document stays the only truth. Work documents are a hint written beside it, without
// transactions, with three rules that keep them sound under crashes and concurrent
// coordinators:
//   - A job gets its work document before it exists (CreateJob writes it, and its due copy
//     before it, first), so no job with work to do lacks one; a transition of an unfinished
//     job finds it in place.
//   - After each change of a job, the writer syncs the work document from the job as the
//     change left it: an update conditional on v (the job's transition count) being older,
//     so a slow writer never overwrites a newer copy; the document goes when nothing is left
//     to do.
//   - Every reader re-reads the job of each work document it finds and acts on the job, never
//     on the copy; a copy that disagrees (a writer crashed between its two writes, or lost the
//     race to a newer one) is synced on the spot. Every work document is read by some pass
//     every tick (the reconciler reads every unfinished job's, UnfinishedJobs), so a stale
//     copy lives one tick.
//
// The submitter and the notifier ask their questions ("jobs in state created or canceling",
// "jobs with unsent transitions") several times a second, and an unfinished job is in neither
// queue for most of its life (a running job whose transitions were sent). So the work
// documents of the jobs they act on have a copy in job_due, the due queue, with the same
// fields: a job is due while it is in state created or canceling or has a transition not
// yet sent. Their questions are asked of job_due, so a pass costs what is due, not what is
// running (on a server that scans, as FerretDB does, job_work holds every unfinished job).
// The due copy follows the work document's rules, and is written before it: every sync writes
// the due copy (or deletes it, conditional on v like the work document) and then the work
// document, and skips the work document when the due copy could not be written; CreateJob
// writes both before the job. So a work document that agrees with its job has a due copy
// that agrees too, and one that does not is repaired, with its due copy, by the next pass
// that reads it; a due copy left behind by a slow writer is repaired by the pass that reads
// it (the job is re-read, as always).
//
// Counts for the metrics: jobs in each unfinished state are counted among the work documents;
// jobs that ended are counted in job_counts, incremented by the writer of each terminal
// transition (and set from the jobs collection by the schema migration). A coordinator that
// crashes between a terminal transition and its increment leaves that count one short.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// Collection names of the work documents and of the terminal counts.
const (
	collWork   = "job_work"
	collDue    = "job_due"
	collCounts = "job_counts"
	// countsID is the one document of job_counts: {_id: "terminal", <state>: n, ...}.
	countsID = "terminal"
	// orphanGrace is how old a work document without a job must be before it is deleted:
	// CreateJob writes the work document first, and its job a moment later.
	orphanGrace = time.Minute
	// readers bounds the concurrent point reads of the jobs a pass found.
	readers = 8
)

// workDoc is a job's entry in job_work (see above).
type workDoc struct {
	ID      string    `bson:"_id"`
	State   job.State `bson:"state"`
	Time    time.Time `bson:"t"`
	V       int       `bson:"v"`
	Unsent  bool      `bson:"unsent"`
	Account bool      `bson:"account"`
	// Created is when the document was first written (orphans are judged by it).
	Created time.Time `bson:"created"`
}

// accountedField marks a job whose accounting was recorded (the Job model does not carry it).
const accountedField = "_accounted"

// workOf is the work document job j calls for; pending is false when j has nothing left to
// happen to it. accounted tells whether j's accounting was recorded.
func workOf(j *jobs.Job, accounted bool) (w workDoc, pending bool) {
	w = workDoc{ID: j.ID, State: j.State, Time: j.UpdateTime, V: len(j.Transitions)}
	for _, t := range j.Transitions {
		w.Unsent = w.Unsent || !t.NotifSent
	}
	w.Account = j.State.Terminal() && j.Launch != nil && !accounted
	return w, !j.State.Terminal() || w.Unsent || w.Account
}

// workCopy is what job_work holds of work document w: unsent only for a job that has ended
// (see above).
func workCopy(w workDoc) workDoc {
	if !w.State.Terminal() {
		w.Unsent = false
	}
	return w
}

// due reports whether a job with work document w is in the due queue (see above).
func due(w workDoc) bool {
	return w.State == job.Created || w.State == job.Canceling || w.Unsent
}

// syncWork makes the due copy and then the work document of job j agree with j (see above);
// accounted tells whether j's accounting is recorded. A newer document (higher v) is left
// alone.
func (s *Store) syncWork(ctx context.Context, j *jobs.Job, accounted bool) error {
	return s.syncWorkFrom(ctx, j, accounted, true)
}

// syncWorkFrom is syncWork told whether j had a due copy before its last change (wasDue: when
// it had not, a copy is inserted first instead of updated first, one command instead of two;
// a copy there after all is then updated, so a wrong guess costs a command, never a copy).
func (s *Store) syncWorkFrom(ctx context.Context, j *jobs.Job, accounted, wasDue bool) error {
	w, pending := workOf(j, accounted)
	if err := syncCopy(ctx, s.due, w, pending && due(w), !wasDue); err != nil {
		return fmt.Errorf("sync due queue of job %s: %w", j.ID, err)
	}
	if err := syncCopy(ctx, s.work, workCopy(w), pending, false); err != nil {
		return fmt.Errorf("sync work of job %s: %w", j.ID, err)
	}
	return nil
}

// syncNotified is syncWork after a change of j's marks only: the work document of a job that
// has not ended does not hold them (workCopy), so only the due copy is written then. A crash
// before that write leaves a due copy saying unsent, which the notifier's next read repairs
// (it re-reads the job, as every reader does); the marks never make a transition unsent, so
// no notification can be lost by it.
func (s *Store) syncNotified(ctx context.Context, j *jobs.Job, accounted bool) error {
	if j.State.Terminal() {
		return s.syncWork(ctx, j, accounted)
	}
	w, pending := workOf(j, accounted)
	if err := syncCopy(ctx, s.due, w, pending && due(w), false); err != nil {
		return fmt.Errorf("sync due queue of job %s: %w", j.ID, err)
	}
	return nil
}

// dueBefore reports whether job j, as a transition just left it, was due before that
// transition (see above): its previous state was, or a transition before the last was not
// sent. A job with one transition is taken as due.
func dueBefore(j *jobs.Job) bool {
	n := len(j.Transitions)
	if n < 2 {
		return true
	}
	for _, t := range j.Transitions[:n-1] {
		if !t.NotifSent {
			return true
		}
	}
	return due(workDoc{State: j.Transitions[n-2].State})
}

// syncCopy writes w into coll when keep is set and deletes it otherwise, in both cases only
// over a document with the same or an older v. absent says coll likely has no document of
// the job: it is inserted first.
func syncCopy(ctx context.Context, coll *mongo.Collection, w workDoc, keep, absent bool) error {
	if !keep {
		_, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: w.ID}, {Key: "v", Value: bson.D{{Key: "$lte", Value: w.V}}}})
		return err
	}
	if absent {
		ins := w
		ins.Created = jobs.Now()
		_, err := coll.InsertOne(ctx, &ins)
		if err == nil {
			return nil
		}
		if !isDuplicateKey(err) {
			return err
		}
		// There after all (left by a slow writer, or the guess was wrong): update it.
	}
	set := bson.D{
		{Key: "state", Value: w.State}, {Key: "t", Value: w.Time}, {Key: "v", Value: w.V},
		{Key: "unsent", Value: w.Unsent}, {Key: "account", Value: w.Account},
	}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: w.ID}, {Key: "v", Value: bson.D{{Key: "$lte", Value: w.V}}}},
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return err
	}
	if res.MatchedCount > 0 {
		return nil
	}
	w.Created = jobs.Now()
	if _, err := coll.InsertOne(ctx, &w); err != nil && !isDuplicateKey(err) {
		// A duplicate is a newer document: it stays.
		return err
	}
	return nil
}

// afterTransition keeps the work document and the terminal counts in step with a transition
// that has just moved job j (as it is after the transition) out of state from. Its errors are
// logged, not returned: the transition happened, and readers repair a stale work document.
func (s *Store) afterTransition(ctx context.Context, j *jobs.Job) {
	// The cleaner's queue before the work document: a stale work document tells the next pass
	// to write both (clean.go).
	if err := s.syncClean(ctx, j); err != nil {
		s.log.WarnContext(ctx, "job ended, not queued for the cleaner (the next pass repairs it)", "job_id", j.ID, "error", err.Error())
	}
	if err := s.syncWorkFrom(ctx, j, false, dueBefore(j)); err != nil {
		s.log.WarnContext(ctx, "job transition recorded, its work document not updated (the next pass repairs it)",
			"job_id", j.ID, "state", string(j.State), "error", err.Error())
	}
	if j.State.Terminal() {
		s.countTerminal(ctx, j.State, 1)
	}
}

// countTerminal adds n to the count of jobs that ended in state st.
func (s *Store) countTerminal(ctx context.Context, st job.State, n int64) {
	_, err := s.counts.UpdateOne(ctx, bson.D{{Key: "_id", Value: countsID}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: string(st), Value: n}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		s.log.WarnContext(ctx, "count of finished jobs not updated", "state", string(st), "error", err.Error())
	}
}

// findWork returns up to limit documents of coll (job_work or job_due) matching filter, oldest
// t first.
func findWork(ctx context.Context, coll *mongo.Collection, filter bson.D, limit int) ([]workDoc, error) {
	cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "t", Value: 1}}).SetLimit(limitOrDefault(limit)))
	if err != nil {
		return nil, err
	}
	var ws []workDoc
	if err := cur.All(ctx, &ws); err != nil {
		return nil, err
	}
	return ws, nil
}

// workJob is a work document with the job it names, as read now; Job is nil for an orphan.
type workJob struct {
	w         workDoc
	Job       *jobs.Job
	accounted bool
}

// readWork reads the job of every work document ws of coll (job_work or job_due; nil for
// other queues) in parallel, order kept, syncs the documents that disagree with their job and
// deletes orphans past their grace from coll.
func (s *Store) readWork(ctx context.Context, coll *mongo.Collection, ws []workDoc, projection bson.D, repair bool) ([]workJob, error) {
	out, errs := readEach(ws, func(w workDoc) (workJob, error) { return s.readOneWork(ctx, coll, w, projection, repair) })
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) readOneWork(ctx context.Context, coll *mongo.Collection, w workDoc, projection bson.D, repair bool) (workJob, error) {
	wj := workJob{w: w}
	var d jobDoc
	opts := options.FindOne()
	if projection != nil {
		opts.SetProjection(projection)
	}
	err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: w.ID}}, opts).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		if coll != nil && time.Since(w.Created) > orphanGrace {
			// CreateJob failed after writing the due queue's copy or the work document (in
			// that order): nothing will ever come of either.
			for _, c := range []*mongo.Collection{s.due, s.work} {
				_, _ = c.DeleteOne(ctx, bson.D{{Key: "_id", Value: w.ID}, {Key: "v", Value: w.V}})
			}
		}
		return wj, nil
	}
	if err != nil {
		return wj, fmt.Errorf("read job %s: %w", w.ID, err)
	}
	j, err := d.toJob()
	if err != nil {
		return wj, err
	}
	s.containers.put(j) // 0 (unknown) when the projection left it out
	wj.Job, wj.accounted = j, d.Accounted
	if !repair {
		return wj, nil
	}
	fresh, _ := workOf(j, d.Accounted)
	if coll == s.work {
		fresh, w = workCopy(fresh), workCopy(w) // job_work's unsent of a running job is not kept
	}
	if fresh.V != w.V || fresh.State != w.State || fresh.Unsent != w.Unsent || fresh.Account != w.Account {
		// A writer stopped between the job and its copies: the job list's first (joblist.go).
		if err := s.syncList(ctx, &d, time.Time{}); err != nil {
			s.log.WarnContext(ctx, "job list entry of a stale work document not repaired", "job_id", j.ID, "error", err.Error())
		}
		if err := s.syncClean(ctx, j); err != nil {
			s.log.WarnContext(ctx, "cleaner's queue of a stale work document not repaired", "job_id", j.ID, "error", err.Error())
		}
		if err := s.syncWork(ctx, j, d.Accounted); err != nil {
			s.log.WarnContext(ctx, "stale work document not repaired", "job_id", j.ID, "error", err.Error())
		}
	}
	return wj, nil
}

// activeStates are the states of jobs that have not ended.
func activeStates() []job.State {
	var out []job.State
	for _, st := range job.States {
		if !st.Terminal() {
			out = append(out, st)
		}
	}
	return out
}

// JobsInState returns up to limit (default 1000) jobs in state, oldest UpdateTime first. It
// reads the work documents (only unfinished jobs have one in a state that has not ended; those
// in created and canceling from the due queue), then each job; a job whose state changed
// meanwhile is left out.
func (s *Store) JobsInState(ctx context.Context, state job.State, limit int) ([]*jobs.Job, error) {
	return s.JobsInStates(ctx, []job.State{state}, limit)
}

// JobsInStates is JobsInState for jobs in any of states, in one query (of the due queue when
// every state is one it holds: the submitter's created and canceling).
func (s *Store) JobsInStates(ctx context.Context, states []job.State, limit int) ([]*jobs.Job, error) {
	op := fmt.Sprintf("jobs in states %v", states)
	coll := s.due
	for _, st := range states {
		if !due(workDoc{State: st}) {
			coll = s.work
		}
	}
	filter := bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: nonNil(states)}}}}
	if len(states) == 1 {
		filter = bson.D{{Key: "state", Value: states[0]}}
	}
	ws, err := findWork(ctx, coll, filter, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	wjs, err := s.readWork(ctx, coll, ws, nil, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out := []*jobs.Job{}
	for _, wj := range wjs {
		if wj.Job != nil && slices.Contains(states, wj.Job.State) {
			out = append(out, wj.Job)
		}
	}
	return out, nil
}

// UnfinishedJobs implements reconcile.Store: up to limit (default 1000) jobs that have not
// ended, oldest UpdateTime first. It reads every work document of an unfinished state, due or
// not, so a stale one is repaired within a pass whatever it says (see above), then each job.
func (s *Store) UnfinishedJobs(ctx context.Context, limit int) ([]*jobs.Job, error) {
	const op = "unfinished jobs"
	ws, err := findWork(ctx, s.work, bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: activeStates()}}}}, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	wjs, err := s.readWork(ctx, s.work, ws, nil, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out := []*jobs.Job{}
	for _, wj := range wjs {
		if wj.Job != nil && !wj.Job.State.Terminal() {
			out = append(out, wj.Job)
		}
	}
	return out, nil
}

// UnsentTransitions returns up to limit (default 1000) jobs having transitions not yet
// notified and older than olderThan, oldest UpdateTime first, each with only those transitions
// (in their stored order) and without outputs and input files. Jobs whose unsent transitions
// are all too recent take a slot of limit without being returned.
func (s *Store) UnsentTransitions(ctx context.Context, olderThan time.Time, limit int) ([]*jobs.Job, error) {
	const op = "unsent transitions"
	ws, err := findWork(ctx, s.due, bson.D{{Key: "unsent", Value: true}}, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	wjs, err := s.readWork(ctx, s.due, ws, listProjection(), true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out := []*jobs.Job{}
	for _, wj := range wjs {
		j := wj.Job
		if j == nil {
			continue
		}
		s.positions.put(j.ID, j.Transitions)
		var unsent []jobs.Transition
		for _, t := range j.Transitions {
			if !t.NotifSent && t.Time.Before(olderThan) {
				unsent = append(unsent, t)
			}
		}
		if len(unsent) > 0 {
			j.Transitions = unsent
			out = append(out, j)
		}
	}
	return out, nil
}

// JobsToAccount implements reconcile.Store: terminal jobs that were launched, ended at or
// after since and have no accounting yet, oldest first. Work documents kept for accounting
// past the window are settled here (their accounting will never be recorded).
func (s *Store) JobsToAccount(ctx context.Context, since time.Time, limit int) ([]*jobs.Job, error) {
	const op = "jobs to account"
	since = msTime(since)
	expired, err := findWork(ctx, s.work, bson.D{{Key: "account", Value: true}, {Key: "t", Value: bson.D{{Key: "$lt", Value: since}}}}, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for _, w := range expired {
		if _, err := s.work.UpdateOne(ctx, bson.D{{Key: "_id", Value: w.ID}, {Key: "v", Value: w.V}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "account", Value: false}}}}); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if !w.Unsent && w.State.Terminal() {
			if _, err := s.work.DeleteOne(ctx, bson.D{{Key: "_id", Value: w.ID}, {Key: "v", Value: w.V},
				{Key: "unsent", Value: false}, {Key: "account", Value: false}}); err != nil {
				return nil, fmt.Errorf("%s: %w", op, err)
			}
		}
	}
	ws, err := findWork(ctx, s.work, bson.D{{Key: "account", Value: true}, {Key: "t", Value: bson.D{{Key: "$gte", Value: since}}}}, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	wjs, err := s.readWork(ctx, s.work, ws, listProjection(), true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	out := []*jobs.Job{}
	for _, wj := range wjs {
		j := wj.Job
		if j != nil && j.State.Terminal() && j.Launch != nil && !wj.accounted && !j.UpdateTime.Before(since) {
			out = append(out, j)
		}
	}
	return out, nil
}
