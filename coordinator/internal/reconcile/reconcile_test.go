package reconcile

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func launchedJob(state job.State) *jobs.Job {
	return &jobs.Job{ID: "j1", State: state, Input: jobinput.JobInput{Cluster: "condor", RuntimeSeconds: 600},
		Launch:      &jobs.Launch{Site: "condor", Handle: "42"},
		Transitions: []jobs.Transition{{State: job.Created, Time: t0}, {State: job.DownloadSubmitted, Time: t0}}}
}

func sub(n int, state job.State, lastSeen time.Time, trs ...jobs.Transition) jobs.SubJob {
	return jobs.SubJob{JobID: "j1", SubID: n, State: state, LastSeen: lastSeen, Transitions: trs}
}

func cs(n int, state launcher.ContainerState, code *int, reason string) launcher.ContainerStatus {
	return launcher.ContainerStatus{Container: n, State: state, ExitCode: code, Reason: reason, Attempt: fmt.Sprintf("42.%d", n), Started: t0}
}

func ip(i int) *int { return &i }

func TestDecide(t *testing.T) {
	cfg := Config{HeartbeatDeadline: 2 * time.Minute, ConnectDeadline: 10 * time.Minute, SubmitDeadline: time.Hour,
		CancelDeadline: 30 * time.Minute, RuntimeGrace: time.Minute, IdleDeadline: 24 * time.Hour}
	fresh := t0.Add(time.Minute)
	for _, tc := range []struct {
		name      string
		now       time.Time
		job       *jobs.Job
		subs      []jobs.SubJob
		st        *launcher.JobStatus
		wantAdmin string // "" → no failure
		wantUser  string
	}{
		{"healthy", t0.Add(5 * time.Minute), launchedJob(job.JobSubmitted),
			[]jobs.SubJob{sub(0, job.JobSubmitted, t0.Add(4*time.Minute))},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateRunning, nil, "")}}, "", ""},
		{"held", fresh, launchedJob(job.DownloadSubmitted), []jobs.SubJob{sub(0, job.DownloadSubmitted, time.Time{}), sub(1, job.DownloadSubmitted, time.Time{})},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateRunning, nil, ""),
				cs(1, launcher.StateHeld, nil, "Transfer input files failure (HoldReasonCode 13)")}},
			"container 1 (attempt 42.1) is held by the compute system: Transfer input files failure (HoldReasonCode 13)",
			"The compute system held container 1 of the job"},
		{"exited_nonzero", fresh, launchedJob(job.JobSubmitting), []jobs.SubJob{sub(0, job.JobSubmitting, fresh)},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateExited, ip(1), "held after exiting: x")}},
			"the agent of container 0 (attempt 42.0) exited with code 1 before reporting the container's final state: held after exiting: x",
			"Container 0 of the job stopped unexpectedly"},
		{"final_report_ignores_proc", fresh, launchedJob(job.JobSubmitted), []jobs.SubJob{sub(0, job.Complete, fresh), sub(1, job.JobSubmitted, fresh)},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateExited, ip(3), ""), cs(1, launcher.StateRunning, nil, "")}}, "", ""},
		{"removed", fresh, launchedJob(job.JobSubmitted), []jobs.SubJob{sub(0, job.JobSubmitted, fresh)},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateRemoved, nil, "via condor_rm")}},
			"container 0 (attempt 42.0) was removed from the compute system before its agent reported a final state (exit code none): via condor_rm",
			"Container 0 of the job was removed"},
		{"vanished", fresh, launchedJob(job.JobSubmitted), []jobs.SubJob{sub(0, job.JobSubmitted, fresh)},
			&launcher.JobStatus{Err: fmt.Errorf("cluster 42: %w", launcher.ErrNotFound)},
			"no longer knows the job (handle 42)", "vanished"},
		{"unavailable_is_not_failure", fresh, launchedJob(job.JobSubmitted), []jobs.SubJob{sub(0, job.JobSubmitted, fresh)},
			&launcher.JobStatus{Err: fmt.Errorf("x: %w", launcher.ErrUnavailable)}, "", ""},
		{"silent", t0.Add(10 * time.Minute), launchedJob(job.JobSubmitted), []jobs.SubJob{sub(0, job.JobSubmitted, t0.Add(7*time.Minute))},
			nil, "the agent of container 0 was last heard from 3m0s ago (deadline 2m0s), in state job_submitted",
			"The service lost contact with container 0"},
		{"never_connected", t0.Add(11 * time.Minute), launchedJob(job.DownloadSubmitted), []jobs.SubJob{sub(0, job.DownloadSubmitted, time.Time{})},
			nil, "the agent of container 0 never connected within 10m0s", "Container 0 of the job never started"},
		{"never_connected_from_start", t0.Add(11 * time.Minute), launchedJob(job.DownloadSubmitted), []jobs.SubJob{sub(0, job.DownloadSubmitted, time.Time{})},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{func() launcher.ContainerStatus {
				c := cs(0, launcher.StateRunning, nil, "")
				c.Started = t0.Add(5 * time.Minute)
				return c
			}()}}, "", ""},
		{"idle_in_queue", t0.Add(11 * time.Minute), launchedJob(job.DownloadSubmitted), []jobs.SubJob{sub(0, job.DownloadSubmitted, time.Time{})},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateIdle, nil, "")}}, "", ""},
		{"idle_too_long", t0.Add(25 * time.Hour), launchedJob(job.DownloadSubmitted), []jobs.SubJob{sub(0, job.DownloadSubmitted, time.Time{})},
			&launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateIdle, nil, "")}}, "never connected within 24h0m0s", "never started"},
		{"runtime", t0.Add(20 * time.Minute), launchedJob(job.JobSubmitted),
			[]jobs.SubJob{sub(0, job.JobSubmitted, t0.Add(20*time.Minute), jobs.Transition{State: job.JobSubmitted, Time: t0.Add(5 * time.Minute)})},
			nil, "container 0 has run for 15m0s, more than its runtime of 600s plus a grace of 1m0s", "exceeded its runtime"},
		{"created_stuck", t0.Add(2 * time.Hour), &jobs.Job{ID: "j1", State: job.Created, Input: jobinput.JobInput{Cluster: "condor"},
			Transitions: []jobs.Transition{{State: job.Created, Time: t0}}}, nil, nil, "not handed to the launcher of site \"condor\"", "could not be started"},
		{"created_fresh", t0.Add(time.Minute), &jobs.Job{ID: "j1", State: job.Created,
			Transitions: []jobs.Transition{{State: job.Created, Time: t0}}}, nil, nil, "", ""},
		{"canceling_stuck", t0.Add(time.Hour), &jobs.Job{ID: "j1", State: job.Canceling,
			Transitions: []jobs.Transition{{State: job.Canceling, Time: t0}}}, nil, nil, "did not confirm the cancel", "could not be canceled"},
		{"terminal", t0.Add(time.Hour * 100), &jobs.Job{ID: "j1", State: job.Error}, nil, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Decide(cfg, tc.now, tc.job, tc.subs, tc.st)
			if tc.wantAdmin == "" {
				if f != nil {
					t.Fatalf("unexpected failure %+v", f)
				}
				return
			}
			if f == nil {
				t.Fatal("no failure")
			}
			if !strings.Contains(f.AdminError, tc.wantAdmin) || !strings.Contains(f.UserError, tc.wantUser) {
				t.Errorf("got %+v\nwant admin containing %q, user containing %q", f, tc.wantAdmin, tc.wantUser)
			}
		})
	}
}

