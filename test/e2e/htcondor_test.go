package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/imagebuild"
	"github.com/kbase/cts/test/minicondor"
)

// The HTCondor path: the coordinator drives the real htcondor launcher plugin, which drives
// condor_submit / condor_q / condor_history / condor_rm; here those are mini-condor's
// (test/minicondor), which runs each proc as a local process. What mini-condor does not
// simulate is listed in its package doc and in deploy/htcondor/README.md.

var condor struct {
	once   sync.Once
	plugin string
	tools  map[string]string
	tool   []byte // the static test tool (test/imagebuild/testtool)
	err    error
}

func buildCondor(t *testing.T) {
	t.Helper()
	condor.once.Do(func() {
		condor.plugin = filepath.Join(bins.dir, "cts-launcher-htcondor")
		mini := filepath.Join(bins.dir, "minicondor")
		for out, pkg := range map[string]string{
			condor.plugin: "./plugins/htcondor/cmd/cts-launcher-htcondor",
			mini:          "./test/minicondor/cmd/minicondor",
		} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
			cmd.Dir = "../.."
			if b, err := cmd.CombinedOutput(); err != nil {
				condor.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
		toolDir := filepath.Join(bins.dir, "condor-bin")
		if condor.err = os.MkdirAll(toolDir, 0o755); condor.err != nil {
			return
		}
		if condor.tools, condor.err = minicondor.Install(mini, toolDir); condor.err != nil {
			return
		}
		condor.tool, condor.err = imagebuild.BuildGoBinary(context.Background(), imagebuild.TestToolPkg, "")
	})
	if condor.err != nil {
		t.Fatal(condor.err)
	}
}

// startCondorSite starts a dev site whose "local" site is served by the htcondor plugin over
// mini-condor, with a fast reconciler.
func startCondorSite(t *testing.T, agentPath string) (*site, string) {
	t.Helper()
	buildCondor(t)
	if agentPath == "" {
		agentPath = bins.agent
	}
	pool := t.TempDir()
	initial := filepath.Join(pool, "initialdir")
	state := filepath.Join(pool, "state")
	s := startSiteWith(t, agentPath, func(cfg *app.Config) {
		st := &cfg.Sites[0]
		st.Plugin = condor.plugin
		st.PluginConfig = map[string]any{
			"agent_path":  agentPath,
			"initial_dir": initial,
			"env": map[string]string{
				"PATH":                os.Getenv("PATH"),
				"CTS_AGENT_CACHE_DIR": filepath.Join(pool, "image-cache"),
				"CTS_AGENT_RUNC_ROOT": filepath.Join(pool, "runc"),
			},
			"kill_grace_seconds": 5,
			"condor_submit":      condor.tools["condor_submit"],
			"condor_q":           condor.tools["condor_q"],
			"condor_history":     condor.tools["condor_history"],
			"condor_rm":          condor.tools["condor_rm"],
			"condor_env":         map[string]string{"MINICONDOR_DIR": state},
		}
		cfg.Reconcile.Interval = time.Second
		cfg.Reconcile.HeartbeatDeadline = 10 * time.Second
		cfg.Reconcile.ConnectDeadline = 5 * time.Second
		cfg.Reconcile.MaxLaunchRetries = 1
	})
	return s, state
}

// TestHTCondorDemoJob runs the demo job through the htcondor plugin: one cluster, one proc
// per container, outputs verified.
func TestHTCondorDemoJob(t *testing.T) {
	requireEnv(t)
	s, _ := startCondorSite(t, "")
	res, err := demo.Run(context.Background(), s.cfg)
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
	if err := s.api.Do(context.Background(), "GET", "/admin/jobs/"+res.JobID, s.cfg.AdminToken, nil, &admin); err != nil {
		t.Fatal(err)
	}
	if admin.Launch.Handle == "" {
		t.Errorf("no HTCondor handle recorded: %+v", admin.Launch)
	}
}

// sleepImage registers an image whose entrypoint is the test tool.
func sleepImage(t *testing.T, s *site) string {
	t.Helper()
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/usr/bin/testtool", Mode: 0o755, Data: condor.tool}},
		[]string{"/usr/bin/testtool"}, []string{"PATH=/usr/bin:/bin"})
	if err != nil {
		t.Fatal(err)
	}
	ref := s.cfg.Registry + "/cts/testtool:1"
	if _, err := imagebuild.Push(context.Background(), img, ref); err != nil {
		t.Fatal(err)
	}
	if err := s.api.Do(context.Background(), "POST", "/admin/images/"+ref, s.cfg.AdminToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	return ref
}

func submitArgs(t *testing.T, s *site, image string, args []any) string {
	t.Helper()
	ctx := context.Background()
	if _, err := demo.PutWithCRC(ctx, s.env.Stack.S3.Client(), devmode.DataBucket, "e2e/in/x.txt", []byte("x\n")); err != nil {
		t.Fatal(err)
	}
	var sub map[string]string
	if err := s.api.Do(ctx, "POST", "/jobs", s.cfg.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": []string{"cts-data/e2e/in/x.txt"},
		"output_dir": "cts-data/e2e/output", "runtime": 300, "params": map[string]any{"args": args},
	}, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sub["job_id"]
}

func adminJob(t *testing.T, s *site, id string) map[string]any {
	t.Helper()
	var j map[string]any
	if err := s.api.Do(context.Background(), "GET", "/admin/jobs/"+id, s.cfg.AdminToken, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func waitState(t *testing.T, s *site, id, state string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := adminJob(t, s, id)
		if j["state"] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %v after %s, want %s", id, j["state"], within, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHTCondorHeldProc: the agent exits non-zero before reporting anything; mini-condor holds
// the proc (on_exit_hold); the reconciler ends the job in error naming the hold.
func TestHTCondorHeldProc(t *testing.T) {
	requireEnv(t)
	broken := filepath.Join(t.TempDir(), "broken-agent")
	if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'cannot start' >&2\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, _ := startCondorSite(t, broken)
	image, err := demo.BuildAndRegister(context.Background(), s.cfg, s.api)
	if err != nil {
		t.Fatal(err)
	}
	id := submitArgs(t, s, image, []any{"--container", map[string]any{"type": "container_number"}})
	j := waitJob(t, s, id)
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	aj := adminJob(t, s, id)
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
	requireEnv(t)
	silent := filepath.Join(t.TempDir(), "silent-agent")
	if err := os.WriteFile(silent, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, _ := startCondorSite(t, silent)
	image, err := demo.BuildAndRegister(context.Background(), s.cfg, s.api)
	if err != nil {
		t.Fatal(err)
	}
	id := submitArgs(t, s, image, []any{"--container", map[string]any{"type": "container_number"}})
	j := waitJob(t, s, id)
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	ae, _ := adminJob(t, s, id)["admin_error"].(string)
	if !strings.Contains(strings.ToLower(ae), "connect") {
		t.Errorf("admin error %q does not say the agent never connected", ae)
	}
}

// TestHTCondorRemovedProc: condor_rm behind the coordinator's back while the container runs:
// the agent is stopped (SIGTERM), uploads the logs, reports, and the job ends in error.
func TestHTCondorRemovedProc(t *testing.T) {
	requireEnv(t)
	s, state := startCondorSite(t, "")
	image := sleepImage(t, s)
	id := submitArgs(t, s, image, []any{"sleep", "60"})
	waitState(t, s, id, "job_submitted", time.Minute)
	rm := exec.Command(condor.tools["condor_rm"], "-constraint", fmt.Sprintf("CTSJobID == %q", id))
	rm.Env = append(os.Environ(), "MINICONDOR_DIR="+state)
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
	requireEnv(t)
	s, state := startCondorSite(t, "")
	image := sleepImage(t, s)
	id := submitArgs(t, s, image, []any{"sleep", "60"})
	waitState(t, s, id, "job_submitted", time.Minute)
	if err := s.api.Do(context.Background(), "PUT", "/jobs/"+id+"/cancel", s.cfg.UserToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, s, id)
	if j["state"] != "canceled" {
		t.Fatalf("job ended %v, want canceled", j["state"])
	}
	// The proc leaves the queue (removed) shortly after.
	deadline := time.Now().Add(30 * time.Second)
	for {
		q := exec.Command(condor.tools["condor_q"], "-json", "-constraint", fmt.Sprintf("CTSJobID == %q", id))
		q.Env = append(os.Environ(), "MINICONDOR_DIR="+state)
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
	requireEnv(t)
	mark := filepath.Join(t.TempDir(), "first-attempt-done")
	flaky := filepath.Join(t.TempDir(), "flaky-agent")
	script := fmt.Sprintf("#!/bin/sh\nif [ ! -e %q ]; then touch %q; echo 'node broken' >&2; exit 7; fi\nexec %q \"$@\"\n", mark, mark, bins.agent)
	if err := os.WriteFile(flaky, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s, _ := startCondorSite(t, flaky)
	image, err := demo.BuildAndRegister(context.Background(), s.cfg, s.api)
	if err != nil {
		t.Fatal(err)
	}
	id := submitArgs(t, s, image, []any{"--container", map[string]any{"type": "container_number"},
		map[string]any{"type": "input_files", "input_files_format": "space_separated_list"}})
	j := waitJob(t, s, id)
	if j["state"] != "complete" {
		t.Fatalf("job ended %v (%v), want complete after a relaunch", j["state"], j["error"])
	}
	l, _ := adminJob(t, s, id)["launch"].(map[string]any)
	retries, _ := l["retries"].([]any)
	if l["attempt"] != float64(1) || len(retries) != 1 || !strings.Contains(fmt.Sprint(retries[0]), "7") {
		t.Errorf("launch record %v: want attempt 1 and one retry naming exit code 7", l)
	}
}
