package local_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/plugins/local"
	"github.com/kbase/cts/plugins/local/supervisor"
	"github.com/kbase/cts/shared/grace"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/launcher/launchertest"
)

// localEnv is a started and configured plugin with its harness and directories.
type localEnv struct {
	h launchertest.Harness
	d harnessDirs
	c *launcher.Client
}

func newLocal(t testing.TB, cfgEnv map[string]string) localEnv {
	t.Helper()
	h, d := newHarness(t, time.Second, cfgEnv)
	c := startPlugin(t)
	t.Cleanup(c.Close)
	if err := c.Configure(t.Context(), h.Config); err != nil {
		t.Fatal(err)
	}
	return localEnv{h: h, d: d, c: c}
}

func newLocalB(b *testing.B) localEnv { return newLocal(b, nil) }

func (e localEnv) status(t *testing.T, ref launcher.JobRef) launcher.JobStatus {
	t.Helper()
	sts, err := e.c.Status(t.Context(), []launcher.JobRef{ref})
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Err != nil {
		t.Fatal(sts[0].Err)
	}
	return sts[0]
}

// waitAll waits until every container is in state want.
func (e localEnv) waitAll(t *testing.T, ref launcher.JobRef, want launcher.ContainerState) launcher.JobStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := e.status(t, ref)
		done := len(st.Containers) > 0
		for _, c := range st.Containers {
			done = done && c.State == want
		}
		if done {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all %s: %+v", want, st.Containers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentEnvironmentAndFiles(t *testing.T) {
	t.Parallel()
	e := newLocal(t, map[string]string{"CFG_ONLY": "c", "CTS_TEST_MARK": "from config", "TOKEN_PATH": "/cfg/token"})
	jobID := launchertest.NewJobID("env")
	req := e.h.Request(jobID, 0, launchertest.Behaviour{}, launchertest.Behaviour{Exit: 1})
	resp, err := e.c.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if want := local.Handle(jobID, 0); resp.Handle != want || want != "local:"+jobID+":0" {
		t.Errorf("handle %q, want %q", resp.Handle, want)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	e.waitAll(t, ref, launcher.StateExited)

	allowed := map[string]bool{
		"PATH": true, "HOME": true, "CFG_ONLY": true, "TOKEN_PATH": true, local.EnvAgentWorkDir: true,
		launcher.EnvContainerNumber: true, launcher.EnvAgentAttempt: true, "CTS_TEST_CWD": true, grace.EnvKillGrace: true,
		launcher.EnvCredentialFile: true, "CTS_TEST_CREDENTIAL": true, "CTS_TEST_CREDENTIAL_MODE": true,
		// Set by the stand-in's shell itself.
		"PWD": true, "OLDPWD": true, "SHLVL": true, "_": true,
	}
	for k := range req.Env {
		allowed[k] = true
	}
	for n := range 2 {
		dir := filepath.Join(e.d.work, jobID, "0", strconv.Itoa(n))
		rec, err := launchertest.ReadRecord(e.d.records, jobID, 0, n)
		if err != nil || len(rec.Starts) != 1 {
			t.Fatalf("container %d record: %+v, %v", n, rec, err)
		}
		env := rec.Starts[0]
		for k, want := range map[string]string{
			"CFG_ONLY":                  "c",
			"CTS_TEST_MARK":             "mark " + jobID, // the request wins over the configuration
			local.EnvAgentWorkDir:       dir,
			"CTS_TEST_CWD":              dir,
			launcher.EnvAgentAttempt:    local.AttemptName(jobID, 0, n),
			"PATH":                      os.Getenv("PATH"),
			"CTS_TEST_PLUGIN_ONLY":      "",
			launcher.EnvContainerNumber: strconv.Itoa(n),
			// The credential is a private file in the container's directory, not a variable.
			launcher.EnvCredentialFile: filepath.Join(dir, local.CredentialFile),
			"CTS_TEST_CREDENTIAL":      launchertest.Credential(jobID, 0, n),
			"CTS_TEST_CREDENTIAL_MODE": "600",
			// The agent fits its stop inside the launcher's kill grace.
			grace.EnvKillGrace: grace.Seconds(e.h.KillGrace),
		} {
			if env[k] != want {
				t.Errorf("container %d: %s=%q, want %q", n, k, env[k], want)
			}
		}
		for k := range env {
			if !allowed[k] {
				t.Errorf("container %d: unexpected variable %s in the agent environment", n, k)
			}
		}
		for file, want := range map[string]string{
			"agent.out": "stand-in " + strconv.Itoa(n) + " of " + jobID + " started",
			"agent.err": "stand-in " + strconv.Itoa(n) + " stderr",
		} {
			data, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil || !strings.Contains(string(data), want) {
				t.Errorf("container %d %s: %q, %v; want %q", n, file, data, err, want)
			}
		}
		for _, f := range []string{"pid", "supervisor.pid", "exit", "claim"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("container %d: %v", n, err)
			}
		}
	}
}

