package sitebench

import (
	"context"
	"errors"
	"sync"

	"github.com/kbase/cts/test/demo"
)

// parallel calls f for 0..n-1 with at most concurrency calls at once. The first error cancels
// the calls not yet started and is returned.
func parallel(ctx context.Context, n, concurrency int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// isAppCode reports a CTS error response with the given application code.
func isAppCode(err error, code int) bool {
	var ae *demo.APIError
	return errors.As(err, &ae) && ae.AppCode() == code
}
