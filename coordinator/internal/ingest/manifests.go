package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/manifest"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/s3path"
)

// hasManifest reports whether a container of the job sent an outputs manifest.
func hasManifest(subs []jobs.SubJob) bool {
	for _, sj := range subs {
		if sj.OutputsManifest != nil {
			return true
		}
	}
	return false
}

// Seal is a stored manifest's seal in the protocol's form.
func Seal(m jobs.Manifest) protocol.OutputsManifest {
	return protocol.OutputsManifest{File: m.File, Count: m.Count, Size: m.Size, CRC64NVME: m.CRC64NVME}
}

// Opener opens a manifest's bytes.
type Opener func(ctx context.Context, m jobs.Manifest) io.ReadCloser

// StreamOpener opens manifests as streams from S3 (a failure shows as the reader's error).
// Closing a stream waits for its S3 read to end.
func StreamOpener(obj Streamer) Opener {
	return func(ctx context.Context, m jobs.Manifest) io.ReadCloser {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			err := obj.Stream(ctx, m.File, 0, 0, func(int64) io.Writer { return pw })
			_ = pw.CloseWithError(err)
		}()
		return &stream{pr, done}
	}
}

type stream struct {
	*io.PipeReader
	done chan struct{}
}

func (s *stream) Close() error {
	err := s.PipeReader.Close()
	<-s.done
	return err
}

// Sources opens the job's outputs as sorted sources for manifest.Merge: each manifest opened
// with open and checked against its seal as it is read, and the outputs kept in the job or
// sub-job documents. owners[i] is the container of source i. close must be called when done.
func Sources(ctx context.Context, open Opener, inline [][]jobs.Output, inlineOwners []int, mans []jobs.Manifest) (srcs []manifest.Source, owners []int, fromManifest []bool, close func()) {
	ctx, cancel := context.WithCancel(ctx)
	var rcs []io.ReadCloser
	for i, outs := range inline {
		if len(outs) == 0 {
			continue
		}
		es := make([]protocol.ManifestEntry, len(outs))
		for k, o := range outs {
			es[k] = protocol.ManifestEntry{File: o.File, CRC64NVME: o.CRC64NVME, Size: -1}
		}
		slices.SortFunc(es, func(a, b protocol.ManifestEntry) int { return strings.Compare(a.File, b.File) })
		srcs = append(srcs, manifest.SliceSource(es))
		owners = append(owners, inlineOwners[i])
		fromManifest = append(fromManifest, false)
	}
	for _, m := range mans {
		rc := open(ctx, m)
		rcs = append(rcs, rc)
		srcs = append(srcs, manifest.NewReader(rc, Seal(m)))
		owners = append(owners, m.Container)
		fromManifest = append(fromManifest, true)
	}
	return srcs, owners, fromManifest, func() {
		cancel()
		for _, rc := range rcs {
			_ = rc.Close()
		}
	}
}

// spool copies each manifest from S3 to a local temporary file and reads it through once,
// so that a manifest is refused (or S3 fails) before any of its entries is used, and the
// HeadObject calls never hold an S3 stream open. It returns an Opener of the copies and a
// cleanup that removes them.
func (s *Service) spool(ctx context.Context, mans []jobs.Manifest) (Opener, func(), error) {
	files := map[string]string{}
	cleanup := func() {
		for _, f := range files {
			_ = os.Remove(f)
		}
	}
	for _, m := range mans {
		f, err := os.CreateTemp("", "cts-outputs-manifest-*")
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("spool outputs manifest: %w", err)
		}
		files[m.File] = f.Name()
		err = s.objects.Stream(ctx, m.File, 0, 0, func(int64) io.Writer { return f })
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = check(files[m.File], m)
		}
		if err != nil {
			cleanup()
			if errors.Is(err, manifest.ErrInvalid) {
				return nil, nil, &manifestError{m.Container, err}
			}
			return nil, nil, fmt.Errorf("read container %d's outputs manifest %s: %w", m.Container, m.File, err)
		}
	}
	return func(_ context.Context, m jobs.Manifest) io.ReadCloser {
		f, err := os.Open(files[m.File])
		if err != nil {
			return io.NopCloser(&errReader{err})
		}
		return f
	}, cleanup, nil
}

