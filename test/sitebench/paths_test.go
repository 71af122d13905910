package sitebench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kbase/cts/test/sitebench"
)

// pathFigures are the submit and status paths measured in one proxy mode.
type pathFigures struct {
	Mode          string         `json:"mode"` // "serialised" (the dev stack's lock: writes alone, reads first) or "parallel reads"
	SubmitPerSC1  float64        `json:"submit_per_s_c1"`
	SubmitP50MsC1 float64        `json:"submit_p50_ms_c1"`
	SubmitPerSC8  float64        `json:"submit_per_s_c8"`
	SubmitP50MsC8 float64        `json:"submit_p50_ms_c8"`
	StatusP50Ms   float64        `json:"status_p50_ms"`
	StatusP99Ms   float64        `json:"status_p99_ms"`
	SubmitCostC1  sitebench.Cost `json:"submit_cost_c1"`
	SubmitCostC8  sitebench.Cost `json:"submit_cost_c8"`
	StatusCost    sitebench.Cost `json:"status_cost"`
	Load          string         `json:"load"`
}

// pathsReport is what $CTS_BENCH_PATHS_OUT receives.
type pathsReport struct {
	Rest   sitebench.Rest `json:"rest"`
	Rounds []pathFigures  `json:"rounds"`
}

// TestRequestPaths measures the submit and status paths alone, each with its cost per request
// (CPU, MongoDB commands, the proxy's queue, auth2 requests), first with the dev stack's proxy
// as the dev site runs it (every write alone; reads share the lock and go ahead of waiting
// writes: devstack.Mongo.SetReadFirst), then with read-only commands taken out of the proxy's
// lock (devstack.Mongo.SetParallelReads), twice each, alternating: how much of a request is
// the proxy's queue. $CTS_BENCH_PATHS is the number of submits per burst
// (status reads: twice as many). Each measurement starts on a quiet site (WaitQuiet, at the
// fresh site's resting rate, measured first: sitebench.Rest); the
// submits' cost includes the work each submit causes while the burst runs (the submitter's
// launch, the notifier's Kafka message); $CTS_BENCH_PATHS_OUT, when set, receives the figures as JSON.
func TestRequestPaths(t *testing.T) {
	n := 0
	if _, err := fmt.Sscan(os.Getenv("CTS_BENCH_PATHS"), &n); err != nil || n <= 0 {
		t.Skip("set CTS_BENCH_PATHS to the number of submits per burst to measure the request paths")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Minute)
	defer cancel()
	s := sitebench.Start(t, sitebench.Options{})
	var out pathsReport
	// Quiet is the fresh site's resting rate, measured before any job, not a fixed count: the
	// periodic passes of a site at rest send several commands a second.
	var err error
	if out.Rest, err = s.MeasureRest(ctx, 2*time.Second, 10); err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh site: %v; by name, a second: %v", out.Rest, out.Rest.Commands)
	quiet := func(what string) {
		t0 := time.Now()
		if !s.WaitQuiet(ctx, out.Rest.Window, out.Rest.Quiet(), 2*time.Minute) {
			t.Logf("the site was still busy before %s after 2 minutes (more than %d MongoDB commands in every %v)", what, out.Rest.Quiet(), out.Rest.Window)
			return
		}
		t.Logf("quiet before %s after %.1f s (at most %d MongoDB commands in %v: the fresh site's rest)", what, time.Since(t0).Seconds(), out.Rest.Quiet(), out.Rest.Window)
	}
	// The two modes alternate, twice, so that neither has the machine's quieter minutes.
	for round, parallel := range []bool{false, true, false, true} {
		if round > 0 {
			// The previous round's canceled jobs are accounted a minute or more after their
			// cancel: not during this round's bursts.
			t0 := time.Now()
			done, err := s.WaitWorkDone(ctx, 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("the previous round's jobs done with (%v) after %.1f s", done, time.Since(t0).Seconds())
		}
		s.SetParallelReads(parallel)
		f := pathFigures{Mode: "serialised"}
		if parallel {
			f.Mode = "parallel reads"
		}
		var ids []string
		for _, c := range []int{1, 8} {
			quiet(fmt.Sprintf("the submits at c=%d", c))
			var b sitebench.Burst
			cost, err := s.Cost(n, func() (err error) {
				b, err = s.Submit(ctx, sitebench.NoopSite, n, c)
				return err
			})
			if err != nil {
				t.Fatalf("%s: submit burst at c=%d: %v", f.Mode, c, err)
			}
			ids = append(ids, b.IDs...)
			if c == 1 {
				f.SubmitPerSC1, f.SubmitP50MsC1, f.SubmitCostC1 = b.PerSecond(), sitebench.Ms(b.Latencies.Median()), cost
			} else {
				f.SubmitPerSC8, f.SubmitP50MsC8, f.SubmitCostC8 = b.PerSecond(), sitebench.Ms(b.Latencies.Median()), cost
			}
			t.Logf("%s: %d submits at c=%d: %.1f/s, p50 %v, p99 %v; per submit %+v", f.Mode, n, c,
				b.PerSecond(), b.Latencies.Median(), b.Latencies.Quantile(0.99), cost)
		}
		quiet("the status reads")
		var st sitebench.Latencies
		cost, err := s.Cost(2*n, func() (err error) {
			st, err = s.Status(ctx, ids, 2*n, 1)
			return err
		})
		if err != nil {
			t.Fatalf("%s: status reads: %v", f.Mode, err)
		}
		f.StatusP50Ms, f.StatusP99Ms, f.StatusCost = sitebench.Ms(st.Median()), sitebench.Ms(st.Quantile(0.99)), cost
		f.Load = uptime()
		t.Logf("%s: %d status reads: p50 %v, p99 %v; per read %+v", f.Mode, 2*n, st.Median(), st.Quantile(0.99), cost)
		t.Logf("%s: load %s", f.Mode, f.Load)
		if err := s.CancelAndSettle(ctx, ids); err != nil {
			t.Fatal(err)
		}
		out.Rounds = append(out.Rounds, f)
	}
	if path := os.Getenv("CTS_BENCH_PATHS_OUT"); path != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
