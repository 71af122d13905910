package sitebench_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/test/sitebench"
)

// flat are the figures TestSiteStaysFlat compares: medians, which a busy machine disturbs
// least.
type flat struct {
	submitP50 time.Duration // POST /jobs, one at a time
	statusP50 time.Duration // GET /jobs/{id}/status, one at a time
	idle      float64       // the coordinator process's CPU while idle, % of a core
	// idleScan is FerretDB's time answering the reads that decode a whole collection (any
	// query but one by _id) while idle, in ms a second: the periodic passes' queries.
	idleScan float64
	// growingScans are the reads of the round (requests, cancels, idle) that decoded a whole
	// collection that grows with the history or with recent cancels, by "<command>
	// <collection>".
	growingScans map[string]int64
}

// growing are the collections that grow with a site's history (every job ever run) or with
// its backlog of canceled jobs to clean: nothing may read one of them whole, whatever the
// load. (The stop signals of the last 15 minutes are read whole when they change, a cost
// bounded by that window, which the idle check bounds in time.)
var growing = []string{"jobs", "subjobs", "job_list", "job_views", "job_clean"}

// growingScans returns the scans (devstack.MongoStats.Scans) of the growing collections.
func growingScans(scans map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, n := range scans {
		if _, coll, _ := strings.Cut(k, " "); slices.Contains(growing, coll) && n > 0 {
			out[k] = n
		}
	}
	return out
}

// measureFlat submits n jobs to the noop site one at a time, reads their status 4n times,
// cancels them and measures idle CPU over idle.
func measureFlat(t *testing.T, ctx context.Context, s *sitebench.Site, n int, idle time.Duration, round string) flat {
	t.Helper()
	before := s.Env.Stack.Mongo.Stats()
	b, err := s.Submit(ctx, sitebench.NoopSite, n, 1)
	if err != nil {
		t.Fatalf("%s: %v", round, err)
	}
	st, err := s.Status(ctx, b.IDs, 4*n, 1)
	if err != nil {
		t.Fatalf("%s: %v", round, err)
	}
	if err := s.CancelAndSettle(ctx, b.IDs); err != nil {
		t.Fatalf("%s: %v", round, err)
	}
	time.Sleep(3 * time.Second) // notifications of the cancellations
	var cpu float64
	cost, err := s.Cost(int(idle/time.Second), func() (err error) {
		cpu, err = sitebench.IdleCPU(ctx, idle)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Env.Stack.Mongo.Stats().Sub(before)
	f := flat{submitP50: b.Latencies.Median(), statusP50: st.Median(), idle: cpu, idleScan: cost.MongoScanMs,
		growingScans: growingScans(d.Scans)}
	t.Logf("%s: submit p50 %v, status p50 %v, idle CPU %.2f %% of a core; idle, a second: MongoDB commands %v, FerretDB ms %v, "+
		"whole-collection reads %v taking %.2f ms; the round's whole-collection reads %v", round, f.submitP50, f.statusP50, f.idle,
		cost.Mongo, cost.MongoCommandMs, cost.MongoScans, cost.MongoScanMs, d.Scans)
	return f
}

// TestSiteStaysFlat is the site benchmark at the size CI affords: a site with 2,000 finished
// jobs, and 600 more just canceled in a burst (waiting for the cleaner, their stop signals
// recorded), must answer and idle about as fast as the same site fresh. Its sharp check does
// not depend on the machine's load: in neither round may anything read a collection that
// grows with the history or with recent cancels whole (FerretDB answers any query but one by
// _id by decoding every document). The timing bounds are loose, for a busy 2-core machine
// whose load differs between the two rounds (and the history round's cleaner works through
// the 600 cancels meanwhile), but a periodic pass or a request that reads the whole history,
// or every recent cancel, costs many times the fresh figure at this size (before jobs were
// keyed by _id and the passes read work documents, a status read took hundreds of
// milliseconds and idle CPU most of a core after a few hundred jobs; before the stop signals'
// poll read a version first, FerretDB decoded every signal of the last 15 minutes twice a
// second).
func TestSiteStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("the site benchmark is not short")
	}
	const history, canceled, n, idle = 2000, 600, 20, 10 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	s := sitebench.Start(t, sitebench.Options{})
	template, err := s.RunTrivial(ctx, "flat/template")
	if err != nil {
		t.Fatal(err)
	}
	fresh := measureFlat(t, ctx, s, n, idle, "fresh")
	t0 := time.Now()
	if err := s.Seed(ctx, template.ID, history); err != nil {
		t.Fatal(err)
	}
	if err := s.SeedCanceled(ctx, template.ID, canceled); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d finished and %d canceled jobs in %v", history, canceled, time.Since(t0))
	hist := measureFlat(t, ctx, s, n, idle, fmt.Sprintf("history-%d-canceled-%d", history, canceled))
	t.Logf("load: %s", uptime())
	for _, r := range []struct {
		name  string
		scans map[string]int64
	}{{"fresh", fresh.growingScans}, {"with history", hist.growingScans}} {
		if len(r.scans) > 0 {
			t.Errorf("%s: whole-collection reads of collections that grow with the history or the cancels %v: a request or a "+
				"periodic pass queries one of %v by something other than _id", r.name, r.scans, growing)
		}
	}
	check := func(what string, f, h, slack time.Duration) {
		if limit := 4*f + slack; h > limit {
			t.Errorf("%s with %d finished jobs: %v, fresh %v: more than 4× + %v: something reads the whole history", what, history, h, f, slack)
		}
	}
	check("submit p50", fresh.submitP50, hist.submitP50, 250*time.Millisecond)
	check("status p50", fresh.statusP50, hist.statusP50, 50*time.Millisecond)
	if limit := 2*fresh.idle + 10; hist.idle > limit {
		t.Errorf("idle CPU with %d finished jobs: %.2f %% of a core, fresh %.2f %%: more than 2× + 10 points: a periodic pass reads the whole history", history, hist.idle, fresh.idle)
	}
	if limit := 2*fresh.idleScan + 5; hist.idleScan > limit {
		t.Errorf("FerretDB's time for whole-collection reads while idle with %d finished and %d canceled jobs: %.2f ms a second, fresh %.2f: "+
			"more than 2× + 5 ms: a periodic pass queries a collection that grows with them (the stop signals, the cleaner's queue, the history)",
			history, canceled, hist.idleScan, fresh.idleScan)
	}
}
