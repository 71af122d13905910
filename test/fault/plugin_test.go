package fault

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

// pluginPID returns the pid of the launcher plugin process the coordinator (this test process)
// started from path: a child of ours running path, not one of the container supervisors the
// plugin re-executes itself as.
func pluginPID(t *testing.T, path string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var found []int
	for _, st := range procs {
		dir := filepath.Dir(st)
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if args[0] == path && len(args) == 1 {
			pid, _ := strconv.Atoi(filepath.Base(dir))
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("launcher plugin processes of %s: %v, want one", path, found)
	}
	return found[0]
}

// siteStatus returns the dev site's entry of GET /sites.
func siteStatus(t *testing.T, s *testsite.Site) map[string]any {
	t.Helper()
	var out struct {
		Sites []map[string]any `json:"sites"`
	}
	if err := s.API.Do(t.Context(), "GET", "/sites", s.Demo.UserToken, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, st := range out.Sites {
		if st["cluster"] == devmode.SiteName {
			return st
		}
	}
	t.Fatalf("no site %s in %v", devmode.SiteName, out.Sites)
	return nil
}

// TestLauncherPluginKilled kills the site's launcher plugin process while a job runs. The
// site turns unavailable with the reason (GET /sites, /readyz degraded, new jobs refused with
// 60020) until the coordinator has restarted the plugin; the running job completes, and a job
// submitted after the restart is launched through the new plugin process and completes.
func TestLauncherPluginKilled(t *testing.T) {
	bins := testsite.RequireEnv(t)
	// A long first backoff keeps the site down long enough to be seen down.
	const backoff = 8 * time.Second
	s := startSite(t, func(c *app.Config) {
		c.Launchers.RestartBackoff, c.Launchers.RestartBackoffMax = backoff, backoff
		c.Launchers.CheckInterval = 100 * time.Millisecond
	})
	image := registerTestTool(t, s)
	in := s.PutInput(t, "fault/in/plugin.txt", []byte("survives the plugin\n"))
	id := submitTool(t, s, image, in, "sleep-copy", "10")
	s.WaitState(t, id, 2*time.Minute, "job_submitted")

	pid := pluginPID(t, bins.Launcher)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := killed.Add(time.Minute)
	for siteStatus(t, s)["available"] != false {
		if time.Now().After(deadline) {
			t.Fatal("the site stayed available after its launcher plugin was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	down := time.Since(killed)
	if st := siteStatus(t, s); st["active"] != true || !strings.Contains(st["unavailable_reason"].(string), "exited") {
		t.Errorf("site while its plugin is down: %v", st)
	}
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := s.API.Do(t.Context(), "GET", "/readyz", s.Demo.AdminToken, nil, &ready); err != nil {
		t.Errorf("readyz while a plugin is down: %v (want 200 degraded)", err)
	} else if ready.Status != "degraded" || !strings.Contains(ready.Checks["site:"+devmode.SiteName], "exited") {
		t.Errorf("readyz while a plugin is down: %+v", ready)
	}
	var apiErr *demo.APIError
	if err := s.API.Do(t.Context(), "POST", "/jobs", s.Demo.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": []string{in}, "output_dir": "cts-data/fault/out2",
		"params": map[string]any{"args": []string{"sleep", "0"}},
	}, nil); !errors.As(err, &apiErr) || apiErr.AppCode() != 60020 {
		t.Errorf("submit while the plugin is down = %v, want 400/60020", err)
	}
	t.Logf("site down %s after the kill", down)

	// The plugin comes back after its backoff, in a new process.
	deadline = time.Now().Add(2 * time.Minute)
	for siteStatus(t, s)["available"] != true {
		if time.Now().After(deadline) {
			t.Fatalf("the site did not become available again: %v", siteStatus(t, s))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if since := time.Since(killed); since < backoff {
		t.Errorf("restarted %s after the kill, before the %s backoff", since, backoff)
	}
	if st := siteStatus(t, s); st["unavailable_reason"] != nil {
		t.Errorf("available site keeps a reason: %v", st)
	}
	if p := pluginPID(t, bins.Launcher); p == pid {
		t.Fatalf("the plugin process %d is the one killed", p)
	}

	// The job that ran through it all completes, with its output.
	if j := s.WaitState(t, id, 3*time.Minute, "complete", "error", "canceled"); j["state"] != "complete" {
		t.Fatalf("job ended %v: %v", j["state"], s.AdminJob(t, id)["admin_error"])
	}
	// A new job is launched through the restarted plugin.
	id2 := submitTool(t, s, image, in, "sleep-copy", "0")
	if j := s.WaitState(t, id2, 3*time.Minute, "complete", "error", "canceled"); j["state"] != "complete" {
		t.Fatalf("job after the restart ended %v: %v", j["state"], s.AdminJob(t, id2)["admin_error"])
	}
	if !strings.Contains(s.Logs(), `"msg":"launcher plugin restarted"`) {
		t.Error("no restart logged")
	}
}
