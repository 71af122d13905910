package runner

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/transfer"
)

type progressSink struct {
	mu  sync.Mutex
	got []protocol.Progress
}

func (s *progressSink) Progress(p protocol.Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, p)
}

func (s *progressSink) reports() []protocol.Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func dl(bytes int64, files int) protocol.Progress {
	return protocol.Progress{Phase: protocol.PhaseDownload, BytesDone: bytes, BytesTotal: 7, FilesDone: files, FilesTotal: 2}
}

func ul(bytes int64, files int) protocol.Progress {
	return protocol.Progress{Phase: protocol.PhaseUpload, BytesDone: bytes, BytesTotal: 16, FilesDone: files, FilesTotal: 2}
}

// TestProgressReports checks the reports of both phases: totals from the assignment's input
// sizes and the output files' sizes, bytes summed over files, the rate limit, the end of each
// phase, and nothing for the container log upload.
func TestProgressReports(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		interval time.Duration
		failDL   bool
		want     []protocol.Progress
	}{
		// The fake moves each input in two steps (half, then all) and each output in one.
		{"rate limited: start and end of each phase", time.Hour, false,
			[]protocol.Progress{dl(0, 0), dl(7, 2), ul(0, 0), ul(16, 2)}},
		{"every step", time.Nanosecond, false,
			[]protocol.Progress{dl(0, 0), dl(1, 0), dl(3, 1), dl(5, 1), dl(7, 2), dl(7, 2),
				ul(0, 0), ul(8, 1), ul(16, 2), ul(16, 2)}},
		{"a failed download ends where it got", time.Hour, true,
			[]protocol.Progress{dl(0, 0), dl(3, 1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			sink := &progressSink{}
			h.cfg.Progress, h.cfg.ProgressInterval = sink, tc.interval
			if tc.failDL {
				h.xfer.download = func(ctx context.Context, ds []transfer.Download) error {
					h.xfer.moved("bucket/in/x.fa", 3)
					h.xfer.moved("bucket/in/d/y.fa", 9) // more than its size: counted as 4 at most
					h.xfer.moved("bucket/in/d/y.fa", 0) // restarted
					h.xfer.moved("elsewhere/z", 5)      // not an input: ignored
					return errors.New("s3 is down")
				}
			}
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := sink.reports(); !slices.Equal(got, tc.want) {
				t.Errorf("reports:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