// fakeJobs is the Store and Launch interfaces over fixed data, recording what the reconciler
// does.
type fakeJobs struct {
	active   []*jobs.Job
	subs     map[string][]jobs.SubJob
	launcher launch.Launcher
	toAcct   []*jobs.Job
	failed   map[string]Failure
	acct     map[string]jobs.Accounting
	// allowRetry is RetryLaunch's answer; retried records the relaunches asked for.
	allowRetry bool
	retried    map[string]string
	// refolded lists the jobs Refold was asked to fold.
	refolded []string
	// reads counts the sub-jobs read.
	reads int
}

func (f *fakeJobs) Refold(_ context.Context, id string) error {
	f.refolded = append(f.refolded, id)
	return nil
}

func (f *fakeJobs) UnfinishedJobs(_ context.Context, _ int) ([]*jobs.Job, error) {
	var out []*jobs.Job
	for _, j := range f.active {
		if !j.State.Terminal() {
			out = append(out, j)
		}
	}
	return out, nil
}
func (f *fakeJobs) GetSubJobs(_ context.Context, id string) ([]jobs.SubJob, error) {
	f.reads += len(f.subs[id])
	return append([]jobs.SubJob(nil), f.subs[id]...), nil
}
func (f *fakeJobs) GetSubJob(_ context.Context, id string, n int) (*jobs.SubJob, error) {
	for _, sj := range f.subs[id] {
		if sj.SubID == n {
			f.reads++
			return &sj, nil
		}
	}
	return nil, jobs.ErrNotFound
}
func (f *fakeJobs) SiteLauncher(name string) (launch.Launcher, bool) {
	return f.launcher, name == "condor"
}
func (f *fakeJobs) FailJob(_ context.Context, id, a, u string) (bool, error) {
	f.failed[id] = Failure{AdminError: a, UserError: u}
	return true, nil
}
func (f *fakeJobs) RetryLaunch(_ context.Context, id, reason string, maxRetries int) (bool, error) {
	if f.retried == nil {
		f.retried = map[string]string{}
	}
	if !f.allowRetry {
		return false, nil
	}
	f.retried[id] = reason
	return true, nil
}
func (f *fakeJobs) FailStaging(_ context.Context, st refdata.Staging, a string) (bool, error) {
	f.failed["staging/"+st.ID] = Failure{AdminError: a}
	return true, nil
}
func (f *fakeJobs) RetryStaging(_ context.Context, st refdata.Staging, reason string, maxRetries int) (bool, error) {
	if f.retried == nil {
		f.retried = map[string]string{}
	}
	if !f.allowRetry {
		return false, nil
	}
	f.retried["staging/"+st.ID] = reason
	return true, nil
}
func (f *fakeJobs) JobsToAccount(context.Context, time.Time, int) ([]*jobs.Job, error) {
	return f.toAcct, nil
}
func (f *fakeJobs) SetAccounting(_ context.Context, id string, a jobs.Accounting) error {
	f.acct[id] = a
	return nil
}

