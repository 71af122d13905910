package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/devstack"
)

// Options configure a load run. Zero fields take the defaults of `make load`.
type Options struct {
	// Agents is how many containers run at once at the peak (default 10,000); JobContainers
	// how many containers each job has (default 100): Agents/JobContainers jobs.
	Agents        int
	JobContainers int
	// SubmitConcurrency is how many POST /jobs are in flight at once (default 8).
	SubmitConcurrency int
	// RampTimeout bounds the wait for every agent to be connected (default 10 min).
	RampTimeout time.Duration
	// Hold is how long every agent stays connected at the peak, sending live logs and
	// answering pings (default 60 s); Release spreads the containers' ends (default 60 s).
	Hold, Release time.Duration
	// CancelJobs jobs are canceled at the start of the hold (default 2), to measure the
	// cancel push under load.
	CancelJobs int
	// LogInterval is how often each running container sends live log lines (default 10 s).
	LogInterval time.Duration
	// DrainTimeout bounds the wait for every job to end after the release (default 5 min, or
	// 40 ms per agent when more: the containers' last three events each, at the store's pace).
	DrainTimeout time.Duration
	// Soak, when set, runs the mixed soak instead (see Soak).
	Soak time.Duration
	// Replicas is the number of coordinator processes (default 1); with several, a small
	// reverse proxy balances the agents and the clients over them.
	Replicas int
	// Dir is the run's folder (default: a new temporary folder, removed after the run unless
	// KeepDir); Bin a folder with cts-coordinator and cts-launcher-sim (default: built).
	Dir     string
	KeepDir bool
	Bin     string
	// Configure adjusts the coordinator's configuration.
	Configure func(cfg map[string]any)
	// Log receives progress lines.
	Log io.Writer
	// Profile, when set, is a folder for profiles: the coordinators' CPU (30 s each, over the
	// whole run) and heap and goroutines at the end of the hold, the stack process's CPU, and
	// the MongoDB commands per applied event in the report (store_commands).
	Profile string
	// Snapshot, when set, takes a Site.Snapshot each time it receives (cts-load: on SIGUSR1).
	Snapshot <-chan struct{}
}

