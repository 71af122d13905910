package sitebench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack/auth2"
)

// ProcessCPU returns the CPU time (user + system, all threads, children excluded) this process
// has used so far. The coordinator of a benchmark site runs in this process, with the
// embedded MongoDB-wire server, Kafka, registry and auth2 (as in `cts dev`); S3 runs in a
// child process and is not counted.
func ProcessCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// IdleCPU measures the CPU this process uses over window while nothing is asked of it, in
// percent of one core. The caller makes sure the site is idle (its jobs ended) and sends no
// request meanwhile.
func IdleCPU(ctx context.Context, window time.Duration) (float64, error) {
	c0, err := ProcessCPU()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	c1, err := ProcessCPU()
	if err != nil {
		return 0, err
	}
	return 100 * float64(c1-c0) / float64(time.Since(t0)), nil
}

// Trivial is one trivial job: a one-container job summarising the small input on "local".
type Trivial struct {
	ID string
	// Total is from the created transition to the complete one (the coordinator's clock).
	Total time.Duration
	// Created and Completed are the times of those two transitions.
	Created, Completed time.Time
	// Phases are the times between consecutive transitions, named "from→to".
	Phases map[string]time.Duration
	// Steps are the job's steps as its agent saw them (TrivialSteps), when its log was found.
	Steps map[string]time.Duration
	// CoordinatorCPU is this process's CPU (the coordinator and the embedded stack, S3
	// excepted) from the submit to the end of the job's agent.
	CoordinatorCPU time.Duration
	// AgentCPUMs and RuntimeCPUMs are the agent's CPU and its runtime processes' (runc), from
	// its last line; 0 when it logs none (an agent without the line).
	AgentCPUMs, RuntimeCPUMs float64
}

// TrivialSteps are the steps of a trivial job, from the coordinator's transitions and its
// agent's log: what each costs, end to end.
var TrivialSteps = []string{"launch", "agent start", "download", "container start", "container run", "upload and report", "final fold"}