// fakeLauncher answers Status from a table and counts calls.
type fakeLauncher struct {
	status map[string]launcher.JobStatus
	calls  int
}

func (l *fakeLauncher) Submit(context.Context, launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	return launcher.SubmitResponse{}, nil
}
func (l *fakeLauncher) Cancel(context.Context, launcher.JobRef) error { return nil }
func (l *fakeLauncher) Status(_ context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	l.calls++
	out := make([]launcher.JobStatus, len(refs))
	for i, r := range refs {
		out[i] = l.status[r.JobID]
		out[i].JobID = r.JobID
	}
	return out, nil
}

func TestPass(t *testing.T) {
	held := launchedJob(job.DownloadSubmitted)
	ok := launchedJob(job.JobSubmitted)
	ok.ID = "j2"
	done := launchedJob(job.Complete)
	done.ID, done.UpdateTime = "j3", t0
	l := &fakeLauncher{status: map[string]launcher.JobStatus{
		"j1": {Containers: []launcher.ContainerStatus{cs(0, launcher.StateHeld, nil, "The job exceeded allowed job duration of 5 seconds (HoldReasonCode 46)")}},
		"j2": {Containers: []launcher.ContainerStatus{cs(0, launcher.StateRunning, nil, "")}},
		"j3": {Containers: []launcher.ContainerStatus{
			{Container: 0, State: launcher.StateExited, Usage: &launcher.Usage{CPUSeconds: 1800, WallSeconds: 900, MaxMemoryBytes: 5 << 20, CPUs: 2}},
			{Container: 1, State: launcher.StateExited, Usage: &launcher.Usage{CPUSeconds: 1800, WallSeconds: 900, MaxMemoryBytes: 7 << 20, CPUs: 2}},
		}},
	}}
	f := &fakeJobs{active: []*jobs.Job{held, ok}, toAcct: []*jobs.Job{done}, launcher: l,
		subs:   map[string][]jobs.SubJob{"j1": {sub(0, job.DownloadSubmitted, time.Time{})}, "j2": {sub(0, job.JobSubmitted, t0)}},
		failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
	r := New(Config{}, f, f, nil, nil, func() time.Time { return t0.Add(30 * time.Second) })
	if err := r.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(f.failed) != 1 || !strings.Contains(f.failed["j1"].AdminError, "allowed job duration") {
		t.Errorf("failed %+v", f.failed)
	}
	if l.calls != 2 {
		t.Errorf("%d status calls, want one batched call for the active jobs and one for accounting", l.calls)
	}
	a, okA := f.acct["j3"]
	if !okA || a.CPUHours == nil || *a.CPUHours != 1 || a.MaxMemory == nil || *a.MaxMemory != 7<<20 || a.CPUFactor == nil || *a.CPUFactor != 1 {
		t.Errorf("accounting %+v", a)
	}
}

// TestPassConnectedAgentIsHeardFrom: a job whose agents' stored heartbeats are older than the
// deadline is not failed while its agents are connected (their heartbeats are on their way
// to a busy store); it is once they are not.
func TestPassConnectedAgentIsHeardFrom(t *testing.T) {
	j := launchedJob(job.JobSubmitted)
	connected := true
	var asked []string
	for _, tc := range []struct {
		name      string
		connected bool
		wantFail  bool
	}{{"connected", true, false}, {"not connected", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			connected = tc.connected
			l := &fakeLauncher{status: map[string]launcher.JobStatus{
				"j1": {Containers: []launcher.ContainerStatus{cs(0, launcher.StateRunning, nil, "")}},
			}}
			stale := sub(0, job.JobSubmitted, t0)
			stale.Attempt = "a1"
			f := &fakeJobs{active: []*jobs.Job{j}, launcher: l,
				subs:   map[string][]jobs.SubJob{"j1": {stale}},
				failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
			cfg := Config{Connected: func(id string, n int, attempt string) bool {
				asked = append(asked, fmt.Sprint(id, "/", n, "/", attempt))
				return connected
			}}
			r := New(cfg, f, f, nil, nil, func() time.Time { return t0.Add(10 * time.Minute) })
			if err := r.Pass(t.Context()); err != nil {
				t.Fatal(err)
			}
			if _, failed := f.failed["j1"]; failed != tc.wantFail {
				t.Fatalf("failed = %v (%+v), want %v", failed, f.failed, tc.wantFail)
			}
			if len(asked) == 0 || asked[len(asked)-1] != "j1/0/a1" {
				t.Fatalf("asked %v, want the container's agent attempt", asked)
			}
		})
	}
}

// TestPassRetriesInfrastructureFailures: a retryable failure is first offered to RetryLaunch;
// the job is ended only when it is not relaunched, and never retried when retries are off.
func TestPassRetriesInfrastructureFailures(t *testing.T) {
	for _, tc := range []struct {
		name        string
		max         int
		allow       bool
		wantRetried bool
		wantFailed  bool
	}{
		{"relaunched", 2, true, true, false},
		{"not eligible", 2, false, false, true},
		{"retries off", 0, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held := launchedJob(job.DownloadSubmitted)
			l := &fakeLauncher{status: map[string]launcher.JobStatus{
				"j1": {Containers: []launcher.ContainerStatus{cs(0, launcher.StateHeld, nil, "node lost its disk")}},
			}}
			f := &fakeJobs{active: []*jobs.Job{held}, launcher: l, allowRetry: tc.allow,
				subs:   map[string][]jobs.SubJob{"j1": {sub(0, job.DownloadSubmitted, time.Time{})}},
				failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
			r := New(Config{MaxLaunchRetries: tc.max}, f, f, nil, nil, func() time.Time { return t0.Add(30 * time.Second) })
			if err := r.Pass(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, retried := f.retried["j1"]
			_, failed := f.failed["j1"]
			if retried != tc.wantRetried || failed != tc.wantFailed {
				t.Errorf("retried %v failed %v, want %v %v", retried, failed, tc.wantRetried, tc.wantFailed)
			}
			if retried && !strings.Contains(f.retried["j1"], "node lost its disk") {
				t.Errorf("retry reason %q", f.retried["j1"])
			}
		})
	}
}

// TestPassFoldsFinishedJobs: a job whose containers all ended while the job did not (its fold
// after the last report failed, and the agent will not report again) is folded, not left
// unfinished; a job with a container still running is not.
func TestPassFoldsFinishedJobs(t *testing.T) {
	stuck := launchedJob(job.UploadSubmitted)
	stuck.Input.NumContainers = 2
	running := launchedJob(job.JobSubmitted)
	running.ID, running.Input.NumContainers = "j2", 2
	// Launched long enough ago that the first pass reads their containers (a job launched
	// less than the heartbeat deadline ago is read when the launcher reports a container
	// stopped: TestPassFoldsJobFinishedLater).
	stuck.Launch.LaunchedAt, running.Launch.LaunchedAt = t0.Add(-10*time.Minute), t0.Add(-10*time.Minute)
	l := &fakeLauncher{status: map[string]launcher.JobStatus{}}
	f := &fakeJobs{active: []*jobs.Job{stuck, running}, launcher: l,
		subs: map[string][]jobs.SubJob{
			"j1": {sub(0, job.Complete, t0), sub(1, job.Error, t0)},
			"j2": {sub(0, job.Complete, t0), sub(1, job.JobSubmitted, t0)},
		},
		failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
	r := New(Config{}, f, f, nil, nil, func() time.Time { return t0.Add(30 * time.Second) })
	if err := r.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.refolded) != "[j1]" || len(f.failed) != 0 {
		t.Fatalf("refolded %v, failed %v; want j1 folded and nothing failed", f.refolded, f.failed)
	}
}

// TestPassReadsOnlyWhatMayEnd: a pass reads every sub-job of a job it meets for the first
// time, and afterwards only the containers a rule could end now: none while every agent is
// heard from (connected to some replica) and the launcher runs every container; the one the
// launcher reports exited; the one whose agent has not been heard from for longer than the
// heartbeat deadline. The verdicts are those of reading everything.
func TestPassReadsOnlyWhatMayEnd(t *testing.T) {
	const n = 100
	j := launchedJob(job.JobSubmitted)
	j.Input.NumContainers, j.Input.RuntimeSeconds = n, 24*3600
	var subs []jobs.SubJob
	running := &launcher.JobStatus{}
	for c := range n {
		sj := sub(c, job.JobSubmitted, t0, jobs.Transition{State: job.JobSubmitted, Time: t0})
		sj.Attempt = fmt.Sprintf("a%d", c)
		subs = append(subs, sj)
		running.Containers = append(running.Containers, cs(c, launcher.StateRunning, nil, ""))
	}
	l := &fakeLauncher{status: map[string]launcher.JobStatus{"j1": *running}}
	f := &fakeJobs{active: []*jobs.Job{j}, launcher: l, subs: map[string][]jobs.SubJob{"j1": subs},
		failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
	now := t0.Add(10 * time.Minute)
	silent := -1 // a container whose agent the presence records no longer list
	presence := func(context.Context) ([]jobs.Touch, error) {
		var out []jobs.Touch
		for c := range n {
			if c != silent {
				// Heard from a few seconds ago, on another replica; the stored LastSeen is old.
				out = append(out, jobs.Touch{JobID: "j1", Sub: c, Attempt: fmt.Sprintf("a%d", c), At: now.Add(-5 * time.Second)})
			}
		}
		// Another attempt of container 0 (a zombie) heard later does not count for it.
		return append(out, jobs.Touch{JobID: "j1", Sub: 0, Attempt: "zombie", At: now}), nil
	}
	r := New(Config{Presence: presence}, f, f, nil, nil, func() time.Time { return now })
	pass := func(wantReads int) {
		t.Helper()
		f.reads = 0
		if err := r.Pass(t.Context()); err != nil {
			t.Fatal(err)
		}
		if f.reads != wantReads {
			t.Fatalf("the pass read %d sub-jobs, want %d", f.reads, wantReads)
		}
	}
	pass(n) // first met: every sub-job
	for range 3 {
		now = now.Add(30 * time.Second)
		pass(0)
	}
	if len(f.failed) != 0 {
		t.Fatalf("failed %+v although every agent is heard from", f.failed)
	}

	// The agent of container 3 is heard no more: read once its last contact is older than the
	// deadline, and the job fails as a full read would have it.
	silent = 3
	now = now.Add(time.Minute)
	pass(0) // heard 65 s ago
	now = now.Add(time.Minute)
	pass(1)
	if fl, ok := f.failed["j1"]; !ok || !strings.Contains(fl.AdminError, "container 3") || !strings.Contains(fl.AdminError, "last heard from 2m5s ago") {
		t.Fatalf("failed %+v, want container 3's agent last heard from 2m5s ago", f.failed)
	}

	// The launcher reports container 7 exited non-zero: that container alone is read.
	delete(f.failed, "j1")
	silent = -1
	st := l.status["j1"]
	st.Containers = append([]launcher.ContainerStatus(nil), running.Containers...)
	st.Containers[7] = cs(7, launcher.StateExited, ip(137), "")
	l.status["j1"] = st
	now = now.Add(30 * time.Second)
	pass(1)
	if fl := f.failed["j1"]; !strings.Contains(fl.AdminError, "container 7") {
		t.Fatalf("failed %+v, want container 7", f.failed)
	}
}

// TestPassFoldsJobFinishedLater: a job met running and whose containers all end later is
// folded by the pass that reads the last one ended (the launcher reports it exited).
func TestPassFoldsJobFinishedLater(t *testing.T) {
	j := launchedJob(job.UploadSubmitted)
	j.Input.NumContainers = 2
	done := sub(0, job.Complete, t0)
	up := sub(1, job.UploadSubmitted, t0)
	l := &fakeLauncher{status: map[string]launcher.JobStatus{"j1": {Containers: []launcher.ContainerStatus{
		cs(0, launcher.StateExited, ip(0), ""), cs(1, launcher.StateRunning, nil, "")}}}}
	f := &fakeJobs{active: []*jobs.Job{j}, launcher: l, subs: map[string][]jobs.SubJob{"j1": {done, up}},
		failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
	now := t0.Add(30 * time.Second)
	r := New(Config{Connected: func(string, int, string) bool { return true }}, f, f, nil, nil, func() time.Time { return now })
	if err := r.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(f.refolded) != 0 {
		t.Fatalf("refolded %v with a container running", f.refolded)
	}
	f.subs["j1"][1].State = job.Complete
	l.status["j1"] = launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateExited, ip(0), ""), cs(1, launcher.StateExited, ip(0), "")}}
	f.reads = 0
	if err := r.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.refolded) != "[j1]" || f.reads != 1 || len(f.failed) != 0 {
		t.Fatalf("refolded %v after %d reads, failed %v; want j1 folded after reading container 1", f.refolded, f.reads, f.failed)
	}
}

