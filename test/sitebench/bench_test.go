package sitebench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/test/sitebench"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// sizes are the amounts of work of one benchmark run.
type sizes struct {
	Submits  int           `json:"submits"`  // per burst, at each concurrency
	Statuses int           `json:"statuses"` // status reads, one at a time
	History  int           `json:"history"`  // finished jobs seeded before the second round
	Trivial  int           `json:"trivial"`  // trivial jobs per round
	Idle     time.Duration `json:"-"`        // idle CPU window
	IdleS    float64       `json:"idle_window_s"`
}

// figures are one round's measurements (a fresh site, then the same site with a history).
type figures struct {
	SubmitPerSC1  float64 `json:"submit_per_s_c1"`
	SubmitP50MsC1 float64 `json:"submit_p50_ms_c1"`
	SubmitP99MsC1 float64 `json:"submit_p99_ms_c1"`
	SubmitPerSC8  float64 `json:"submit_per_s_c8"`
	SubmitP50MsC8 float64 `json:"submit_p50_ms_c8"`
	SubmitP99MsC8 float64 `json:"submit_p99_ms_c8"`
	StatusP50Ms   float64 `json:"status_p50_ms"`
	StatusP99Ms   float64 `json:"status_p99_ms"`
	IdleCPUPct    float64 `json:"idle_cpu_pct"`
	// IdleQuiet says the idle window started on a site at rest (sitebench.WaitWorkDone: no
	// job with work left, the round's accounting and notifications done; then WaitQuiet),
	// after IdleWaitS seconds of waiting; false: it did not settle within quietLimit (each
	// wait) and the window measured the work still running.
	IdleQuiet bool    `json:"idle_after_quiet"`
	IdleWaitS float64 `json:"idle_wait_s"`
	// IdleCost is what the idle window cost, per second (Requests: 1 s): the MongoDB commands
	// by name and FerretDB's time for them.
	IdleCost        sitebench.Cost     `json:"idle_cost_per_s"`
	TrivialJobMs    float64            `json:"trivial_job_ms"`
	TrivialPhasesMs map[string]float64 `json:"trivial_phases_ms"`
	TrivialStepsMs  map[string]float64 `json:"trivial_steps_ms"`
	// What each request cost the site (sitebench.Cost).
	SubmitCostC1 sitebench.Cost `json:"submit_cost_c1"`
	SubmitCostC8 sitebench.Cost `json:"submit_cost_c8"`
	StatusCost   sitebench.Cost `json:"status_cost"`
	// StatusCostCanceled is the status reads' cost after the c=8 burst was canceled (the
	// second half of the reads).
	StatusCostCanceled sitebench.Cost `json:"status_cost_after_cancel"`
}

