package ingest

import (
	"context"
	"sync"
)

// folds coalesces the folds of one job. A job of 100 containers gets up to 100 events at
// once, and each would fold it: read the job and all 100 sub-jobs, then write. Folding reads
// the store's current state, so one fold that starts after a set of events were applied
// serves all of them: at most one fold per job runs at a time, and every call arriving
// meanwhile joins the one next fold (started once the running one ends). A caller returns
// when a fold that started after its call has ended, with that fold's error.
type folds struct {
	mu   sync.Mutex
	jobs map[string]*foldQueue
}

// foldQueue is one job's: whether a fold runs, and the next fold's call (nil: none wanted).
type foldQueue struct {
	running bool
	next    *foldCall
}

type foldCall struct {
	done chan struct{}
	err  error
}

// do calls fold (or joins a call of it) as described on folds. fold runs with ctx's values
// but not its cancellation: a fold serves other callers too. do returns ctx's error if ctx
// ends first.
func (f *folds) do(ctx context.Context, id string, fold func(context.Context, string) error) error {
	f.mu.Lock()
	q := f.jobs[id]
	if q == nil {
		q = &foldQueue{}
		f.jobs[id] = q
	}
	if q.next == nil {
		q.next = &foldCall{done: make(chan struct{})}
	}
	call := q.next
	if !q.running {
		q.running = true
		go f.run(context.WithoutCancel(ctx), id, q, fold)
	}
	f.mu.Unlock()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run folds the job while calls wait for a fold, then forgets the job.
func (f *folds) run(ctx context.Context, id string, q *foldQueue, fold func(context.Context, string) error) {
	for {
		f.mu.Lock()
		call := q.next
		q.next = nil
		if call == nil {
			q.running = false
			delete(f.jobs, id)
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		call.err = fold(ctx, id)
		close(call.done)
	}
}