func (o *Options) defaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.Agents, 10000)
	def(&o.JobContainers, 100)
	o.JobContainers = min(o.JobContainers, o.Agents)
	def(&o.SubmitConcurrency, 8)
	def(&o.Replicas, 1)
	defd(&o.RampTimeout, 10*time.Minute)
	defd(&o.Hold, time.Minute)
	defd(&o.Release, time.Minute)
	defd(&o.LogInterval, 10*time.Second)
	defd(&o.DrainTimeout, max(5*time.Minute, time.Duration(o.Agents)*40*time.Millisecond))
	if o.CancelJobs < 0 {
		o.CancelJobs = 0
	} else if o.CancelJobs == 0 {
		o.CancelJobs = 2
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Report is load-report.json.
type Report struct {
	// Agents is the peak number of agents connected at once (sessions with an assignment).
	Agents        int `json:"agents"`
	AgentsTarget  int `json:"agents_target"`
	Jobs          int `json:"jobs"`
	JobContainers int `json:"job_containers"`
	// CoordinatorPeakRSSMiB is the largest peak RSS (VmHWM) of a coordinator process.
	CoordinatorPeakRSSMiB float64 `json:"coordinator_peak_rss_mib"`
	// CoordinatorKiBPerAgent is the coordinators' RSS at the peak minus before any agent
	// connected, divided by the agents connected.
	CoordinatorKiBPerAgent float64 `json:"coordinator_kib_per_agent"`
	// CoordinatorHoldCPUPct is the coordinators' CPU while every agent was connected and
	// idle but for live logs and heartbeats, in percent of one core.
	CoordinatorHoldCPUPct float64 `json:"coordinator_hold_cpu_pct"`
	// EventsPerS is events applied and acknowledged per second, from the first event's send to
	// the last acknowledgement.
	EventsPerS    float64 `json:"events_per_s"`
	EventAckP50Ms float64 `json:"event_ack_p50_ms"`
	EventAckP99Ms float64 `json:"event_ack_p99_ms"`
	SubmitPerS    float64 `json:"submit_per_s"`
	SubmitP50Ms   float64 `json:"submit_p50_ms"`
	SubmitP99Ms   float64 `json:"submit_p99_ms"`
	// SubmitErrors counts submits that failed (their jobs are not in the run).
	SubmitErrors int `json:"submit_errors"`
	// CancelPushP99Ms is from a cancel's PUT to its Cancel frame at each connected agent of
	// the job (the bound is 2 s).
	CancelPushP50Ms float64 `json:"cancel_push_p50_ms"`
	CancelPushP99Ms float64 `json:"cancel_push_p99_ms"`
	CancelPushMaxMs float64 `json:"cancel_push_max_ms"`
	CancelPushes    int     `json:"cancel_pushes"`
	JobsCompleted   int     `json:"jobs_completed"`
	JobsCanceled    int     `json:"jobs_canceled"`
	JobsFailed      int     `json:"jobs_failed"`
	// FailedExamples are the admin errors of up to 5 failed jobs; FatalExamples the
	// coordinator's refusals of up to 5 agents.
	FailedExamples []string `json:"failed_examples,omitempty"`
	FatalExamples  []string `json:"fatal_examples,omitempty"`
	// JobsNotTerminal lists jobs that had not ended when the run stopped waiting (must be
	// empty).
	JobsNotTerminal []string `json:"jobs_not_terminal"`
	EventsSent      int      `json:"events_sent"`
	EventsAcked     int      `json:"events_acked"`
	EventsApplied   int      `json:"events_applied"`
	EventsRejected  int      `json:"events_rejected"`
	// EventsKilled counts events never acknowledged nor applied whose agent the launcher
	// killed after its job's cancel (a killed agent cannot resend: not a loss).
	EventsKilled int `json:"events_killed"`
	// EventsInFlight counts events not acknowledged nor applied whose agent still waited for
	// the acknowledgement when the run stopped waiting (their jobs are in jobs_not_terminal).
	EventsInFlight int `json:"events_in_flight"`
	// EventsLost counts events sent, not refused, and never applied (must be 0), but those
	// of EventsKilled and EventsInFlight.
	EventsLost          int      `json:"events_lost"`
	LostExamples        []string `json:"lost_examples,omitempty"`
	Reconnects          int64    `json:"reconnects"`
	ConnectFailures     int64    `json:"connect_failures"`
	AckTimeouts         int64    `json:"ack_timeouts"`
	Fatals              int64    `json:"fatals"`
	LogBatches          int64    `json:"log_batches"`
	RampSeconds         float64  `json:"ramp_seconds"`
	DrainSeconds        float64  `json:"drain_seconds"`
	TotalSeconds        float64  `json:"total_seconds"`
	SoakSeconds         float64  `json:"soak_seconds,omitempty"`
	CoordinatorRestarts int      `json:"coordinator_restarts,omitempty"`
	// Replicas is the number of coordinator processes; ReplicaKills counts those the soak
	// killed (SIGKILL) and started again.
	Replicas         int `json:"replicas"`
	ReplicaKills     int `json:"replica_kills,omitempty"`
	AgentDisconnects int `json:"agent_disconnects,omitempty"`
	// Processes are the CPU and memory of each process of the run.
	Processes map[string]ProcReport `json:"processes"`
	Stack     StackReport           `json:"stack"`
	// StoreCommands counts the MongoDB commands the run sent (through the stack's proxy), by
	// name, from the site's start to the end; StoreCommandsPerEvent divides their sum by the
	// events applied (with -profile only).
	StoreCommands         map[string]int64 `json:"store_commands,omitempty"`
	StoreCommandsPerEvent float64          `json:"store_commands_per_event,omitempty"`
	Errors                []string         `json:"errors,omitempty"`
}

// ProcReport is one process's use over the run.
type ProcReport struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPct is the CPU over the whole run in percent of one core.
	CPUPct     float64 `json:"cpu_pct"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// StackReport says what the run ran on.
type StackReport struct {
	GoVersion string            `json:"go_version"`
	CPUs      int               `json:"cpus"`
	Kernel    string            `json:"kernel"`
	Loadavg   string            `json:"loadavg_at_start"`
	Modules   map[string]string `json:"modules"`
	Notes     []string          `json:"notes"`
}

func stackReport() StackReport {
	r := StackReport{GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Modules: map[string]string{},
		Notes: []string{
			"MongoDB: FerretDB v1 (SQLite) embedded, behind the serialising wire proxy (devstack)",
			"Kafka: kfake; S3: versitygw (posix) in a child process; auth2: devstack fake over HTTP",
			"agents: simulated (test/load), real protocol, no containers",
		}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.Loadavg = strings.TrimSpace(string(b))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			for _, want := range []string{"FerretDB/FerretDB", "versity/versitygw", "twmb/franz-go/pkg/kfake", "go.mongodb.org/mongo-driver/v2", "gorilla/websocket"} {
				if strings.Contains(m.Path, want) {
					r.Modules[m.Path] = m.Version
				}
			}
		}
	}
	return r
}

func mib(b int64) float64 { return float64(b*10/(1<<20)) / 10 }

// Run runs the load benchmark and returns its report. An error means the run could not be
// carried out; a run whose figures miss their targets still returns its report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if o.Soak > 0 {
		return Soak(ctx, o)
	}
	rep := &Report{AgentsTarget: o.Agents, JobContainers: o.JobContainers, Replicas: o.Replicas, Stack: stackReport()}
	site, cleanup, err := startRunSite(ctx, o, SiteOptions{
		Inputs: o.JobContainers, Configure: o.Configure, Log: o.Log, Replicas: o.Replicas,
		Fleet: FleetConfig{LogInterval: o.LogInterval}, Profile: o.Profile,
	})
	if err != nil {
		return nil, err
	}
	defer cleanup()
	start := time.Now()
	baseRSS := site.coordinatorRSS()
	var mongo0 devstack.MongoStats
	if o.Profile != "" {
		mongo0, _ = readMongoStats(o.Profile)
	}
	profCtx, stopProf := context.WithCancel(ctx)
	profDone := make(chan struct{})
	go func() { defer close(profDone); site.ProfileCPU(profCtx, 30*time.Second) }()
	defer func() { stopProf(); <-profDone }()

	// Ramp: every job submitted, every agent connected.
	sizes := jobSizes(o.Agents, o.JobContainers)
	rep.Jobs = len(sizes)
	fmt.Fprintf(o.Log, "submitting %d jobs (%d agents) at concurrency %d\n", len(sizes), o.Agents, o.SubmitConcurrency)
	ids, containers, lat, elapsed, errs := site.submitAll(ctx, sizes, o.SubmitConcurrency, "load/run")
	rep.SubmitErrors = len(errs)
	for _, err := range errs[:min(len(errs), 5)] {
		rep.Errors = append(rep.Errors, err.Error())
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("every submit failed: %w", errs[0])
	}
	rep.SubmitPerS = round1(float64(len(ids)) / elapsed.Seconds())
	rep.SubmitP50Ms, rep.SubmitP99Ms = ms(quantile(lat, 0.5)), ms(quantile(lat, 0.99))
	if err := site.waitOnline(ctx, containers, o.RampTimeout, o.Log); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	rep.RampSeconds = round1(time.Since(start).Seconds())

	// Hold: every agent connected; some jobs canceled.
	holdStart := time.Now()
	cpu0 := site.coordinatorCPU()
	cancels := site.cancelJobs(ctx, ids, o.CancelJobs)
	peakRSS := site.holdFor(ctx, o.Hold, o.Log)
	site.ProfileHeap(ctx, "peak")
	rep.CoordinatorHoldCPUPct = round1(100 * (site.coordinatorCPU() - cpu0).Seconds() / time.Since(holdStart).Seconds())
	_, peak := site.Stats.Online()
	rep.Agents = peak
	if peak > 0 {
		rep.CoordinatorKiBPerAgent = round1(float64(peakRSS-baseRSS) / 1024 / float64(peak))
	}
	pushes := site.cancelPushes(cancels)
	rep.CancelPushes = len(pushes)
	rep.CancelPushP50Ms, rep.CancelPushP99Ms = ms(quantile(pushes, 0.5)), ms(quantile(pushes, 0.99))
	if len(pushes) > 0 {
		rep.CancelPushMaxMs = ms(slices.Max(pushes))
	}

	// Drain: the containers end, the jobs complete.
	fmt.Fprintf(o.Log, "releasing the containers over %s\n", o.Release)
	drainStart := time.Now()
	site.Fleet.Release(o.Release)
	states, notEnded := site.waitEnded(ctx, ids, o.Release+o.DrainTimeout, o.Log)
	rep.DrainSeconds = round1(time.Since(drainStart).Seconds())
	rep.TotalSeconds = round1(time.Since(start).Seconds())
	site.fillOutcome(ctx, rep, ids, states, notEnded)
	if o.Profile != "" {
		if m, err := readMongoStats(o.Profile); err == nil {
			d := m.Sub(mongo0)
			rep.StoreCommands = d.Commands
			total := int64(0)
			for _, n := range d.Commands {
				total += n
			}
			if rep.EventsApplied > 0 {
				rep.StoreCommandsPerEvent = round1(float64(total) / float64(rep.EventsApplied))
			}
		}
	}
	return rep, nil
}

// startRunSite starts the site of a run in o.Dir (or a temporary folder) and returns how to
// close it.
func startRunSite(ctx context.Context, o Options, so SiteOptions) (*Site, func(), error) {
	dir, tmp := o.Dir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cts-load-"); err != nil {
			return nil, nil, err
		}
		tmp = true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	so.Dir, so.Bin = dir, o.Bin
	if o.Profile != "" {
		p, err := filepath.Abs(o.Profile)
		if err != nil {
			return nil, nil, err
		}
		so.Profile = p
	}
	site, err := StartSite(ctx, so)
	if err != nil {
		if tmp && !o.KeepDir {
			_ = os.RemoveAll(dir)
		}
		return nil, nil, err
	}
	snapStop, snapDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(snapDone)
		for {
			select {
			case <-o.Snapshot: // nil: never
				dir, err := site.Snapshot(ctx)
				fmt.Fprintf(o.Log, "snapshot in %s (errors: %v)\n", dir, err)
			case <-snapStop:
				return
			}
		}
	}()
	return site, func() {
		close(snapStop)
		<-snapDone
		site.Close()
		if tmp && !o.KeepDir {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(o.Log, "run folder (logs, configuration): %s\n", dir)
		}
	}, nil
}

// fillOutcome adds the jobs' ends, the event ledger, the counters and the processes' use.
func (s *Site) fillOutcome(ctx context.Context, rep *Report, ids []string, states map[string]string, notEnded []string) {
	for _, id := range ids {
		switch states[id] {
		case "complete":
			rep.JobsCompleted++
		case "canceled":
			rep.JobsCanceled++
		case "error":
			rep.JobsFailed++
			if len(rep.FailedExamples) < 5 {
				var j struct {
					Error      string `json:"error"`
					AdminError string `json:"admin_error"`
				}
				if err := s.retry(ctx, http.MethodGet, "/admin/jobs/"+id, s.AdminToken, &j); err == nil {
					rep.FailedExamples = append(rep.FailedExamples, fmt.Sprintf("job %s: %s (%s)", id, j.Error, j.AdminError))
				}
			}
		}
	}
	for _, a := range s.Fleet.Agents() {
		if o, detail := a.Outcome(); o == "refused" && len(rep.FatalExamples) < 5 {
			rep.FatalExamples = append(rep.FatalExamples, fmt.Sprintf("job %s container %d: %s", a.jobID, a.container, detail))
		}
	}
	rep.JobsNotTerminal = append([]string{}, notEnded...)
	rep.Errors = append(rep.Errors, s.errs...)
	led, err := s.Verify(ctx, ids)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
	}
	rep.EventsSent, rep.EventsAcked, rep.EventsApplied, rep.EventsRejected = led.Sent, led.Acked, led.Applied, led.Rejected
	rep.EventsKilled, rep.EventsInFlight, rep.EventsLost = led.Killed, led.InFlight, len(led.Lost)
	rep.LostExamples = led.Lost[:min(len(led.Lost), 10)]
	lat, first, last := s.Stats.AckLatencies()
	if !first.IsZero() && last.After(first) {
		rep.EventsPerS = round1(float64(s.Stats.EventsAcked.Load()) / last.Sub(first).Seconds())
	}
	rep.EventAckP50Ms, rep.EventAckP99Ms = ms(quantile(lat, 0.5)), ms(quantile(lat, 0.99))
	rep.Reconnects, rep.ConnectFailures = s.Stats.Reconnects.Load(), s.Stats.ConnectFailures.Load()
	rep.AckTimeouts, rep.Fatals, rep.LogBatches = s.Stats.AckTimeouts.Load(), s.Stats.Fatals.Load(), s.Stats.LogBatches.Load()
	rep.Processes = map[string]ProcReport{}
	for _, name := range s.Watch.Names() {
		cpu, _ := s.Watch.Now(name)
		pr := ProcReport{CPUSeconds: round1(cpu.Seconds()), PeakRSSMiB: mib(s.Watch.Peak(name))}
		if rep.TotalSeconds > 0 {
			pr.CPUPct = round1(100 * cpu.Seconds() / rep.TotalSeconds)
		}
		rep.Processes[name] = pr
		for _, c := range s.Coordinators {
			if name == c.Name {
				rep.CoordinatorPeakRSSMiB = max(rep.CoordinatorPeakRSSMiB, pr.PeakRSSMiB)
			}
		}
	}
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// jobSizes splits agents into jobs of per containers (the last one smaller).
func jobSizes(agents, per int) []int {
	var out []int
	for agents > 0 {
		n := min(per, agents)
		out = append(out, n)
		agents -= n
	}
	return out
}

// coordinatorRSS is the coordinator's RSS now; coordinatorCPU its CPU so far.
func (s *Site) coordinatorRSS() int64 {
	_, rss := s.Watch.Now(s.Coordinator.Name)
	return rss
}

func (s *Site) coordinatorCPU() time.Duration {
	cpu, _ := s.Watch.Now(s.Coordinator.Name)
	return cpu
}

// submitAll submits one job per size with concurrency requests in flight, and returns the
// IDs of the jobs accepted and their number of containers, the latencies of every submit, the
// elapsed time and the errors.
func (s *Site) submitAll(ctx context.Context, sizes []int, concurrency int, prefix string) ([]string, int, []time.Duration, time.Duration, []error) {
	ids := make([]string, len(sizes))
	lat := make([]time.Duration, len(sizes))
	errs := make([]error, len(sizes))
	var g errgroup.Group
	g.SetLimit(concurrency)
	start := time.Now()
	for i, n := range sizes {
		g.Go(func() error {
			t0 := time.Now()
			id, err := s.Submit(ctx, n, fmt.Sprintf("%s/%d", prefix, i))
			lat[i] = time.Since(t0)
			if err != nil {
				errs[i] = fmt.Errorf("submit job %d: %w", i, err)
			}
			ids[i] = id
			return nil
		})
	}
	_ = g.Wait()
	elapsed := time.Since(start)
	var okIDs []string
	var failed []error
	containers := 0
	for i := range ids {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else {
			okIDs = append(okIDs, ids[i])
			containers += sizes[i]
		}
	}
	return okIDs, containers, lat, elapsed, failed
}

// waitOnline waits until n agents are connected at once, logging progress every 10 s.
func (s *Site) waitOnline(ctx context.Context, n int, within time.Duration, log io.Writer) error {
	deadline := time.Now().Add(within)
	last := time.Now()
	for {
		now, _ := s.Stats.Online()
		if now >= n {
			fmt.Fprintf(log, "%d agents connected\n", now)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d agents connected after %s (connect failures %d, reconnects %d, refused %d)",
				now, n, within, s.Stats.ConnectFailures.Load(), s.Stats.Reconnects.Load(), s.Stats.Outcomes()["refused"])
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			s.logProgress(log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *Site) logProgress(log io.Writer) {
	now, _ := s.Stats.Online()
	cpu, rss := s.Watch.Now(s.Coordinator.Name)
	fmt.Fprintf(log, "  %d agents connected, %d events acked, %d reconnects; coordinator cpu %.1fs rss %.0f MiB\n", now,
		s.Stats.EventsAcked.Load(), s.Stats.Reconnects.Load(), cpu.Seconds(), mib(rss))
}

// holdFor waits d while the agents stay connected and returns the coordinator's largest RSS
// meanwhile.
func (s *Site) holdFor(ctx context.Context, d time.Duration, log io.Writer) int64 {
	fmt.Fprintf(log, "holding %s with every agent connected\n", d)
	end := time.Now().Add(d)
	var peak int64
	last := time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		peak = max(peak, s.coordinatorRSS())
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			s.logProgress(log)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return max(peak, s.coordinatorRSS())
}

// cancelRecord is one cancel the run made.
type cancelRecord struct {
	id string
	at time.Time
}

// cancelJobs cancels n of the jobs (spread over the list) through the service URL.
func (s *Site) cancelJobs(ctx context.Context, ids []string, n int) []cancelRecord {
	var out []cancelRecord
	if n <= 0 || len(ids) < 2 {
		return nil
	}
	n = min(n, len(ids)/2)
	step := len(ids) / n
	for i := 0; i < n; i++ {
		id := ids[i*step+step/2]
		at := time.Now()
		if err := s.retry(ctx, http.MethodPut, "/jobs/"+id+"/cancel", s.UserToken, nil); err != nil {
			s.errs = append(s.errs, fmt.Sprintf("cancel job %s: %v", id, err))
			continue
		}
		out = append(out, cancelRecord{id: id, at: at})
	}
	return out
}

// cancelPushes returns, for every agent of the canceled jobs that had not ended, the time
// from the cancel's PUT to its Cancel frame. It waits until each such agent has its Cancel (or
// has ended otherwise), at most a minute after the last cancel; an agent that never got it
// counts as the time until then.
func (s *Site) cancelPushes(cs []cancelRecord) []time.Duration {
	if len(cs) == 0 {
		return nil
	}
	waiting := func() bool {
		for _, c := range cs {
			for _, a := range s.Fleet.JobAgents(c.id) {
				if o, _ := a.Outcome(); o == "" && a.CancelReceived().IsZero() {
					return true
				}
			}
		}
		return false
	}
	for waiting() && time.Since(cs[len(cs)-1].at) < time.Minute {
		time.Sleep(200 * time.Millisecond)
	}
	var out []time.Duration
	for _, c := range cs {
		for _, a := range s.Fleet.JobAgents(c.id) {
			at := a.CancelReceived()
			if at.IsZero() {
				if o, _ := a.Outcome(); o != "" {
					continue // ended before (killed, refused): nothing to push to
				}
				at = time.Now()
			}
			out = append(out, at.Sub(c.at))
		}
	}
	return out
}

// waitEnded polls the jobs until each has ended or within passes; it returns the last state
// of each and the IDs of those not ended.
func (s *Site) waitEnded(ctx context.Context, ids []string, within time.Duration, log io.Writer) (map[string]string, []string) {
	deadline := time.Now().Add(within)
	states := map[string]string{}
	var mu sync.Mutex
	pending := slices.Clone(ids)
	last := time.Now()
	for len(pending) > 0 {
		var next []string
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, id := range pending {
			g.Go(func() error {
				st, err := s.State(gctx, id)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					states[id] = st
				}
				if err != nil || (st != "complete" && st != "error" && st != "canceled") {
					next = append(next, id)
				}
				return nil
			})
		}
		_ = g.Wait()
		pending = next
		if len(pending) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Fprintf(log, "  %d of %d jobs still running\n", len(pending), len(ids))
			s.logProgress(log)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	slices.Sort(pending)
	return states, pending
}
