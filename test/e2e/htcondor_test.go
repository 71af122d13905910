package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

// The HTCondor path: the coordinator drives the real htcondor launcher plugin, which drives
// condor_submit / condor_q / condor_history / condor_rm; here those are mini-condor's
// (test/minicondor), which runs each proc as a local process. What mini-condor does not
// simulate is listed in its package doc and in deploy/htcondor/README.md.

// startCondorSite starts a dev site whose "local" site is served by the htcondor plugin over
// mini-condor, with a fast reconciler.
func startCondorSite(t *testing.T, agentPath string) *testsite.Site {
	t.Helper()
	return startSite(t, testsite.Options{AgentPath: agentPath, HTCondor: true, Configure: func(cfg *app.Config) {
		cfg.Reconcile.Interval = time.Second
		cfg.Reconcile.HeartbeatDeadline = 10 * time.Second
		cfg.Reconcile.ConnectDeadline = 5 * time.Second
		cfg.Reconcile.MaxLaunchRetries = 1
	}})
}

// TestHTCondorDemoJob runs the demo job through the htcondor plugin: one cluster, one proc
// per container, outputs verified.
func TestHTCondorDemoJob(t *testing.T) {
	s := startCondorSite(t, "")
	res, err := demo.Run(context.Background(), s.Demo)
	if err != nil {
		t.Fatalf("demo over HTCondor: %v", err)
	}
	if strings.Join(res.States, ",") != strings.Join(happyStates, ",") {
		t.Errorf("states %v", res.States)
	}
	if len(res.Outputs) != 6 {
		t.Errorf("outputs %v", res.Outputs)
	}
	var admin struct {
		Launch struct {
			Site   string `json:"site"`
			Handle string `json:"handle"`
		} `json:"launch"`
	}
	if err := s.API.Do(context.Background(), "GET", "/admin/jobs/"+res.JobID, s.Demo.AdminToken, nil, &admin); err != nil {
		t.Fatal(err)
	}
	if admin.Launch.Handle == "" {
		t.Errorf("no HTCondor handle recorded: %+v", admin.Launch)
	}
}

// startSleepingCondorJob starts a condor site and a job whose container (the test tool)
// sleeps for a minute, and returns once the container runs.
func startSleepingCondorJob(t *testing.T) (*testsite.Site, string) {
	t.Helper()
	s := startCondorSite(t, "")
	image := s.RegisterTool(t, testsite.Binary(t, testsite.TestToolPkg), "1")
	id := submitArgs(t, s, image, []any{"sleep", "60"})
	s.WaitState(t, id, time.Minute, "job_submitted")
	return s, id
}

func submitArgs(t *testing.T, s *testsite.Site, image string, args []any) string {
	t.Helper()
	in := s.PutInput(t, "e2e/in/x.txt", []byte("x\n"))
	var sub map[string]string
	if err := s.API.Do(context.Background(), "POST", "/jobs", s.Demo.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": []string{in},
		"output_dir": "cts-data/e2e/output", "runtime": 300, "params": map[string]any{"args": args},
	}, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sub["job_id"]
}

// runCondorJob starts a condor site whose procs run agentPath, registers the demo image, runs
// one job with args to its end and returns the site, the job's ID and its user view.
func runCondorJob(t *testing.T, agentPath string, args []any) (*testsite.Site, string, map[string]any) {
	t.Helper()
	s := startCondorSite(t, agentPath)
	id := submitArgs(t, s, s.RegisterDemo(t), args)
	return s, id, waitJob(t, s, id)
}

// TestHTCondorHeldProc: the agent exits non-zero before reporting anything; mini-condor holds
// the proc (on_exit_hold); the reconciler ends the job in error naming the hold.
func TestHTCondorHeldProc(t *testing.T) {
	broken := testsite.Script(t, "broken-agent", "#!/bin/sh\necho 'cannot start' >&2\nexit 7\n")
	s, id, j := runCondorJob(t, broken, []any{"--container", map[string]any{"type": "container_number"}})
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	aj := s.AdminJob(t, id)
	ae, _ := aj["admin_error"].(string)
	if !strings.Contains(ae, "7") {
		t.Errorf("admin error %q does not name the agent's exit", ae)
	}
	// An infrastructure failure before anything ran is launched once more (MaxLaunchRetries
	// is 1 here) before the job is ended.
	if l, _ := aj["launch"].(map[string]any); l["attempt"] != float64(1) {
		t.Errorf("launch %v: want attempt 1 after one relaunch", l)
	}
	if msg, _ := j["error"].(string); msg == "" {
		t.Errorf("no user error")
	}
}