// TestInterruptedSubmit simulates a plugin that died after recording a submit but before
// starting its containers: Status says so, and a repeated Submit completes the job.
func TestInterruptedSubmit(t *testing.T) {
	t.Parallel()
	e := newLocal(t, nil)
	jobID := launchertest.NewJobID("intr")
	req := e.h.Request(jobID, 0, launchertest.Behaviour{Exit: 2}, launchertest.Behaviour{Exit: 3})
	jd := filepath.Join(e.d.work, jobID, "0")
	if err := os.MkdirAll(jd, 0o750); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(map[string]any{"job_id": jobID, "attempt": 0, "containers": 2, "submitted": time.Now()})
	if err := os.WriteFile(filepath.Join(jd, "request.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: local.Handle(jobID, 0)}
	for _, c := range e.status(t, ref).Containers {
		if c.State != launcher.StateUnknown || !strings.Contains(c.Reason, "never started") {
			t.Errorf("container %d: %s %q, want unknown/never started", c.Container, c.State, c.Reason)
		}
	}
	resp, err := e.c.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Existing || resp.Handle != ref.Handle {
		t.Errorf("resubmit: %+v", resp)
	}
	st := e.waitAll(t, ref, launcher.StateExited)
	for n, c := range st.Containers {
		if c.ExitCode == nil || *c.ExitCode != n+2 {
			t.Errorf("container %d: exit code %v", n, c.ExitCode)
		}
	}
}

// TestSupervisorKilled: when a supervisor is SIGKILLed its agent dies with it (parent-death
// signal), Status says the exit went unrecorded, and Cancel settles the container as removed
// and runs the agent's reaper for what the agent left (with the configured environment only:
// the stand-in's reap record lands in the configured record folder, under "nojob").
func TestSupervisorKilled(t *testing.T) {
	t.Parallel()
	reapDir := t.TempDir()
	e := newLocal(t, map[string]string{"CTS_TEST_RECORD_DIR": reapDir})
	jobID := launchertest.NewJobID("supk")
	resp, err := e.c.Submit(t.Context(), e.h.Request(jobID, 0, launchertest.Behaviour{Sleep: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	e.waitAll(t, ref, launcher.StateRunning)
	dir := filepath.Join(e.d.work, jobID, "0", "0")
	readPID := func(name string) int {
		var rec struct {
			PID int `json:"pid"`
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || json.Unmarshal(data, &rec) != nil || rec.PID <= 0 {
			t.Fatalf("read %s: %q, %v", name, data, err)
		}
		return rec.PID
	}
	sup, agent := readPID("supervisor.pid"), readPID("pid")
	// The supervisor is its own binary, found beside the plugin's, with the supervisor mark
	// as its first argument.
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(sup) + "/cmdline")
	if args := strings.Split(string(cmdline), "\x00"); len(args) < 2 || filepath.Base(args[0]) != local.SupervisorBinary || args[1] != supervisor.Command {
		t.Errorf("supervisor command line %q, want %s %s ...", args, local.SupervisorBinary, supervisor.Command)
	}
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := e.waitAll(t, ref, launcher.StateUnknown)
	if !strings.Contains(st.Containers[0].Reason, "without a recorded exit status") {
		t.Errorf("reason %q", st.Containers[0].Reason)
	}
	if err := syscall.Kill(agent, 0); !errors.Is(err, syscall.ESRCH) {
		// The agent was reparented; it must be gone (or at most a zombie of init for a moment).
		data, _ := os.ReadFile("/proc/" + strconv.Itoa(agent) + "/stat")
		if !strings.Contains(string(data), ") Z ") {
			t.Errorf("agent %d outlived its supervisor: %v %q", agent, err, data)
		}
	}
	if err := e.c.Cancel(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	e.waitAll(t, ref, launcher.StateRemoved)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(reapDir, "nojob.x.x.reap"))
		if strings.Contains(string(b), "reap reap --yes") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reap after the cancel of a container whose supervisor was killed: %q", b)
		}
	}
}

// TestCleanupRemovesDirectory checks the on-disk effect of Cleanup.
func TestCleanupRemovesDirectory(t *testing.T) {
	t.Parallel()
	e := newLocal(t, nil)
	jobID := launchertest.NewJobID("rm")
	resp, err := e.c.Submit(t.Context(), e.h.Request(jobID, 0, launchertest.Behaviour{}))
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	e.waitAll(t, ref, launcher.StateExited)
	if err := e.c.Cleanup(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.d.work, jobID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("job directory still there: %v", err)
	}
}

// TestKilledAgentIsReaped: an agent that outlives the kill grace is killed, and the supervisor
// then runs the agent's own reaper ("reap --yes") for what it left; an agent that stops in
// time is not reaped.
func TestKilledAgentIsReaped(t *testing.T) {
	t.Parallel()
	e := newLocal(t, nil)
	jobID := launchertest.NewJobID("reap")
	req := e.h.Request(jobID, 0, launchertest.Behaviour{Sleep: time.Minute}, launchertest.Behaviour{Sleep: time.Minute, IgnoreTERM: true})
	resp, err := e.c.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	e.waitAll(t, ref, launcher.StateRunning)
	// The stand-ins record their start once their TERM handling is in place.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r0, _ := launchertest.ReadRecord(e.d.records, jobID, 0, 0)
		r1, _ := launchertest.ReadRecord(e.d.records, jobID, 0, 1)
		if len(r0.Starts) > 0 && len(r1.Starts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stand-ins never started")
		}
	}
	if err := e.c.Cancel(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	st := e.waitAll(t, ref, launcher.StateRemoved)
	if c := st.Containers[1]; c.ExitCode == nil || *c.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("container 1 %+v: want killed", c)
	}
	for n, want := range []bool{false, true} {
		b, err := os.ReadFile(filepath.Join(e.d.records, fmt.Sprintf("%s.0.%d.reap", jobID, n)))
		if got := err == nil && strings.Contains(string(b), "reap reap --yes"); got != want {
			t.Errorf("container %d reaped: %v (%q), want %v", n, got, b, want)
		}
	}
}

// orphaningAgent is a stand-in agent that starts a process in a process group of its own
// with a child of its own (as the agent's `runc run` and the container's init are), records
// both pids, and is then killed with SIGKILL. Run as "reap --yes" it records whether either
// process still lives.
const orphaningAgent = `#!/bin/sh
rec="$CTS_TEST_RECORD_DIR/$JOB_ID"
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$1" = reap ]; then
	if alive "$rec.group" || alive "$rec.grandchild"; then
		echo "reap: agent processes alive" >>"$rec.reap"
	else
		echo "reap: agent processes gone" >>"$rec.reap"
	fi
	exit 0
fi
setsid sh -c 'sleep 600 & echo $! >"$0.grandchild.tmp"; mv "$0.grandchild.tmp" "$0.grandchild"; wait' "$rec" &
echo $! >"$rec.group"
while [ ! -s "$rec.grandchild" ]; do sleep 0.05; done
kill -KILL $$
`

// TestKilledAgentLeavesNoProcess: an agent killed with SIGKILL may leave processes outside
// its process group (its `runc run`, still creating or running the container, and that
// container's init). The supervisor ends them all before it runs the reaper, so nothing can
// create or keep the container after the reap, and only then records the exit.
func TestKilledAgentLeavesNoProcess(t *testing.T) {
	t.Parallel()
	e := newLocal(t, nil)
	if err := os.WriteFile(e.d.agent, []byte(orphaningAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	jobID := launchertest.NewJobID("orphan")
	resp, err := e.c.Submit(t.Context(), e.h.Request(jobID, 0, launchertest.Behaviour{}))
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	st := e.waitAll(t, ref, launcher.StateExited)
	if c := st.Containers[0]; c.ExitCode == nil || *c.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("container 0 %+v: want killed", c)
	}
	rec := filepath.Join(e.d.records, jobID)
	b, err := os.ReadFile(rec + ".reap")
	if err != nil || strings.TrimSpace(string(b)) != "reap: agent processes gone" {
		t.Errorf("reaper saw %q (%v), want it run once after the agent's processes were gone", b, err)
	}
	for _, name := range []string{".group", ".grandchild"} {
		b, err := os.ReadFile(rec + name)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || perr != nil {
			t.Fatalf("pid %s: %q %v %v", name, b, err, perr)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			t.Errorf("process %s %d outlived the agent's exit record: %v %q", name, pid, err, data)
		}
	}
}

// TestSpawnedSupervisorIsStarting: between Submit's return and its supervisor's claim (seconds
// on a busy machine) the container is starting, not "never started"; a spawned supervisor that
// died before its claim makes the container unknown with a reason that says so.
func TestSpawnedSupervisorIsStarting(t *testing.T) {
	t.Parallel()
	e := newLocal(t, nil)
	jobID := launchertest.NewJobID("spawn")
	jd := filepath.Join(e.d.work, jobID, "0")
	for n := range 2 {
		if err := os.MkdirAll(filepath.Join(jd, strconv.Itoa(n)), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	rec, _ := json.Marshal(map[string]any{"job_id": jobID, "attempt": 0, "containers": 2, "submitted": time.Now()})
	if err := os.WriteFile(filepath.Join(jd, "request.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	// Container 0: a live process stands for a supervisor not yet scheduled to claim.
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	// Container 1: a supervisor that ended without claiming.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for n, pid := range []int{live.Process.Pid, dead.Process.Pid} {
		b, _ := json.Marshal(map[string]any{"pid": pid, "started": time.Now()})
		if err := os.WriteFile(filepath.Join(jd, strconv.Itoa(n), "spawned"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := e.status(t, launcher.JobRef{JobID: jobID, Handle: local.Handle(jobID, 0)})
	if c := st.Containers[0]; c.State != launcher.StateIdle || c.Reason != "starting" {
		t.Errorf("container 0 with a live spawned supervisor: %s %q, want idle/starting", c.State, c.Reason)
	}
	if c := st.Containers[1]; c.State != launcher.StateUnknown || !strings.Contains(c.Reason, "ended before it claimed") {
		t.Errorf("container 1 with a dead spawned supervisor: %s %q, want unknown/ended before it claimed", c.State, c.Reason)
	}
}

// TestSupervisorCommand: the plugin runs cts-local-supervisor from beside its own binary, and
// re-executes itself as the supervisor where that is missing (or not executable).
func TestSupervisorCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "cts-launcher-local")
	sup := filepath.Join(dir, local.SupervisorBinary)
	if got := local.SupervisorCommand(exe); !slices.Equal(got, []string{exe, supervisor.Command}) {
		t.Errorf("without %s: %q", local.SupervisorBinary, got)
	}
	if err := os.WriteFile(sup, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := local.SupervisorCommand(exe); !slices.Equal(got, []string{exe, supervisor.Command}) {
		t.Errorf("with a %s that is not executable: %q", local.SupervisorBinary, got)
	}
	if err := os.Chmod(sup, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := local.SupervisorCommand(exe); !slices.Equal(got, []string{sup, supervisor.Command}) {
		t.Errorf("with %s: %q", local.SupervisorBinary, got)
	}
}
