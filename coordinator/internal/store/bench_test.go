package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// BenchmarkGetJob measures one job read (with its job_input conversion) through the embedded
// FerretDB; real MongoDB is faster, so this is an upper bound of the store's own cost.
func BenchmarkGetJob(b *testing.B) {
	s, _ := newStore(b)
	if err := s.CreateJob(b.Context(), fullJob(), nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.GetJob(b.Context(), "full"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransitionJob measures one conditional transition (one FindOneAndUpdate).
func BenchmarkTransitionJob(b *testing.B) {
	s, _ := newStore(b)
	i := 0
	for b.Loop() {
		b.StopTimer()
		id := fmt.Sprintf("j%d", i)
		i++
		if err := s.CreateJob(b.Context(), newJob(id, "u", "kbase", t0), nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.TransitionJob(b.Context(), id, []job.State{job.Created},
			jobs.Transition{State: job.DownloadSubmitted, Time: time.Now()}, jobs.JobUpdate{}); err != nil {
			b.Fatal(err)
		}
	}
}
