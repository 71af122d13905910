package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/test/dockertest"
	"github.com/kbase/cts/test/testsite"
)

// logMaxMB bounds the container logs of the matrix's sites (CTS_AGENT_LOG_MAX_MB), so the
// log-flood case stays quick.
const logMaxMB = 1

// TestContainerRuntimes runs the suite's container tests under each runtime agents can use,
// the oci runtime with runc and with crun, and `docker` (the node's real engine), with the
// same assertions: one dev site per runtime, shared by its cases, which run in parallel.
func TestContainerRuntimes(t *testing.T) {
	testsite.RequireEnv(t)
	for _, rt := range []string{"runc", "crun", "docker"} {
		t.Run(rt, func(t *testing.T) {
			if rt == "crun" {
				testsite.RequireCrun(t)
			}
			tp := newTamperer()
			s := startSite(t, testsite.Options{
				Runtime:         rt,
				RegistryOptions: []devstack.RegistryOption{tp.option()},
				Configure: func(cfg *app.Config) {
					env := cfg.Sites[0].PluginConfig["env"].(map[string]string)
					env["CTS_AGENT_LOG_MAX_MB"] = fmt.Sprint(logMaxMB)
				},
			})
			tool := s.RegisterTool(t, testsite.Binary(t, testsite.TestToolPkg), "matrix")
			cases := []struct {
				name string
				fn   func(t *testing.T)
			}{
				{"demo job", func(t *testing.T) { checkDemoJob(t, s) }},
				{"tampered layer", func(t *testing.T) { checkTamperedLayer(t, s, tp) }},
				{"refdata mount", func(t *testing.T) { checkRefdataJob(t, s) }},
				{"confinement", func(t *testing.T) { checkConfinement(t, s, tool) }},
				{"limits", func(t *testing.T) { checkLimits(t, s, tool) }},
				{"OOM", func(t *testing.T) { checkOOM(t, s, tool) }},
				{"runtime limit", func(t *testing.T) { checkRuntimeLimit(t, s, tool) }},
				{"cancel", func(t *testing.T) { checkCancel(t, s, tool) }},
				{"logs", func(t *testing.T) { checkLogs(t, s, tool) }},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.fn(t)
				})
			}
		})
	}
}

// runTool runs one container of the test tool with args (literal arguments) and extra job
// fields, and returns the job's ID and its final user view. The tool creates
// /output_files/done when its command succeeds, so a job of a command without outputs of its
// own completes.
func runTool(t *testing.T, s *testsite.Site, image, name string, args []any, extra map[string]any) (string, map[string]any) {
	t.Helper()
	in := s.PutInput(t, "e2e/"+name+"/in/x.txt", []byte("x\n"))
	fields := map[string]any{
		"image": image, "input_files": []string{in}, "output_dir": "cts-data/e2e/" + name + "/output",
		"params": map[string]any{"args": args, "environment": map[string]any{"TESTTOOL_TOUCH": "/output_files/done"}},
	}
	for k, v := range extra {
		fields[k] = v
	}
	id := submitJob(t, s, fields)
	return id, waitJob(t, s, id)
}

// logOf returns a container log of a job through the API.
func logOf(t *testing.T, s *testsite.Site, id string, n int, stream string) (string, error) {
	t.Helper()
	var b []byte
	err := s.API.Do(context.Background(), "GET", fmt.Sprintf("/jobs/%s/log/%d/%s", id, n, stream), s.Demo.UserToken, nil, &b)
	return string(b), err
}

// checkConfinement: the container's confinement seen from inside (no capability, no new
// privileges, a seccomp filter, forbidden operations refused). A fork bomb stopped by the pids
// limit is agent/internal/container's TestPidsLimit, under both runtimes, with a lower limit:
// forking thousands of processes here would load the whole machine.
func checkConfinement(t *testing.T, s *testsite.Site, tool string) {
	id, j := runTool(t, s, tool, "probe", []any{"probe"}, nil)
	if j["state"] != "complete" {
		t.Fatalf("probe job ended %v: %v", j["state"], s.AdminJob(t, id)["admin_error"])
	}
	out, err := logOf(t, s, id, 0, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapEff: 0000000000000000", "CapBnd: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2",
		"mount: EPERM", "unshare: EPERM", "ptrace: EPERM", "write /proc/sys: EROFS", "read /proc/timer_list: EMPTY",
		"list /sys/firmware: EMPTY", "exec in /tmp: EACCES"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("probe lacks %q:\n%s", want, out)
		}
	}
	assertNothingLeft(t, s, id)
}