// check reads a spooled manifest through against its seal.
func check(name string, m jobs.Manifest) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r := manifest.NewReader(f, Seal(m))
	for {
		if _, err := r.Next(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// manifestError: a container's outputs manifest is not what its agent sealed, or lists a
// file outside the container's output folder.
type manifestError struct {
	Container int
	Err       error
}

func (e *manifestError) Error() string {
	return fmt.Sprintf("container %d's outputs manifest: %v", e.Container, e.Err)
}

func (e *manifestError) Unwrap() error { return e.Err }

// verifyManifests is verifyOutputs for a job with outputs manifests, in constant memory per
// container: it merges every container's outputs (inline or manifest) in file order, checks
// each manifest entry against the container's output folder and every output once against
// S3 (existence, CRC64/NVME, and the size where the manifest gives it). It returns the
// inline outputs (kept in the job document), the manifests and the number of distinct
// outputs.
func (s *Service) verifyManifests(ctx context.Context, j *jobs.Job, subs []jobs.SubJob) ([]jobs.Output, []jobs.Manifest, int, error) {
	var inline [][]jobs.Output
	var inlineOwners []int
	var mans []jobs.Manifest
	for _, sj := range subs {
		if sj.OutputsManifest != nil {
			mans = append(mans, *sj.OutputsManifest)
		} else if len(sj.Outputs) > 0 {
			inline = append(inline, sj.Outputs)
			inlineOwners = append(inlineOwners, sj.SubID)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	open, cleanup, err := s.spool(ctx, mans)
	if err != nil {
		return nil, nil, 0, err
	}
	defer cleanup()
	srcs, owners, fromManifest, closeSrcs := Sources(ctx, open, inline, inlineOwners, mans)
	defer closeSrcs()
	folders := map[int]s3path.Dir{}
	for _, c := range owners {
		if _, ok := folders[c]; !ok {
			d, err := OutputFolder(j, c)
			if err != nil {
				return nil, nil, 0, fmt.Errorf("the output folder of container %d: %w", c, err)
			}
			folders[c] = d
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.HeadConcurrency)
	var outs []jobs.Output
	n := 0
	err = manifest.Merge(srcs, func(src int, e protocol.ManifestEntry) error {
		if gctx.Err() != nil {
			return errHeadFailed
		}
		c := owners[src]
		if fromManifest[src] {
			p, err := s3path.Parse(e.File)
			switch {
			case err != nil:
				return &manifestError{c, fmt.Errorf("%w: output %q: %v", manifest.ErrInvalid, cut(e.File, 2000), err)}
			case p.String() != e.File:
				return &manifestError{c, fmt.Errorf("%w: output %q is not in its normal form %q", manifest.ErrInvalid, e.File, p.String())}
			case !folders[c].Contains(p):
				return &manifestError{c, fmt.Errorf("%w: output %s is not in the container's output folder %s", manifest.ErrInvalid, e.File, folders[c])}
			}
		} else {
			outs = append(outs, jobs.Output{File: e.File, CRC64NVME: e.CRC64NVME})
		}
		n++
		g.Go(func() error {
			meta, err := s.objects.Head(gctx, e.File)
			if err != nil {
				return fmt.Errorf("check output %s: %w", e.File, err)
			}
			if meta.CRC64NVME != e.CRC64NVME {
				return fmt.Errorf("output %s has CRC64/NVME %q in S3, but the agent uploaded %q", e.File, meta.CRC64NVME, e.CRC64NVME)
			}
			if e.Size >= 0 && meta.Size != e.Size {
				return fmt.Errorf("output %s has %d bytes in S3, but the agent uploaded %d", e.File, meta.Size, e.Size)
			}
			return nil
		})
		return nil
	})
	werr := g.Wait()
	var ce *manifest.CollisionError
	var se *manifest.SourceError
	switch {
	case errors.As(err, &ce):
		return nil, nil, 0, &collisionError{File: ce.File, A: owners[ce.A], B: owners[ce.B]}
	case errors.As(err, &se) && errors.Is(se.Err, manifest.ErrInvalid):
		return nil, nil, 0, &manifestError{owners[se.Source], se.Err}
	case err != nil && !errors.Is(err, errHeadFailed):
		return nil, nil, 0, err
	case werr != nil:
		return nil, nil, 0, werr
	}
	if outs == nil {
		outs = []jobs.Output{}
	}
	return outs, mans, n, nil
}

// errHeadFailed stops a merge once a HeadObject call failed (its error is the group's).
var errHeadFailed = errors.New("an output check failed")