// RunTrivial submits a trivial job, waits for it and returns its times; a job that does not
// complete is an error.
func (s *Site) RunTrivial(ctx context.Context, outDir string) (Trivial, error) {
	var resp struct {
		JobID string `json:"job_id"`
	}
	cpu0, err := ProcessCPU()
	if err != nil {
		return Trivial{}, err
	}
	if err := s.API.Do(ctx, "POST", "/jobs", s.Demo.UserToken, s.JobBody("local", outDir), &resp); err != nil {
		return Trivial{}, fmt.Errorf("submit trivial job: %w", err)
	}
	// Watch the agent's end on disk rather than polling the job's status every 20 ms: the
	// polls (each a request with its store reads) would compete with the job for the
	// coordinator's CPU and its one MongoDB connection. The status is still read now and
	// then, so that a job that fails before its agent runs is not waited for in vain.
	for lastStatus := time.Now(); !s.agentEnded(resp.JobID); {
		select {
		case <-ctx.Done():
			return Trivial{}, fmt.Errorf("trivial job %s: %w", resp.JobID, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(lastStatus) > time.Second {
			var st JobStatus
			if err := s.API.Do(ctx, "GET", "/jobs/"+resp.JobID+"/status", s.Demo.UserToken, nil, &st); err != nil {
				return Trivial{}, fmt.Errorf("status of %s: %w", resp.JobID, err)
			}
			if st.State == "error" || st.State == "canceled" {
				break
			}
			lastStatus = time.Now()
		}
	}
	st, err := s.WaitEnded(ctx, resp.JobID)
	if err != nil {
		return Trivial{}, err
	}
	if st.State != "complete" {
		var j map[string]any
		_ = s.API.Do(ctx, "GET", "/admin/jobs/"+resp.JobID, s.Demo.AdminToken, nil, &j)
		return Trivial{}, fmt.Errorf("trivial job %s ended %s: %v", resp.JobID, st.State, j["admin_error"])
	}
	tr := Trivial{ID: resp.JobID, Phases: map[string]time.Duration{}}
	ts := st.Transitions
	tr.Created, tr.Completed = ts[0].Time, ts[len(ts)-1].Time
	tr.Total = tr.Completed.Sub(tr.Created)
	for i := 1; i < len(ts); i++ {
		tr.Phases[ts[i-1].State+"→"+ts[i].State] = ts[i].Time.Sub(ts[i-1].Time)
	}
	// The coordinator folds the final event before it acknowledges it, so the job may read
	// complete before its agent has logged the acknowledgement: wait for that line, and for
	// the agent's end (its supervisor's exit record: the agent deletes its container after
	// its final report), so that the next job starts on a node with nothing of this one left
	// running (bounded).
	ev, err := s.AgentTrace(tr.ID)
	for deadline := time.Now().Add(10 * time.Second); err == nil && !(logged(ev, "final state reported") && s.agentEnded(tr.ID)) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		ev, err = s.AgentTrace(tr.ID)
	}
	cpu1, cerr := ProcessCPU()
	if cerr != nil {
		return Trivial{}, cerr
	}
	tr.CoordinatorCPU = cpu1 - cpu0
	if err == nil {
		at := func(msg string) time.Time {
			for _, e := range ev {
				if e.Msg == msg {
					return e.Time
				}
			}
			return time.Time{}
		}
		for _, e := range ev {
			if e.Msg == "agent done" {
				tr.AgentCPUMs, tr.RuntimeCPUMs = e.CPUMs, e.ChildrenCPUMs
			}
		}
		marks := []time.Time{ts[0].Time, at("agent process started"), at("assignment received"),
			at("inputs downloaded and verified"), at("container starting"), at("container exited"),
			at("final state reported"), ts[len(ts)-1].Time}
		tr.Steps = map[string]time.Duration{}
		for i, name := range TrivialSteps {
			if !marks[i].IsZero() && !marks[i+1].IsZero() {
				tr.Steps[name] = marks[i+1].Sub(marks[i])
			}
		}
	}
	return tr, nil
}

// agentEnded reports whether the agent of container 0 of job id (its first attempt) has ended:
// the local launcher's supervisor wrote its exit record.
func (s *Site) agentEnded(id string) bool {
	exits, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "0", "exit"))
	return len(exits) > 0
}

// logged reports whether ev holds a line with message msg.
func logged(ev []AgentEvent, msg string) bool {
	for _, e := range ev {
		if e.Msg == msg {
			return true
		}
	}
	return false
}

// CPUProfile records a CPU profile of this process (the coordinator and the embedded stack)
// into path while f runs; with path "" it only runs f.
func CPUProfile(path string, f func() error) error {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	ferr := f()
	pprof.StopCPUProfile()
	return ferr
}

// Cost is what a batch of requests cost the site, per request: this process's CPU (the
// coordinator and the embedded stack it runs, FerretDB included; S3 runs in a child process
// and is not counted), the MongoDB commands that went through the dev stack's proxy by name,
// the time they waited for the proxy's lock and the time FerretDB took to answer them, and the
// requests auth2 received. Commands and auth2 requests of the site's background work (the
// submitter, reconciler, agent sessions) during the batch are counted too.
type Cost struct {
	Requests        int                `json:"requests"`
	CPUMs           float64            `json:"cpu_ms"`
	Mongo           map[string]float64 `json:"mongo_commands"`
	MongoLockWaitMs float64            `json:"mongo_lock_wait_ms"`
	MongoServerMs   float64            `json:"mongo_server_ms"`
	// MongoCommandMs is MongoServerMs by command name.
	MongoCommandMs map[string]float64 `json:"mongo_command_ms"`
	// MongoScans are the reads FerretDB answered by decoding a whole collection, by
	// "<command> <collection>" (devstack.MongoStats.Scans), and MongoScanMs its time for them.
	MongoScans  map[string]float64 `json:"mongo_scans"`
	MongoScanMs float64            `json:"mongo_scan_ms"`
	// MongoByCollection are the commands by "<command> <collection>" and
	// MongoByCollectionMs FerretDB's time for them (devstack.MongoStats.ByCollection).
	MongoByCollection   map[string]float64 `json:"mongo_by_collection"`
	MongoByCollectionMs map[string]float64 `json:"mongo_by_collection_ms"`
	// MongoReadLockWaitMs is the part of MongoLockWaitMs that reads waited, and
	// MongoReadWaitBehindMs that wait by the "<command> <collection>" that held the proxy's
	// lock meanwhile (devstack.MongoStats.ReadWaitBehind): what reads queued behind.
	MongoReadLockWaitMs   float64            `json:"mongo_read_lock_wait_ms"`
	MongoReadWaitBehindMs map[string]float64 `json:"mongo_read_wait_behind_ms"`
	Auth2                 float64            `json:"auth2_requests"`
}