// checkLimits: the CPU, memory and pids limits the job asked for are the ones the kernel
// enforces on the running container, read from inside it (its cgroup files), not only the
// ones written in the runtime's request.
func checkLimits(t *testing.T, s *testsite.Site, tool string) {
	const cpus, memory = 2, 200 << 20 // memory page-aligned: the kernel rounds a limit down to pages
	id, j := runTool(t, s, tool, "limits", []any{"limits"}, map[string]any{"cpus": cpus, "memory": memory})
	if j["state"] != "complete" {
		t.Fatalf("limits job ended %v: %v", j["state"], s.AdminJob(t, id)["admin_error"])
	}
	out, err := logOf(t, s, id, 0, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		got[k] = v
	}
	var quota, period float64
	if strings.HasPrefix(got["cpu"], "max ") {
		t.Errorf("no CPU limit inside the container (%q), want %d CPUs", got["cpu"], cpus)
	} else if _, err := fmt.Sscanf(got["cpu"], "%g %g", &quota, &period); err != nil || period == 0 {
		t.Errorf("CPU limit inside the container %q (want %d CPUs): %v", got["cpu"], cpus, err)
	} else if quota/period != cpus {
		t.Errorf("CPU limit inside the container %q is %g CPUs, want %d", got["cpu"], quota/period, cpus)
	}
	if want := fmt.Sprint(memory); got["memory"] != want {
		t.Errorf("memory limit inside the container %q, want %s", got["memory"], want)
	}
	// The agent's pids limit (agent/internal/container.DefaultPidsLimit): jobs do not set it.
	if want := "4096"; got["pids"] != want {
		t.Errorf("pids limit inside the container %q, want %s", got["pids"], want)
	}
	assertNothingLeft(t, s, id)
}

// checkOOM: a container that allocates past the job's memory is killed, and the user's error
// says so in the user's units.
func checkOOM(t *testing.T, s *testsite.Site, tool string) {
	id, j := runTool(t, s, tool, "oom", []any{"alloc", "400"}, map[string]any{"memory": 100_000_000})
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	want := "The container used more than the job's memory limit of 100 MB (100000000 bytes) and was killed. Resubmit the job with more memory."
	if j["error"] != want {
		t.Errorf("user error %q, want %q", j["error"], want)
	}
	assertNothingLeft(t, s, id)
}

// checkRuntimeLimit: a container still running at the end of the job's runtime is stopped,
// and the user's error says so.
func checkRuntimeLimit(t *testing.T, s *testsite.Site, tool string) {
	id, j := runTool(t, s, tool, "runtime", []any{"sleep-ignore-term", "600"}, map[string]any{"runtime": 3})
	if j["state"] != "error" {
		t.Fatalf("job ended %v", j["state"])
	}
	want := "The container ran longer than the job's runtime limit of 3 seconds and was stopped. Resubmit the job with a longer runtime."
	if j["error"] != want {
		t.Errorf("user error %q, want %q", j["error"], want)
	}
	assertNothingLeft(t, s, id)
}

// checkCancel cancels a job whose container ignores SIGTERM: the job ends canceled, the
// container is killed after its grace, what it printed until then is served as its log, and
// nothing is left on the node.
func checkCancel(t *testing.T, s *testsite.Site, tool string) {
	in := s.PutInput(t, "e2e/cancel/in/x.txt", []byte("x\n"))
	id := submitJob(t, s, map[string]any{"image": tool, "input_files": []string{in}, "output_dir": "cts-data/e2e/cancel/output",
		"params": map[string]any{"args": []any{"sleep-ignore-term", "600"}}})
	s.WaitState(t, id, 2*time.Minute, "job_submitted")
	waitLive(t, s, id, "sleeping")
	if err := s.API.Do(context.Background(), "PUT", "/jobs/"+id+"/cancel", s.Demo.UserToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, s, id)
	if j["state"] != "canceled" {
		t.Fatalf("job ended %v, want canceled", j["state"])
	}
	// The agent uploads the log as it stops (within its final-report budget).
	var out string
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		if out, err = logOf(t, s, id, 0, "stdout"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canceled container's log is not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, "sleeping") {
		t.Errorf("the canceled container's stdout %q lacks what it printed", out)
	}
	assertNothingLeft(t, s, id)
}

