package devmode

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/signals"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
)

// seedBatch is how many jobs SeedFinishedJobs writes at once.
const seedBatch = 500

// SeedFinishedJobs writes n finished jobs into the site's job store, through the store (no
// container runs): copies of the finished job template (its input, image, launch, outputs
// and sub-jobs) under new IDs. Their transitions are the template's states with every
// notification sent; they ended between end-n ms and end, in order, and are marked cleaned,
// like the history of a long-running site (pick end before the reconciler's accounting
// window, or the reconciler will ask the launcher about them). It is how benchmarks give a
// site a history without spending hours running it.
func (e *Env) SeedFinishedJobs(ctx context.Context, template string, n int, end time.Time) error {
	st, err := store.New(ctx, store.Config{URI: e.Config.Mongo.URI, Database: e.Config.Mongo.Database,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("seed jobs: %w", err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	tj, err := st.GetJob(ctx, template)
	if err != nil {
		return fmt.Errorf("seed jobs: template: %w", err)
	}
	if !tj.State.Terminal() {
		return fmt.Errorf("seed jobs: template job %s is %s, not finished", template, tj.State)
	}
	tsubs, err := st.GetSubJobs(ctx, template)
	if err != nil {
		return fmt.Errorf("seed jobs: template: %w", err)
	}
	// In batches through the store's import (a few commands per batch, not several per job).
	for lo := 0; lo < n; lo += seedBatch {
		hi := min(lo+seedBatch, n)
		js := make([]*jobs.Job, 0, hi-lo)
		subs := make([][]jobs.SubJob, 0, hi-lo)
		for i := lo; i < hi; i++ {
			j, s := seedCopy(tj, tsubs, end.Add(-time.Duration(n-i)*time.Millisecond))
			js, subs = append(js, j), append(subs, s)
		}
		if err := st.ImportFinishedJobs(ctx, js, subs); err != nil {
			return fmt.Errorf("seed jobs %d to %d of %d: %w", lo, hi, n, err)
		}
	}
	return nil
}

// SeedCanceledJobs writes n jobs canceled in a burst just now, as a site's cancels leave them
// once their work is done: copies of the finished job template (see SeedFinishedJobs) that
// ended canceled within the last n ms, every notification sent and the accounting recorded,
// not cleaned (they wait in the cleaner's queue), each with the stop signal its cancel
// recorded for the job's agents. It is how benchmarks give a site a burst of cancels without
// running hundreds of agents: nothing is left for a periodic pass to do for these jobs, so a
// site at rest costs what it did before them.
func (e *Env) SeedCanceledJobs(ctx context.Context, template string, n int) error {
	st, err := store.New(ctx, store.Config{URI: e.Config.Mongo.URI, Database: e.Config.Mongo.Database,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("seed canceled jobs: %w", err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	tj, err := st.GetJob(ctx, template)
	if err != nil {
		return fmt.Errorf("seed canceled jobs: template: %w", err)
	}
	if !tj.State.Terminal() || tj.Launch == nil {
		return fmt.Errorf("seed canceled jobs: template job %s is %s, not a finished job that was launched", template, tj.State)
	}
	tsubs, err := st.GetSubJobs(ctx, template)
	if err != nil {
		return fmt.Errorf("seed canceled jobs: template: %w", err)
	}
	end := time.Now()
	for lo := 0; lo < n; lo += seedBatch {
		hi := min(lo+seedBatch, n)
		js := make([]*jobs.Job, 0, hi-lo)
		subs := make([][]jobs.SubJob, 0, hi-lo)
		for i := lo; i < hi; i++ {
			j, ss := seedCopy(tj, tsubs, end.Add(-time.Duration(n-i)*time.Millisecond))
			j.Cleaned = false
			j.State = job.Canceled
			j.Transitions[len(j.Transitions)-1].State = job.Canceled
			js, subs = append(js, j), append(subs, ss)
		}
		if err := st.ImportFinishedJobs(ctx, js, subs); err != nil {
			return fmt.Errorf("seed canceled jobs %d to %d of %d: %w", lo, hi, n, err)
		}
		for _, j := range js {
			if err := st.PublishSignal(ctx, signals.Signal{ID: "stop/" + j.ID, JobID: j.ID, Reason: "the job was canceled", At: j.UpdateTime}); err != nil {
				return fmt.Errorf("seed canceled jobs: %w", err)
			}
		}
	}
	return nil
}

// RebuildJobList lists the jobs written straight into the jobs collection (a test's seeded
// history) in the job list (GET /jobs), through the job store.
func (e *Env) RebuildJobList(ctx context.Context) error {
	st, err := store.New(ctx, store.Config{URI: e.Config.Mongo.URI, Database: e.Config.Mongo.Database,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("rebuild job list: %w", err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	_, err = st.RebuildJobList(ctx)
	return err
}

// seedCopy returns a copy of the finished job t and its sub-jobs under a new ID, its
// transitions shifted so that it ended at end.
func seedCopy(t *jobs.Job, tsubs []jobs.SubJob, end time.Time) (*jobs.Job, []jobs.SubJob) {
	end = end.UTC().Truncate(time.Millisecond)
	j := *t
	j.ID = uuid.NewString()
	j.AdminMeta = map[string]any{}
	j.Cleaned = true
	shift := end.Sub(t.UpdateTime)
	j.UpdateTime = end
	j.Transitions = make([]jobs.Transition, len(t.Transitions))
	for i, tr := range t.Transitions {
		j.Transitions[i] = jobs.Transition{State: tr.State, Time: tr.Time.Add(shift), TransID: uuid.NewString(), NotifSent: true}
	}
	if t.Launch != nil {
		l := *t.Launch
		l.Handle = j.ID
		l.LaunchedAt = l.LaunchedAt.Add(shift)
		j.Launch = &l
	}
	if t.LogPath != "" {
		j.LogPath = t.LogPath[:len(t.LogPath)-len(t.ID)] + j.ID
	}
	subs := make([]jobs.SubJob, len(tsubs))
	for i, s := range tsubs {
		s.JobID = j.ID
		s.UpdateTime = s.UpdateTime.Add(shift)
		s.LastSeen = s.LastSeen.Add(shift)
		tr := make([]jobs.Transition, len(s.Transitions))
		for k, x := range s.Transitions {
			tr[k] = jobs.Transition{State: x.State, Time: x.Time.Add(shift)}
		}
		s.Transitions = tr
		s.Attempt = uuid.NewString()
		subs[i] = s
	}
	return &j, subs
}
