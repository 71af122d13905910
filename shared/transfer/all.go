package transfer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
)

// errBatchFailed is the cancel cause of a batch's context once one transfer failed.
var errBatchFailed = errors.New("another transfer in the batch failed")

// DownloadAll runs Download for every entry, Concurrency at a time. The first failure cancels
// the rest; the error returned joins every failure (not the cancellations it caused). Two
// entries with the same Dest are refused before anything starts.
func (c *Client) DownloadAll(ctx context.Context, ds []Download) error {
	seen := make(map[string]string, len(ds))
	for _, d := range ds {
		dest := filepath.Clean(d.Dest)
		if prev, ok := seen[dest]; ok {
			return fmt.Errorf("download all: %w: %s and %s both go to %s", ErrInvalid, prev, d.S3Path, d.Dest)
		}
		seen[dest] = d.S3Path
	}
	return c.each(ctx, len(ds), func(ctx context.Context, i int) error {
		return c.Download(ctx, ds[i])
	})
}

// UploadAll runs Upload for every entry, Concurrency at a time, and returns the results in the
// order of us. The first failure cancels the rest; the error returned joins every failure
// (not the cancellations it caused), and the slice then holds zero values for the uploads
// that did not complete. Two entries with the same S3Path are refused before anything starts.
func (c *Client) UploadAll(ctx context.Context, us []Upload) ([]Uploaded, error) {
	seen := make(map[string]string, len(us))
	for _, u := range us {
		if prev, ok := seen[u.S3Path]; ok {
			return nil, fmt.Errorf("upload all: %w: %s and %s both go to %s", ErrInvalid, prev, u.Source, u.S3Path)
		}
		seen[u.S3Path] = u.Source
	}
	res := make([]Uploaded, len(us))
	err := c.each(ctx, len(us), func(ctx context.Context, i int) error {
		up, err := c.Upload(ctx, us[i])
		res[i] = up
		return err
	})
	return res, err
}

// each runs fn(0..n-1), Concurrency at a time, cancelling the others on the first failure.
func (c *Client) each(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, c.cfg.Concurrency)
loop:
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-bctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if bctx.Err() != nil {
				return
			}
			if err := fn(bctx, i); err != nil {
				if errors.Is(context.Cause(bctx), errBatchFailed) &&
					(errors.Is(err, context.Canceled) || errors.Is(err, errBatchFailed)) {
					return // a casualty of another failure, not a failure of its own
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel(errBatchFailed)
			}
		})
	}
	wg.Wait()
	if ctx.Err() == nil {
		return errors.Join(errs...)
	}
	// The caller gave up: say so once rather than once per interrupted transfer.
	cause := ctxErr(ctx)
	own := []error{cause}
	for _, err := range errs {
		if !errors.Is(err, cause) && !errors.Is(err, ctx.Err()) {
			own = append(own, err)
		}
	}
	return errors.Join(own...)
}