// waitLive waits until container 0 of job id has printed want (its agent's log file): the
// program runs and has set up its signal handling.
func waitLive(t *testing.T, s *testsite.Site, id, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		files, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "0", "container-0-stdout.txt"))
		if len(files) == 1 {
			if b, _ := os.ReadFile(files[0]); strings.Contains(string(b), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container 0 of job %s never printed %q", id, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkLogs: stdout and stderr are kept apart, and a container that floods its stdout gets a
// log bounded at CTS_AGENT_LOG_MAX_MB with a note saying how much was dropped.
func checkLogs(t *testing.T, s *testsite.Site, tool string) {
	id, j := runTool(t, s, tool, "logs", []any{"stderr", "to", "stderr"}, nil)
	if j["state"] != "complete" {
		t.Fatalf("job ended %v", j["state"])
	}
	if out, err := logOf(t, s, id, 0, "stderr"); err != nil || out != "to stderr\n" {
		t.Errorf("stderr %q %v", out, err)
	}
	if out, err := logOf(t, s, id, 0, "stdout"); err != nil || out != "" {
		t.Errorf("stdout %q %v", out, err)
	}
	id, j = runTool(t, s, tool, "flood", []any{"flood", "5"}, nil)
	if j["state"] != "complete" {
		t.Fatalf("flood job ended %v", j["state"])
	}
	out, err := logOf(t, s, id, 0, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	note := fmt.Sprintf("\n[cts-agent: log truncated: the first %d bytes were kept and the next %d dropped (CTS_AGENT_LOG_MAX_MB)]\n", logMaxMB*1_000_000, 5_000_000-logMaxMB*1_000_000)
	if len(out) != logMaxMB*1_000_000+len(note) || !strings.HasSuffix(out, note) {
		t.Errorf("flooded stdout: %d bytes ending %q, want %d bytes ending %q", len(out), out[max(0, len(out)-200):], logMaxMB*1_000_000+len(note), note)
	}
	assertNothingLeft(t, s, id)
}

// assertNothingLeft checks that job id left nothing on the node once it ended: its agents
// exited, and no container, runtime state, cgroup, bundle or work data of it remains.
func assertNothingLeft(t *testing.T, s *testsite.Site, id string) {
	t.Helper()
	prefix := "cts-" + id[:8] + "-"
	var left []string
	deadline := time.Now().Add(time.Minute)
	for {
		left = left[:0]
		dirs, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "*"))
		for _, d := range dirs {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				continue // the attempt's request.json
			}
			if _, err := os.Stat(filepath.Join(d, "exit")); err != nil {
				left = append(left, "agent still running in "+d)
			}
			for _, data := range []string{"input", "output", "bundles", "container-*-stdout.txt", "container-*-stderr.txt"} {
				m, _ := filepath.Glob(filepath.Join(d, data))
				left = append(left, m...)
			}
		}
		switch s.Env.AgentRuntime {
		case "docker":
			names, err := dockertest.ContainerNames(context.Background(), dockertest.Socket, prefix)
			if err != nil {
				t.Fatal(err)
			}
			left = append(left, names...)
		default:
			root := filepath.Join(s.Env.Dir, "runc")
			for _, c := range testsite.Containers(t, root) {
				if strings.HasPrefix(c, prefix) {
					left = append(left, "runtime state of "+c)
				}
			}
			sum := sha256.Sum256([]byte(root))
			cg, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "cts", hex.EncodeToString(sum[:4]), prefix+"*"))
			left = append(left, cg...)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s left on the node: %v", id, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