// Cost runs f, which makes n requests, and returns their cost per request.
func (s *Site) Cost(n int, f func() error) (Cost, error) {
	mongo := s.Env.Stack.Mongo
	authReqs := func() int {
		a := s.Env.Stack.Auth
		return a.Requests(auth2.PathToken) + a.Requests(auth2.PathMe) + a.Requests(auth2.PathUsers)
	}
	c0, err := ProcessCPU()
	if err != nil {
		return Cost{}, err
	}
	m0, a0 := mongo.Stats(), authReqs()
	if err := f(); err != nil {
		return Cost{}, err
	}
	c1, err := ProcessCPU()
	if err != nil {
		return Cost{}, err
	}
	d := mongo.Stats().Sub(m0)
	per := func(x float64) float64 { return float64(int(x/float64(max(n, 1))*100)) / 100 }
	c := Cost{Requests: n, CPUMs: per(float64((c1 - c0).Microseconds()) / 1000), Mongo: map[string]float64{},
		MongoLockWaitMs: per(float64(d.LockWait.Microseconds()) / 1000), MongoServerMs: per(float64(d.Server.Microseconds()) / 1000),
		Auth2: per(float64(authReqs() - a0))}
	for k, v := range d.Commands {
		c.Mongo[k] = per(float64(v))
	}
	c.MongoCommandMs = map[string]float64{}
	for k, v := range d.CommandServer {
		c.MongoCommandMs[k] = per(float64(v.Microseconds()) / 1000)
	}
	c.MongoScans = map[string]float64{}
	for k, v := range d.Scans {
		c.MongoScans[k] = per(float64(v))
	}
	c.MongoScanMs = per(float64(d.ScanServer.Microseconds()) / 1000)
	c.MongoByCollection, c.MongoByCollectionMs, c.MongoReadWaitBehindMs = map[string]float64{}, map[string]float64{}, map[string]float64{}
	for k, v := range d.ByCollection {
		c.MongoByCollection[k] = per(float64(v))
	}
	for k, v := range d.CollectionServer {
		c.MongoByCollectionMs[k] = per(float64(v.Microseconds()) / 1000)
	}
	for k, v := range d.ReadWaitBehind {
		c.MongoReadWaitBehindMs[k] = per(float64(v.Microseconds()) / 1000)
	}
	c.MongoReadLockWaitMs = per(float64(d.ReadLockWait.Microseconds()) / 1000)
	return c, nil
}

// SetParallelReads lets read-only MongoDB commands bypass the dev stack's serialising proxy
// (devstack.Mongo.SetParallelReads): a measurement of how much the proxy's queue costs.
func (s *Site) SetParallelReads(on bool) { s.Env.Stack.Mongo.SetParallelReads(on) }

// SetReadFirst turns the dev stack's proxy's read-first order on (its default) or off
// (devstack.Mongo.SetReadFirst).
func (s *Site) SetReadFirst(on bool) { s.Env.Stack.Mongo.SetReadFirst(on) }