// TestHTCondorAgentNeverConnects: the proc runs but its agent never reaches the coordinator;
// the connect deadline ends the job.
func TestHTCondorAgentNeverConnects(t *testing.T) {
	silent := testsite.Script(t, "silent-agent", "#!/bin/sh\nexec sleep 600\n")
	s, id, j := runCondorJob(t, silent, []any{"--container", map[string]any{"type": "container_number"}})
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	ae, _ := s.AdminJob(t, id)["admin_error"].(string)
	if !strings.Contains(strings.ToLower(ae), "connect") {
		t.Errorf("admin error %q does not say the agent never connected", ae)
	}
}

// TestHTCondorRemovedProc: condor_rm behind the coordinator's back while the container runs:
// the agent is stopped (SIGTERM), uploads the logs, reports, and the job ends in error.
func TestHTCondorRemovedProc(t *testing.T) {
	s, id := startSleepingCondorJob(t)
	rm := s.Condor.Command("condor_rm", "-constraint", fmt.Sprintf("CTSJobID == %q", id))
	if out, err := rm.CombinedOutput(); err != nil {
		t.Fatalf("condor_rm: %v\n%s", err, out)
	}
	j := waitJob(t, s, id)
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	if msg, _ := j["error"].(string); !strings.Contains(msg, "stopped") && !strings.Contains(msg, "removed") {
		t.Errorf("user error %q does not say the container was stopped", msg)
	}
}

// TestHTCondorCancelWhileRunning: a user cancel while the container runs ends the job
// canceled and removes the procs.
func TestHTCondorCancelWhileRunning(t *testing.T) {
	s, id := startSleepingCondorJob(t)
	if err := s.API.Do(context.Background(), "PUT", "/jobs/"+id+"/cancel", s.Demo.UserToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, s, id)
	if j["state"] != "canceled" {
		t.Fatalf("job ended %v, want canceled", j["state"])
	}
	// The proc leaves the queue (removed) shortly after.
	deadline := time.Now().Add(30 * time.Second)
	for {
		q := s.Condor.Command("condor_q", "-json", "-constraint", fmt.Sprintf("CTSJobID == %q", id))
		out, err := q.Output()
		if err != nil {
			t.Fatalf("condor_q: %v", err)
		}
		if s := strings.TrimSpace(string(out)); s == "" || s == "[]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("procs still queued after cancel: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestHTCondorRelaunchAfterInfrastructureFailure: the first launch's agent dies before it
// connects (a broken node); the reconciler launches the job again, and the second attempt
// completes it.
func TestHTCondorRelaunchAfterInfrastructureFailure(t *testing.T) {
	bins := testsite.RequireEnv(t)
	mark := filepath.Join(t.TempDir(), "first-attempt-done")
	flaky := testsite.Script(t, "flaky-agent",
		fmt.Sprintf("#!/bin/sh\nif [ ! -e %q ]; then touch %q; echo 'node broken' >&2; exit 7; fi\nexec %q \"$@\"\n", mark, mark, bins.Agent))
	s, id, j := runCondorJob(t, flaky, []any{"--container", map[string]any{"type": "container_number"},
		map[string]any{"type": "input_files", "input_files_format": "space_separated_list"}})
	if j["state"] != "complete" {
		t.Fatalf("job ended %v (%v), want complete after a relaunch", j["state"], j["error"])
	}
	l, _ := s.AdminJob(t, id)["launch"].(map[string]any)
	retries, _ := l["retries"].([]any)
	if l["attempt"] != float64(1) || len(retries) != 1 || !strings.Contains(fmt.Sprint(retries[0]), "7") {
		t.Errorf("launch record %v: want attempt 1 and one retry naming exit code 7", l)
	}
}