// measure runs one round on s; rest is the site's resting rate (what quiet is).
func measure(t *testing.T, ctx context.Context, s *sitebench.Site, sz sizes, rest sitebench.Rest, round string) figures {
	t.Helper()
	var f figures
	for _, c := range []int{1, 8} {
		var b sitebench.Burst
		var cost sitebench.Cost
		err := sitebench.CPUProfile(profilePath(round, fmt.Sprintf("submit-c%d", c)), func() (err error) {
			cost, err = s.Cost(sz.Submits, func() (err error) {
				b, err = s.Submit(ctx, sitebench.NoopSite, sz.Submits, c)
				return err
			})
			return err
		})
		if err != nil {
			t.Fatalf("%s: submit burst at concurrency %d: %v", round, c, err)
		}
		t.Logf("%s: %d submits at c=%d: %.1f/s, p50 %v, p99 %v; first/last 10%% p50 %v / %v", round, sz.Submits, c,
			b.PerSecond(), b.Latencies.Median(), b.Latencies.Quantile(0.99),
			b.Latencies[:len(b.Latencies)/10].Median(), b.Latencies[len(b.Latencies)*9/10:].Median())
		if c == 1 {
			f.SubmitCostC1 = cost
			f.SubmitPerSC1, f.SubmitP50MsC1, f.SubmitP99MsC1 = b.PerSecond(), sitebench.Ms(b.Latencies.Median()), sitebench.Ms(b.Latencies.Quantile(0.99))
		} else {
			f.SubmitCostC8 = cost
			f.SubmitPerSC8, f.SubmitP50MsC8, f.SubmitP99MsC8 = b.PerSecond(), sitebench.Ms(b.Latencies.Median()), sitebench.Ms(b.Latencies.Quantile(0.99))
		}
		var st sitebench.Latencies
		var stCost sitebench.Cost
		err = sitebench.CPUProfile(profilePath(round, fmt.Sprintf("status-c%d", c)), func() (err error) {
			stCost, err = s.Cost(sz.Statuses/2, func() (err error) {
				st, err = s.Status(ctx, b.IDs, sz.Statuses/2, 1)
				return err
			})
			return err
		})
		if err != nil {
			t.Fatalf("%s: status reads: %v", round, err)
		}
		if c == 8 {
			f.StatusCost = stCost
		}
		if err := s.CancelAndSettle(ctx, b.IDs); err != nil {
			t.Fatalf("%s: %v", round, err)
		}
		var st2 sitebench.Latencies
		st2Cost, err := s.Cost(sz.Statuses/2, func() (err error) {
			st2, err = s.Status(ctx, b.IDs, sz.Statuses/2, 1)
			return err
		})
		if err != nil {
			t.Fatalf("%s: status reads: %v", round, err)
		}
		if c == 8 {
			f.StatusCostCanceled = st2Cost
		}
		t.Logf("%s: status reads after the c=%d burst: p50 %v, p99 %v, %.2f ms a read waiting for the proxy (behind: %v); after its cancel: p50 %v, p99 %v, %.2f ms (behind: %v)",
			round, c, st.Median(), st.Quantile(0.99), stCost.MongoReadLockWaitMs, stCost.MongoReadWaitBehindMs,
			st2.Median(), st2.Quantile(0.99), st2Cost.MongoReadLockWaitMs, st2Cost.MongoReadWaitBehindMs)
		st = append(st, st2...)
		if c == 8 {
			f.StatusP50Ms, f.StatusP99Ms = sitebench.Ms(st.Median()), sitebench.Ms(st.Quantile(0.99))
			t.Logf("%s: %d status reads: p50 %v, p99 %v", round, len(st), st.Median(), st.Quantile(0.99))
		}
	}
	var totals sitebench.Latencies
	phases, steps := map[string]sitebench.Latencies{}, map[string]sitebench.Latencies{}
	for i := range sz.Trivial {
		tr, err := s.RunTrivial(ctx, fmt.Sprintf("bench/trivial/%s/%d", round, i))
		if err != nil {
			t.Fatalf("%s: %v", round, err)
		}
		totals = append(totals, tr.Total)
		for k, v := range tr.Phases {
			phases[k] = append(phases[k], v)
		}
		for k, v := range tr.Steps {
			steps[k] = append(steps[k], v)
		}
	}
	f.TrivialJobMs = sitebench.Ms(totals.Median())
	f.TrivialPhasesMs = map[string]float64{}
	for k, v := range phases {
		f.TrivialPhasesMs[k] = sitebench.Ms(v.Median())
	}
	f.TrivialStepsMs = map[string]float64{}
	for k, v := range steps {
		f.TrivialStepsMs[k] = sitebench.Ms(v.Median())
	}
	t.Logf("%s: trivial job median %v over %d (phases %v; steps %v)", round, totals.Median(), len(totals), f.TrivialPhasesMs, f.TrivialStepsMs)
	// The idle window starts once the site is at rest: the round's follow-up work (the last
	// agents' ends, notifications, the accounting of the canceled jobs) done and the site
	// quiet, so that it measures the site, not that work.
	waited := time.Now()
	done, err := s.WaitWorkDone(ctx, quietLimit)
	if err != nil {
		t.Fatalf("%s: %v", round, err)
	}
	f.IdleQuiet = done && s.WaitQuiet(ctx, rest.Window, rest.Quiet(), quietLimit)
	f.IdleWaitS = float64(time.Since(waited).Milliseconds()) / 1000
	if f.IdleQuiet {
		t.Logf("%s: no job with work left and the site quiet (at most %d MongoDB commands in %v: the fresh site's rest) after %.1f s",
			round, rest.Quiet(), rest.Window, f.IdleWaitS)
	} else {
		t.Logf("%s: jobs with work left (%v), or the site busier than at rest (more than %d MongoDB commands in every %v), after %.1f s: idle CPU measured with that work running",
			round, !done, rest.Quiet(), rest.Window, f.IdleWaitS)
	}
	var idle float64
	err = sitebench.CPUProfile(profilePath(round, "idle"), func() (err error) {
		f.IdleCost, err = s.Cost(int(sz.Idle/time.Second), func() (err error) {
			idle, err = sitebench.IdleCPU(ctx, sz.Idle)
			return err
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.IdleCPUPct = float64(int(idle*100)) / 100
	t.Logf("%s: idle CPU %.2f %% of a core over %v; per second: %v MongoDB commands, FerretDB %.2f ms %v",
		round, idle, sz.Idle, f.IdleCost.Mongo, f.IdleCost.MongoServerMs, f.IdleCost.MongoCommandMs)
	return f
}

// quietLimit is how long a round waits for the site to have no work left, and then for it to
// be quiet, before the idle window.
const quietLimit = 5 * time.Minute

// measureRest measures the resting rate of a fresh site (sitebench.Rest): 10 windows of 2 s.
func measureRest(t *testing.T, ctx context.Context, s *sitebench.Site) sitebench.Rest {
	t.Helper()
	rest, err := s.MeasureRest(ctx, 2*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh site: %v; by name, a second: %v", rest, rest.Commands)
	return rest
}

// profilePath is where the CPU profile of one phase goes when $CTS_BENCH_SITE_PROFILES names
// a folder, else "".
func profilePath(round, phase string) string {
	dir := os.Getenv("CTS_BENCH_SITE_PROFILES")
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, round+"-"+phase+".pprof")
}

// run measures a fresh site, seeds it with sz.History finished jobs and measures it again.
func run(t *testing.T, sz sizes) (rest sitebench.Rest, fresh, hist figures, bare, bareCrun sitebench.Latencies, agentRuntime string) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Minute)
	defer cancel()
	s := sitebench.Start(t, sitebench.Options{})
	s.SetParallelReads(parallelReads())
	s.SetReadFirst(!fifo())
	rest = measureRest(t, ctx, s)
	template, err := s.RunTrivial(ctx, "bench/template")
	if err != nil {
		t.Fatal(err)
	}
	fresh = measure(t, ctx, s, sz, rest, "fresh")
	t0 := time.Now()
	if err := s.Seed(ctx, template.ID, sz.History); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d finished jobs in %v", sz.History, time.Since(t0))
	hist = measure(t, ctx, s, sz, rest, fmt.Sprintf("history-%d", sz.History))
	// The bare runs alternate, runc and crun (where it runs), so that both see the same machine.
	crunWhy := sitebench.CrunUsable()
	bareDir, bareCrunDir := t.TempDir(), t.TempDir()
	for range sz.Trivial {
		l, err := s.BareRunc(ctx, bareDir, 1)
		if err != nil {
			t.Fatal(err)
		}
		bare = append(bare, l...)
		if crunWhy == "" {
			if l, err = s.BareCrun(ctx, bareCrunDir, 1); err != nil {
				t.Fatal(err)
			}
			bareCrun = append(bareCrun, l...)
		}
	}
	t.Logf("bare runc run: median %v over %d", bare.Median(), len(bare))
	if crunWhy == "" {
		t.Logf("bare crun run: median %v over %d", bareCrun.Median(), len(bareCrun))
	} else {
		t.Logf("bare crun run: not timed: %s", crunWhy)
	}
	agentRuntime = "unknown"
	if ev, err := s.AgentTrace(template.ID); err == nil {
		for _, e := range ev {
			// "assignment received" names it at the default log level ("container runtime
			// ready" only at debug).
			if e.Runtime != "" {
				agentRuntime = e.Runtime
				break
			}
		}
	}
	return rest, fresh, hist, bare, bareCrun, agentRuntime
}

// target is one of the targets, checked against this run.
type target struct {
	Name   string  `json:"name"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
}

// report is bench-site.json.
type report struct {
	Command   string `json:"command"`
	Date      string `json:"date"`
	Load      string `json:"load"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Sizes     sizes  `json:"sizes"`
	// ParallelReads says read-only MongoDB commands bypassed the dev stack's serialising
	// proxy ($CTS_BENCH_SITE_PARALLEL_READS=1): a measurement mode, not how the dev site runs.
	ParallelReads bool `json:"parallel_reads"`
	// ReadFirst says reads waiting for the proxy's lock went ahead of the writes waiting (the
	// dev stack's default); false with $CTS_BENCH_SITE_FIFO=1 (first come, first served).
	ReadFirst bool `json:"read_first"`
	// Rest is the fresh site's resting rate, before any job: what a quiet site is.
	Rest    sitebench.Rest `json:"rest"`
	Fresh   figures        `json:"fresh"`
	History figures        `json:"history"`
	// AgentRuntime is the runtime the site's agents ran the trivial jobs with ("oci (crun)",
	// "oci (runc)"), from the template job's agent log.
	AgentRuntime string  `json:"agent_runtime"`
	BareRuncMs   float64 `json:"bare_runc_ms"`
	// BareCrunMs is a bare `crun run` of the same bundle, where crun runs (0 when not).
	BareCrunMs   float64 `json:"bare_crun_ms"`
	OverheadMs   float64 `json:"trivial_overhead_ms"`
	OverheadHist float64 `json:"trivial_overhead_ms_history"`
	// OverheadCrunMs and OverheadCrunHist are the trivial job's time above a bare crun run.
	OverheadCrunMs   float64  `json:"trivial_overhead_ms_above_crun,omitempty"`
	OverheadCrunHist float64  `json:"trivial_overhead_ms_history_above_crun,omitempty"`
	Targets          []target `json:"targets"`
}

func uptime() string {
	b, err := exec.Command("uptime").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}

// TestBenchSite is `make bench-site`: the figures on a fresh site and after 10,000
// finished jobs, written to $CTS_BENCH_SITE_OUT (bench-site.json). It runs only when that
// variable is set (it takes several minutes).
func TestBenchSite(t *testing.T) {
	out := os.Getenv("CTS_BENCH_SITE_OUT")
	if out == "" {
		t.Skip("set CTS_BENCH_SITE_OUT to the report's path to run the site benchmark (make bench-site)")
	}
	sz := sizes{Submits: 300, Statuses: 1000, History: 10000, Trivial: 10, Idle: 30 * time.Second}
	if v := os.Getenv("CTS_BENCH_SITE_SIZES"); v != "" {
		// submits,statuses,history,trivial,idle seconds: smaller runs while working on it.
		var idle int
		if _, err := fmt.Sscanf(v, "%d,%d,%d,%d,%d", &sz.Submits, &sz.Statuses, &sz.History, &sz.Trivial, &idle); err != nil {
			t.Fatalf("CTS_BENCH_SITE_SIZES=%q: want submits,statuses,history,trivial,idle_seconds: %v", v, err)
		}
		sz.Idle = time.Duration(idle) * time.Second
	}
	sz.IdleS = sz.Idle.Seconds()
	loadBefore := uptime()
	rest, fresh, hist, bare, bareCrun, agentRuntime := run(t, sz)
	r := report{
		Command: "make bench-site", Date: time.Now().UTC().Format(time.RFC3339),
		Load: "before: " + loadBefore + "; after: " + uptime(), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Sizes: sz, ParallelReads: parallelReads(), ReadFirst: !fifo(), Rest: rest, Fresh: fresh, History: hist, BareRuncMs: sitebench.Ms(bare.Median()),
		AgentRuntime: agentRuntime,
	}
	r.OverheadMs = float64(int((fresh.TrivialJobMs-r.BareRuncMs)*10)) / 10
	r.OverheadHist = float64(int((hist.TrivialJobMs-r.BareRuncMs)*10)) / 10
	if len(bareCrun) > 0 {
		r.BareCrunMs = sitebench.Ms(bareCrun.Median())
		r.OverheadCrunMs = float64(int((fresh.TrivialJobMs-r.BareCrunMs)*10)) / 10
		r.OverheadCrunHist = float64(int((hist.TrivialJobMs-r.BareCrunMs)*10)) / 10
	}
	within := func(name string, f, h float64) target {
		return target{Name: name + " with history / fresh", Target: "≤ 1.5", Value: ratio(h, f), Met: ratio(h, f) <= 1.5}
	}
	r.Targets = []target{
		{"submit_per_s_c8", "≥ 100", hist.SubmitPerSC8, hist.SubmitPerSC8 >= 100 && fresh.SubmitPerSC8 >= 100},
		{"submit_p50_ms_c1", "≤ 20", hist.SubmitP50MsC1, hist.SubmitP50MsC1 <= 20 && fresh.SubmitP50MsC1 <= 20},
		{"status_p99_ms", "≤ 20", hist.StatusP99Ms, hist.StatusP99Ms <= 20 && fresh.StatusP99Ms <= 20},
		{"idle_cpu_pct with history", "≤ 2", hist.IdleCPUPct, hist.IdleCPUPct <= 2},
		{"trivial_overhead_ms", "≤ 100", max(r.OverheadMs, r.OverheadHist), max(r.OverheadMs, r.OverheadHist) <= 100},
		{"history round at rest before its idle window", "1 (at rest)", b2f(hist.IdleQuiet), hist.IdleQuiet},
		within("submit_per_s_c1", 1/fresh.SubmitPerSC1, 1/hist.SubmitPerSC1),
		within("submit_per_s_c8", 1/fresh.SubmitPerSC8, 1/hist.SubmitPerSC8),
		within("submit_p50_ms_c1", fresh.SubmitP50MsC1, hist.SubmitP50MsC1),
		within("submit_p50_ms_c8", fresh.SubmitP50MsC8, hist.SubmitP50MsC8),
		within("status_p99_ms", fresh.StatusP99Ms, hist.StatusP99Ms),
		within("idle_cpu_pct", fresh.IdleCPUPct, hist.IdleCPUPct),
		within("trivial_job_ms", fresh.TrivialJobMs, hist.TrivialJobMs),
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(out)
	t.Logf("wrote %s", abs)
	for _, tg := range r.Targets {
		if !tg.Met {
			t.Logf("target not met on this run: %s %s, measured %.2f", tg.Name, tg.Target, tg.Value)
		}
	}
}

// parallelReads reports whether $CTS_BENCH_SITE_PARALLEL_READS asks for the proxy's
// measurement mode (devstack.Mongo.SetParallelReads).
func parallelReads() bool { return os.Getenv("CTS_BENCH_SITE_PARALLEL_READS") == "1" }

// fifo reports whether $CTS_BENCH_SITE_FIFO asks for the proxy's lock in arrival order, as
// before the read-first order (devstack.Mongo.SetReadFirst).
func fifo() bool { return os.Getenv("CTS_BENCH_SITE_FIFO") == "1" }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func ratio(h, f float64) float64 {
	if f <= 0 {
		return 0
	}
	return float64(int(h/f*100)) / 100
}

// TestTrivialTrace runs $CTS_BENCH_TRIVIAL trivial jobs on a fresh site and logs the median of
// each step, and every event of the last job's agent: the tool for trimming a job's overhead.
func TestTrivialTrace(t *testing.T) {
	n := 0
	if _, err := fmt.Sscan(os.Getenv("CTS_BENCH_TRIVIAL"), &n); err != nil || n <= 0 {
		t.Skip("set CTS_BENCH_TRIVIAL to the number of trivial jobs to trace")
	}
	ctx := t.Context()
	s := sitebench.Start(t, sitebench.Options{Configure: func(cfg *app.Config) {
		// The agents' debug lines mark the steps inside each phase.
		for i := range cfg.Sites {
			env := maps.Clone(cfg.Sites[i].WorkerEnv)
			env["CTS_LOG_LEVEL"] = "debug"
			cfg.Sites[i].WorkerEnv = env
		}
	}})
	var totals, coordCPU sitebench.Latencies
	var agentCPU, runtimeCPU []float64
	steps := map[string]sitebench.Latencies{}
	var last sitebench.Trivial
	for i := range n + 1 {
		tr, err := s.RunTrivial(ctx, fmt.Sprintf("trace/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue // the first pulls the image
		}
		totals = append(totals, tr.Total)
		coordCPU = append(coordCPU, tr.CoordinatorCPU)
		if tr.AgentCPUMs > 0 {
			agentCPU, runtimeCPU = append(agentCPU, tr.AgentCPUMs), append(runtimeCPU, tr.RuntimeCPUMs)
		}
		for k, v := range tr.Steps {
			steps[k] = append(steps[k], v)
		}
		last = tr
	}
	// The bare runs alternate, so that both see the same machine.
	var bare, bareCrun sitebench.Latencies
	crunWhy := sitebench.CrunUsable()
	bareDir, bareCrunDir := t.TempDir(), t.TempDir()
	for range n {
		l, err := s.BareRunc(ctx, bareDir, 1)
		if err != nil {
			t.Fatal(err)
		}
		bare = append(bare, l...)
		if crunWhy == "" {
			l, err := s.BareCrun(ctx, bareCrunDir, 1)
			if err != nil {
				t.Fatal(err)
			}
			bareCrun = append(bareCrun, l...)
		}
	}
	puts := map[int]sitebench.Latencies{}
	for _, conc := range []int{1, 3} {
		var err error
		if puts[conc], err = s.SmallPuts(ctx, 2*n, conc); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := s.AgentTrace(last.ID)
	if err != nil {
		t.Fatal(err)
	}
	runtimeOf := "unknown"
	for _, e := range ev {
		if e.Msg == "container runtime ready" && e.Runtime != "" {
			runtimeOf = e.Runtime
		}
	}
	t.Logf("load: %s", uptime())
	t.Logf("agents' runtime: %s (CTS_AGENT_RUNTIME=%s)", runtimeOf, s.Env.AgentRuntime)
	t.Logf("trivial job: median %v over %d; bare runc run: median %v", totals.Median(), n, bare.Median())
	t.Logf("  overhead above bare runc run: %.1f ms", sitebench.Ms(totals.Median()-bare.Median()))
	if crunWhy == "" {
		t.Logf("  bare crun run: median %v; overhead above it: %.1f ms", bareCrun.Median(), sitebench.Ms(totals.Median()-bareCrun.Median()))
	} else {
		t.Logf("  bare crun run: not timed: %s", crunWhy)
	}
	t.Logf("  S3 PUT of a 30-byte object alone: median %.1f ms; three at once: median %.1f ms (%d each)",
		sitebench.Ms(puts[1].Median()), sitebench.Ms(puts[3].Median()), 2*n)
	medianOf := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	t.Logf("  CPU per job, medians: this process (coordinator and embedded stack, S3 excepted) %.1f ms; agent %.1f ms; its runtime processes (runc or crun, and the container's) %.1f ms",
		sitebench.Ms(coordCPU.Median()), medianOf(agentCPU), medianOf(runtimeCPU))
	for _, k := range sitebench.TrivialSteps {
		t.Logf("  %-18s median %7.1f ms", k, sitebench.Ms(steps[k].Median()))
	}
	ev = append(ev, sitebench.AgentEvent{Time: last.Created, Msg: "job created (transition)"},
		sitebench.AgentEvent{Time: last.Completed, Msg: "job complete (transition)"})
	slices.SortStableFunc(ev, func(a, b sitebench.AgentEvent) int { return a.Time.Compare(b.Time) })
	var t0 time.Time // the agent's start: the launcher's steps before it are negative
	for _, e := range ev {
		if e.Msg == "agent process started" {
			t0 = e.Time
		}
	}
	for _, e := range ev {
		took := ""
		if e.Seconds > 0 {
			took = fmt.Sprintf(" (took %.1f ms)", e.Seconds*1000)
		}
		if e.Runtime != "" {
			took += " [" + e.Runtime + "]"
		}
		t.Logf("  %+8.1f ms  %s %s%s", sitebench.Ms(e.Time.Sub(t0)), e.Msg, e.State, took)
	}
}
