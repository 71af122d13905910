package ingest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFoldsCoalesce: while one fold of a job runs, any number of calls share the one next
// fold, which starts after all of them; other jobs fold independently; errors reach the
// callers of that fold only.
func TestFoldsCoalesce(t *testing.T) {
	f := folds{jobs: map[string]*foldQueue{}}
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var mu sync.Mutex
	calledAt := map[int]int32{} // caller → folds started before its call
	fold := func(ctx context.Context, id string) error {
		n := runs.Add(1)
		started <- struct{}{}
		if n == 1 {
			<-release
			return errors.New("first fold failed")
		}
		return nil
	}
	first := make(chan error, 1)
	go func() { first <- f.do(t.Context(), "j", fold) }()
	<-started // the first fold runs and blocks
	const callers = 50
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			calledAt[i] = runs.Load()
			mu.Unlock()
			errs[i] = f.do(t.Context(), "j", fold)
		}()
	}
	// Wait until every caller has joined the next fold, then let the first end.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(calledAt)
		mu.Unlock()
		f.mu.Lock()
		queued := f.jobs["j"] != nil && f.jobs["j"].next != nil
		f.mu.Unlock()
		if n == callers && queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("callers did not queue")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Callers not yet in do join the second fold or, if it has started, a third: both are
	// correct.
	close(release)
	if err := <-first; err == nil || err.Error() != "first fold failed" {
		t.Fatalf("first caller = %v, want the first fold's error", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d = %v, want the second fold's success", i, err)
		}
	}
	if n := runs.Load(); n > 3 {
		t.Fatalf("%d folds for 51 calls, want 2 (3 if a caller arrived after the second started)", n)
	}
	f.mu.Lock()
	left := len(f.jobs)
	f.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d jobs still tracked after their folds", left)
	}

	// Another job is not held up by a running fold.
	block := make(chan struct{})
	go func() {
		_ = f.do(context.Background(), "slow", func(context.Context, string) error { <-block; return nil })
	}()
	done := make(chan error, 1)
	go func() { done <- f.do(t.Context(), "other", func(context.Context, string) error { return nil }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a fold of another job waited for a running fold")
	}
	// A caller whose context ends stops waiting.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.do(ctx, "slow", func(context.Context, string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller = %v", err)
	}
	close(block)
}
