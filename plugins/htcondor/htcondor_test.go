package htcondor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/plugins/htcondor"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/launcher/launchertest"
	"github.com/kbase/cts/test/minicondor"
)

func TestEnvironmentQuoting(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
		err  bool
	}{
		{"plain", map[string]string{"B": "2", "A": "1"}, `"A=1 B=2"`, false},
		{"space", map[string]string{"A": "x y"}, `"A='x y'"`, false},
		{"single", map[string]string{"A": "it's"}, `"A='it''s'"`, false},
		{"double", map[string]string{"A": `say "hi"`}, `"A='say ""hi""'"`, false},
		{"dollar", map[string]string{"A": "$(ProcId)$HOME"}, `"A=$(DOLLAR)(ProcId)$(DOLLAR)HOME"`, false},
		{"empty", map[string]string{"A": ""}, `"A=''"`, false},
		{"newline", map[string]string{"A": "x\ny"}, "", true},
		{"bad_name", map[string]string{"A B": "x"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := htcondor.Environment(tc.env)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDescription(t *testing.T) {
	cfg := htcondor.Config{AgentPath: "/opt/cts/cts-agent", InitialDir: "/condor_workdir", ClientGroup: "kbase",
		KillGraceSeconds: 10, RuntimeMarginSeconds: 600, Env: map[string]string{"TOKEN_PATH": "/cts/cts_token"}}
	req := launcher.SubmitRequest{JobID: "job1", Attempt: 2, Containers: 3, CPUs: 4, MemoryBytes: 1<<30 + 1,
		RuntimeSeconds: 3600, DiskBytes: 2 << 30, User: "some.user", BatchName: "cts-job1",
		Env: map[string]string{"JOB_ID": "job1", "S3_URL": "http://s3"}}
	desc, err := htcondor.Description(cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"executable = /opt/cts/cts-agent\n", "transfer_executable = true\n", "initialdir = /condor_workdir\n",
		`environment = "CTS_AGENT_KILL_GRACE=10 JOB_ID=job1 S3_URL=http://s3 TOKEN_PATH=/cts/cts_token CONTAINER_NUMBER=$(ProcId) CTS_AGENT_ATTEMPT=$(ClusterId).$(ProcId)"` + "\n",
		"request_cpus = 4\n", "request_memory = 1025\n", "request_disk = 2097152\n", "batch_name = cts-job1\n",
		"concurrency_limits = some_user\n", `+AccountingGroup = "some_user"` + "\n",
		`requirements = regexp("kbase", CLIENTGROUP)` + "\n", "want_graceful_removal = true\n",
		"job_max_vacate_time = 10\n", "allowed_job_duration = 4200\n", "on_exit_hold = ExitCode =!= 0\n",
		`+CTSJobID = "job1"` + "\n", "+CTSAttempt = 2\n", "+CTSContainers = 3\n", "+CTSContainerNumber = $(ProcId)\n",
		"getenv = false\n", "output = cts-job1-2-$(ProcId).out\n", "queue 3\n",
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("description lacks %q:\n%s", want, desc)
		}
	}
	if !strings.HasSuffix(desc, "queue 3\n") {
		t.Errorf("queue is not last:\n%s", desc)
	}
	cfg.AgentPath, cfg.AgentURL = "", "https://cts.example.org/files/cts-agent"
	desc, err = htcondor.Description(cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"executable = /bin/sh\n", "transfer_executable = false\n",
		`arguments = "-c 'chmod u+x ./cts-agent && exec ./cts-agent'"` + "\n",
		"transfer_input_files = https://cts.example.org/files/cts-agent\n"} {
		if !strings.Contains(desc, want) {
			t.Errorf("URL description lacks %q:\n%s", want, desc)
		}
	}
	bad := req
	bad.Env = map[string]string{"A": "line\nbreak"}
	if _, err := htcondor.Description(cfg, bad); !errors.Is(err, launcher.ErrInvalidRequest) {
		t.Errorf("env with a line break: %v, want ErrInvalidRequest", err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func configured(t *testing.T, p *pool) *launcher.Client {
	t.Helper()
	c := startPlugin(t)
	t.Cleanup(c.Close)
	if err := c.Configure(ctx(t), p.config(t)); err != nil {
		t.Fatal(err)
	}
	return c
}

func waitState(t *testing.T, c *launcher.Client, ref launcher.JobRef, want launcher.ContainerState) launcher.JobStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sts, err := c.Status(ctx(t), []launcher.JobRef{ref})
		if err != nil {
			t.Fatal(err)
		}
		st := sts[0]
		if st.Err != nil {
			t.Fatal(st.Err)
		}
		ok := len(st.Containers) > 0
		for _, cs := range st.Containers {
			ok = ok && cs.State == want
		}
		if ok {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all %s: %+v", want, st.Containers)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEnvironmentSurvives sends values with spaces, quotes, dollars and equals signs through
// the submit description and mini-condor to the agent's environment.
func TestEnvironmentSurvives(t *testing.T) {
	t.Parallel()
	p := newPool(t, time.Second)
	h := p.harness(t)
	c := configured(t, p)
	jobID := launchertest.NewJobID("env")
	req := h.Request(jobID, 0, launchertest.Behaviour{})
	odd := map[string]string{
		"ODD_SPACES":  "  two  spaces  ",
		"ODD_QUOTES":  `it's "quoted" ''twice''`,
		"ODD_DOLLARS": "$(ProcId) $HOME $$",
		"ODD_EQUALS":  "a=b=c",
		"ODD_BACKSL":  `back\slash\`,
		"ODD_EMPTY":   "",
	}
	for k, v := range odd {
		req.Env[k] = v
	}
	resp, err := c.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c, launcher.JobRef{JobID: jobID, Handle: resp.Handle}, launcher.StateExited)
	rec, err := launchertest.ReadRecord(p.records, jobID, 0, 0)
	if err != nil || len(rec.Starts) != 1 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	for k, v := range odd {
		if got, ok := rec.Starts[0][k]; !ok || got != v {
			t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if got := rec.Starts[0]["TOKEN_PATH"]; got != "/nonexistent/token" {
		t.Errorf("configured env TOKEN_PATH = %q", got)
	}
	if _, leaked := rec.Starts[0][minicondor.EnvDir]; leaked {
		t.Error("condor_env reached the agent")
	}
}

// TestResubmitAfterCrash submits, drops the plugin as a crashed coordinator would before
// recording the handle, and submits the same job and attempt again from a new plugin process:
// the same cluster comes back and no container starts twice.
func TestResubmitAfterCrash(t *testing.T) {
	t.Parallel()
	p := newPool(t, time.Second)
	h := p.harness(t)
	first := configured(t, p)
	jobID := launchertest.NewJobID("crash")
	b := launchertest.Behaviour{Sleep: 500 * time.Millisecond}
	req := h.Request(jobID, 0, b, b)
	resp, err := first.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	second := configured(t, p)
	again, err := second.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Handle != resp.Handle || !again.Existing {
		t.Fatalf("resubmit: %+v, want handle %s existing", again, resp.Handle)
	}
	st := waitState(t, second, launcher.JobRef{JobID: jobID, Handle: resp.Handle}, launcher.StateExited)
	// Also after the procs left the queue: found in the history.
	third, err := second.Submit(ctx(t), req)
	if err != nil || third.Handle != resp.Handle || !third.Existing {
		t.Fatalf("resubmit of a finished job: %+v, %v", third, err)
	}
	for n := range 2 {
		rec, err := launchertest.ReadRecord(p.records, jobID, 0, n)
		if err != nil || len(rec.Starts) != 1 {
			t.Errorf("container %d started %d times (%v)", n, len(rec.Starts), err)
		}
		if st.Containers[n].Usage == nil || st.Containers[n].Usage.WallSeconds < 0 || len(st.Containers[n].Details) == 0 {
			t.Errorf("container %d: no accounting %+v", n, st.Containers[n])
		}
	}
}

// TestHoldsAndOutage checks what the reconciler relies on: an agent that exits non-zero is
// reported exited with its code and the hold reason, one that overruns allowed_job_duration is
// held with HTCondor's reason, and an unreachable schedd is ErrUnavailable.
func TestHoldsAndOutage(t *testing.T) {
	t.Parallel()
	p := newPool(t, time.Second)
	p.cfg.RuntimeMarginSeconds = 1
	h := p.harness(t)
	c := configured(t, p)
	jobID := launchertest.NewJobID("hold")
	req := h.Request(jobID, 0, launchertest.Behaviour{Exit: 9}, launchertest.Behaviour{Sleep: 30 * time.Second})
	req.RuntimeSeconds = 1
	resp, err := c.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	deadline := time.Now().Add(20 * time.Second)
	var st launcher.JobStatus
	for {
		sts, err := c.Status(ctx(t), []launcher.JobRef{ref})
		if err != nil {
			t.Fatal(err)
		}
		st = sts[0]
		if len(st.Containers) == 2 && st.Containers[0].State == launcher.StateExited && st.Containers[1].State == launcher.StateHeld {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", st.Containers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c0, c1 := st.Containers[0], st.Containers[1]
	if c0.ExitCode == nil || *c0.ExitCode != 9 || c0.HoldCode != 3 || !strings.Contains(c0.Reason, "OnExitHold") {
		t.Errorf("container 0: %+v", c0)
	}
	if c1.HoldCode != 46 || !strings.Contains(c1.Reason, "allowed job duration") {
		t.Errorf("container 1: %+v", c1)
	}
	if err := c.Cancel(ctx(t), ref); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		sts, err := c.Status(ctx(t), []launcher.JobRef{ref})
		if err != nil {
			t.Fatal(err)
		}
		st = sts[0]
		// Proc 0 exited and was held, then removed: still exited with its code. Proc 1 was
		// held without having exited by itself: removed.
		if st.Containers[0].State == launcher.StateExited && st.Containers[1].State == launcher.StateRemoved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after cancel: %+v", st.Containers)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c0 := st.Containers[0]; c0.ExitCode == nil || *c0.ExitCode != 9 {
		t.Errorf("container 0 after removal: %+v", c0)
	}
	if err := os.MkdirAll(filepath.Join(p.state, "fail"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.state, "fail", "condor_q"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx(t), []launcher.JobRef{ref}); !errors.Is(err, launcher.ErrUnavailable) {
		t.Errorf("status with the schedd down: %v, want ErrUnavailable", err)
	}
	if _, err := c.Submit(ctx(t), h.Request(launchertest.NewJobID("down"), 0, launchertest.Behaviour{})); !errors.Is(err, launcher.ErrUnavailable) {
		t.Errorf("submit with the schedd down: %v, want ErrUnavailable", err)
	}
}