// Rest is what a site at rest sends MongoDB: the periodic passes of a site with nothing to do
// (the stop signals' and live data polls, the submitter, the leases, the notifier, the
// metrics, the reconciler), measured on a fresh site before any job.
type Rest struct {
	// Window is the length of each window counted, Windows how many were.
	Window  time.Duration `json:"-"`
	WindowS float64       `json:"window_s"`
	Windows int           `json:"windows"`
	// Median is the median number of commands in a window, Max the most.
	Median int64 `json:"median_commands"`
	Max    int64 `json:"max_commands"`
	// PerSecond is the commands a second over all windows, Commands those by name.
	PerSecond float64            `json:"commands_per_s"`
	Commands  map[string]float64 `json:"commands_per_s_by_name"`
}

// Quiet is the most commands a window of a site at rest may hold, from its resting rate: a
// quarter above the median window plus two (a window that a slow pass, every 15 or 30 s,
// falls in holds a few more). A site that stays above it has work in flight, or a pass whose
// rate grew with what the site did.
func (r Rest) Quiet() int64 { return r.Median + r.Median/4 + 2 }

// String says what the rest is, for a test's log.
func (r Rest) String() string {
	return fmt.Sprintf("%.2f MongoDB commands a second at rest (median %d, most %d in %d windows of %v; quiet: at most %d)",
		r.PerSecond, r.Median, r.Max, r.Windows, r.Window, r.Quiet())
}

// MeasureRest counts the MongoDB commands of n consecutive windows on a site that is at rest
// (a fresh site: its start-up work done, no job yet) and returns its resting rate.
func (s *Site) MeasureRest(ctx context.Context, window time.Duration, n int) (Rest, error) {
	r := Rest{Window: window, WindowS: window.Seconds(), Windows: n, Commands: map[string]float64{}}
	counts := make([]int64, 0, n)
	first := s.Env.Stack.Mongo.Stats()
	prev := first
	for range n {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(window):
		}
		cur := s.Env.Stack.Mongo.Stats()
		d := cur.Sub(prev)
		counts = append(counts, d.Serialised+d.Parallel)
		prev = cur
	}
	total := prev.Sub(first)
	secs := (window * time.Duration(n)).Seconds()
	r.PerSecond = float64(int(float64(total.Serialised+total.Parallel)/secs*100)) / 100
	for k, v := range total.Commands {
		r.Commands[k] = float64(int(float64(v)/secs*100)) / 100
	}
	slices.Sort(counts)
	r.Median, r.Max = counts[len(counts)/2], counts[len(counts)-1]
	return r, nil
}

// WaitQuiet waits until the site's background work has settled: until a whole window passes
// with at most maxCommands MongoDB commands, or until limit; it reports whether it settled.
// Measurements of one request path start from a quiet site so that the work earlier requests
// left behind (launches, notifications, accounting) is not counted as theirs.
func (s *Site) WaitQuiet(ctx context.Context, window time.Duration, maxCommands int64, limit time.Duration) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		before := s.Env.Stack.Mongo.Stats()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(window):
		}
		d := s.Env.Stack.Mongo.Stats().Sub(before)
		if d.Serialised+d.Parallel <= maxCommands {
			return true
		}
	}
	return false
}

// WaitWorkDone waits until no job of the site has work left, or until limit; it reports
// whether none had. A job has work left while its job store keeps a work document for it (not
// ended, a transition not sent to Kafka, its accounting not recorded): the previous round's
// canceled jobs wait for the reconciler's accounting pass (every 30 s), during which the site
// can look quiet to WaitQuiet with that work still to come.
func (s *Site) WaitWorkDone(ctx context.Context, limit time.Duration) (bool, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(s.Env.Config.Mongo.URI))
	if err != nil {
		return false, fmt.Errorf("wait for the site's work: %w", err)
	}
	defer c.Disconnect(context.WithoutCancel(ctx))
	work := c.Database(s.Env.Config.Mongo.Database).Collection("job_work")
	end := time.Now().Add(limit)
	for {
		n, err := work.CountDocuments(ctx, bson.D{})
		if err != nil {
			return false, fmt.Errorf("wait for the site's work: %w", err)
		}
		if n == 0 {
			return true, nil
		}
		if time.Now().After(end) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
