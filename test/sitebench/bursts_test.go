package sitebench_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kbase/cts/test/sitebench"
)

// TestBursts submits three bursts of $CTS_BENCH_BURSTS trivial jobs (real agents and runc on
// "local") to one site, each after the previous one ended, and logs each burst's time from its
// first submit to its last job's end: a site that slows down as its history grows shows it
// here (the side-by-side run against Funnel used bursts of 50). Every job must complete.
func TestBursts(t *testing.T) {
	n := 0
	if _, err := fmt.Sscan(os.Getenv("CTS_BENCH_BURSTS"), &n); err != nil || n <= 0 {
		t.Skip("set CTS_BENCH_BURSTS to the number of trivial jobs per burst")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Minute)
	defer cancel()
	s := sitebench.Start(t, sitebench.Options{})
	if _, err := s.RunTrivial(ctx, "bursts/warm"); err != nil { // pulls the image
		t.Fatal(err)
	}
	t.Logf("load before: %s", uptime())
	var totals []time.Duration
	for burst := range 3 {
		t0 := time.Now()
		b, err := s.Submit(ctx, "local", n, 8)
		if err != nil {
			t.Fatalf("burst %d: %v", burst, err)
		}
		submitted := time.Since(t0)
		// One poller, a pass over the jobs not yet ended every 500 ms: polling each job apart
		// would load the site with status reads and measure those.
		var failed []string
		left := b.IDs
		for len(left) > 0 {
			var still []string
			for _, id := range left {
				var st sitebench.JobStatus
				if err := s.API.Do(ctx, "GET", "/jobs/"+id+"/status", s.Demo.UserToken, nil, &st); err != nil {
					t.Fatalf("burst %d: status of %s: %v", burst, id, err)
				}
				switch st.State {
				case "complete":
				case "error", "canceled":
					failed = append(failed, id+" "+st.State)
				default:
					still = append(still, id)
				}
			}
			left = still
			if len(left) > 0 {
				select {
				case <-ctx.Done():
					t.Fatalf("burst %d: %d jobs not ended: %v", burst, len(left), ctx.Err())
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
		total := time.Since(t0)
		if len(failed) > 0 {
			t.Fatalf("burst %d: %d of %d jobs did not complete: %v", burst, len(failed), n, failed)
		}
		totals = append(totals, total)
		t.Logf("burst %d: %d trivial jobs submitted in %v, all complete after %v; load %s", burst+1, n, submitted, total, uptime())
	}
	t.Logf("bursts of %d: %.1f, %.1f, %.1f s", n, totals[0].Seconds(), totals[1].Seconds(), totals[2].Seconds())
}
