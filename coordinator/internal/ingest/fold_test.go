package ingest

import (
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

func sub(states ...job.State) jobs.SubJob {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := jobs.SubJob{}
	for i, st := range states {
		s.Transitions = append(s.Transitions, jobs.Transition{State: st, Time: t0.Add(time.Duration(i) * time.Second)})
		s.State = st
		s.UpdateTime = t0.Add(time.Duration(i) * time.Second)
	}
	return s
}

func TestNextFold(t *testing.T) {
	ds := []job.State{job.Created, job.DownloadSubmitted}
	with := func(extra ...job.State) []job.State { return append(append([]job.State{}, ds...), extra...) }
	okPath := with(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete)
	errPath := with(job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Error)

	cases := []struct {
		name     string
		current  job.State
		subs     []jobs.SubJob
		want     job.State
		terminal bool
	}{
		{"created never folds", job.Created, []jobs.SubJob{sub(with(job.JobSubmitting)...)}, "", false},
		{"waits for all downloads", job.DownloadSubmitted, []jobs.SubJob{sub(with(job.JobSubmitting)...), sub(ds...)}, "", false},
		{"all downloaded", job.DownloadSubmitted, []jobs.SubJob{sub(with(job.JobSubmitting)...), sub(with(job.JobSubmitting, job.JobSubmitted)...)}, job.JobSubmitting, false},
		{"all running", job.JobSubmitting, []jobs.SubJob{sub(with(job.JobSubmitting, job.JobSubmitted)...)}, job.JobSubmitted, false},
		{"one failed container takes the error branch", job.JobSubmitted, []jobs.SubJob{
			sub(with(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting)...),
			sub(with(job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting)...),
		}, job.ErrorProcessingSubmitting, false},
		{"upload branch", job.JobSubmitted, []jobs.SubJob{sub(with(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting)...)}, job.UploadSubmitting, false},
		{"error processing submitted", job.ErrorProcessingSubmitting, []jobs.SubJob{sub(okPath...), sub(errPath[:len(errPath)-1]...)}, job.ErrorProcessingSubmitted, false},
		{"all complete", job.UploadSubmitted, []jobs.SubJob{sub(okPath...), sub(okPath...)}, job.Complete, true},
		{"complete but job lags", job.JobSubmitted, []jobs.SubJob{sub(okPath...)}, job.UploadSubmitting, false},
		{"one error, all terminal", job.JobSubmitted, []jobs.SubJob{sub(okPath...), sub(with(job.Error)...)}, job.Error, true},
		{"direct error waits for the others", job.JobSubmitted, []jobs.SubJob{sub(with(job.JobSubmitting, job.JobSubmitted, job.Error)...), sub(with(job.JobSubmitting, job.JobSubmitted)...)}, "", false},
		{"canceling never folds", job.Canceling, []jobs.SubJob{sub(okPath...)}, "", false},
		{"terminal never folds", job.Complete, []jobs.SubJob{sub(okPath...)}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := NextFold(c.current, c.subs)
			if got.To != c.want || got.Terminal != c.terminal {
				t.Fatalf("NextFold(%s) = %+v, want %s terminal=%v", c.current, got, c.want, c.terminal)
			}
			if got.To != "" && !job.CanTransition(c.current, got.To) {
				t.Fatalf("fold proposes illegal transition %s -> %s", c.current, got.To)
			}
		})
	}
}

// TestFoldWalksToTheEnd drives a job from download_submitted to its end by applying folds.
func TestFoldWalksToTheEnd(t *testing.T) {
	ok := sub(job.Created, job.DownloadSubmitted, job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete)
	bad := sub(job.Created, job.DownloadSubmitted, job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Error)
	for _, tc := range []struct {
		subs []jobs.SubJob
		want []job.State
	}{
		{[]jobs.SubJob{ok, ok}, []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete}},
		{[]jobs.SubJob{ok, bad}, []job.State{job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Error}},
	} {
		cur := job.DownloadSubmitted
		var got []job.State
		for i := 0; i < 10; i++ {
			f := NextFold(cur, tc.subs)
			if f.To == "" {
				break
			}
			got = append(got, f.To)
			cur = f.To
		}
		if len(got) != len(tc.want) {
			t.Fatalf("walk = %v, want %v", got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("walk = %v, want %v", got, tc.want)
			}
		}
	}
}
