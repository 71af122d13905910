package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/agent/internal/logstream"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/transfer"
)

type liveSink struct {
	mu    sync.Mutex
	lines map[string][]string
}

func (s *liveSink) Log(stream string, lines []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines[stream] = append(s.lines[stream], lines...)
}

func TestLiveLogsAreRateLimitedAndTheFilesKeepEverything(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sink := &liveSink{lines: map[string][]string{}}
	h.cfg.LiveLog = sink
	h.cfg.LiveLogLimits = logstream.Config{LinesPerSecond: 10, FlushInterval: time.Hour}
	h.rt.run = func(ctx context.Context, spec container.Spec) (container.Result, error) {
		for i := range 100 {
			fmt.Fprintf(spec.Stdout, "out %d\n", i)
		}
		fmt.Fprint(spec.Stderr, "an error line\n")
		return container.Result{}, nil
	}
	if err := h.run(t, t.Context()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	out, errs := sink.lines["stdout"], sink.lines["stderr"]
	sink.mu.Unlock()
	if len(out) != 11 || out[0] != "out 0" || out[9] != "out 9" || !strings.Contains(out[10], "90 lines dropped") {
		t.Errorf("live stdout = %q, want 10 lines and a marker for 90", out)
	}
	if !slices.Equal(errs, []string{"an error line"}) {
		t.Errorf("live stderr = %q", errs)
	}
	for path, content := range h.xfer.uploads() {
		if strings.HasSuffix(path, "stdout.txt") && !strings.Contains(content, "out 99\n") {
			t.Errorf("the uploaded stdout lost lines the live view dropped")
		}
	}
}

// TestHurrySkipsTheLogUpload: a second stop signal during the log upload abandons it and the
// final report still goes out promptly.
func TestHurrySkipsTheLogUpload(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	hurry := make(chan struct{})
	h.cfg.Hurry = hurry
	h.cfg.HurryTimeout = time.Second
	h.cfg.FinalTimeout = time.Minute
	h.rt.run = waitCanceled
	uploadStarted := make(chan struct{})
	var once sync.Once
	h.xfer.upload = func(ctx context.Context, _ []transfer.Upload) error {
		once.Do(func() { close(uploadStarted) })
		<-ctx.Done() // a log upload that would hang for FinalTimeout
		return ctx.Err()
	}
	ctx, stop := context.WithCancelCause(t.Context())
	go func() {
		<-h.rt.started
		stop(ErrShutdown)
		<-uploadStarted
		close(hurry)
	}()
	start := time.Now()
	if err := h.run(t, ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Run took %s after the second signal", el)
	}
	if got := h.rep.states(); !slices.Equal(got, statesOf(job.JobSubmitting, job.JobSubmitted, job.Error)) {
		t.Errorf("states = %v", got)
	}
}

func TestRefdataMount(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		hostPath string
		id       string
		wantErr  bool
	}{
		{name: "mounted read-only", hostPath: "/refdata", id: "r1"},
		{name: "no host path configured", id: "r1", wantErr: true},
		{name: "unsafe id", hostPath: "/refdata", id: "../etc", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.cfg.RefdataHostPath = tc.hostPath
			h.cfg.HostPath = nil
			h.a.RefdataID, h.a.RefdataMountPoint = tc.id, "/refdata"
			r := New(h.cfg, h.rep, h.xfer, h.rt, h.cancels, nil)
			p, err := r.Plan(h.a)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Plan: %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			m := p.Mounts[len(p.Mounts)-1]
			if m.Source != "/refdata/r1" || m.Destination != "/refdata" || !m.ReadOnly {
				t.Errorf("refdata mount %+v", m)
			}
			if !p.Mounts[0].ReadOnly || p.Mounts[1].ReadOnly {
				t.Errorf("input must be read-only, output read-write: %+v", p.Mounts)
			}
		})
	}
}