// TestPassYoungJobsAndEndedContainers: a job launched less than the heartbeat deadline ago
// needs no read at all while the launcher runs its containers, and a container this
// coordinator knows ended (Config.Ended) is not read even when the launcher reports it exited.
func TestPassYoungJobsAndEndedContainers(t *testing.T) {
	j := launchedJob(job.JobSubmitted)
	j.Input.NumContainers = 3
	l := &fakeLauncher{status: map[string]launcher.JobStatus{"j1": {Containers: []launcher.ContainerStatus{
		cs(0, launcher.StateRunning, nil, ""), cs(1, launcher.StateRunning, nil, ""), cs(2, launcher.StateRunning, nil, "")}}}}
	f := &fakeJobs{active: []*jobs.Job{j}, launcher: l,
		subs:   map[string][]jobs.SubJob{"j1": {sub(0, job.JobSubmitted, t0), sub(1, job.JobSubmitted, t0), sub(2, job.JobSubmitted, t0)}},
		failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}}
	now := t0.Add(30 * time.Second)
	ended := map[int]bool{}
	r := New(Config{Connected: func(string, int, string) bool { return true }, Ended: func(_ string, c int) bool { return ended[c] }},
		f, f, nil, nil, func() time.Time { return now })
	if err := r.Pass(t.Context()); err != nil || f.reads != 0 {
		t.Fatalf("first pass over a job launched 30 s ago: %d reads (%v), want none", f.reads, err)
	}
	// Containers 0 and 1 end; this coordinator applied container 0's end.
	f.subs["j1"][0].State, f.subs["j1"][1].State = job.Complete, job.Complete
	ended[0] = true
	l.status["j1"] = launcher.JobStatus{Containers: []launcher.ContainerStatus{
		cs(0, launcher.StateExited, ip(0), ""), cs(1, launcher.StateExited, ip(0), ""), cs(2, launcher.StateRunning, nil, "")}}
	now = now.Add(30 * time.Second)
	if err := r.Pass(t.Context()); err != nil || f.reads != 1 {
		t.Fatalf("second pass: %d reads (%v), want 1 (container 1)", f.reads, err)
	}
	if len(f.failed) != 0 || len(f.refolded) != 0 {
		t.Fatalf("failed %v, refolded %v", f.failed, f.refolded)
	}
}
