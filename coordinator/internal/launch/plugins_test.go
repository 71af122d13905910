package launch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/shared/launcher"
)

// envTestPlugin makes the test binary serve testPlugin, keeping its state in the named folder.
const envTestPlugin = "CTS_LAUNCH_TEST_PLUGIN_DIR"

// testPlugin is a launcher whose state is on disk, as a real plugin's is in its backend: a
// restarted process knows the launches of the one before. A file "refuse" in its folder makes
// the process exit at start; every Configure appends a line to "configured".
type testPlugin struct{ dir string }

func servePlugin(dir string) {
	if _, err := os.Stat(filepath.Join(dir, "refuse")); err == nil {
		os.Exit(1)
	}
	launcher.Serve(testPlugin{dir: dir})
}

func (p testPlugin) Info(context.Context) (launcher.Info, error) {
	return launcher.Info{Name: "test", APIVersion: launcher.APIVersion}, nil
}

func (p testPlugin) Configure(_ context.Context, cfg []byte) error {
	f, err := os.OpenFile(filepath.Join(p.dir, "configured"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s\n", cfg)
	return err
}

func (p testPlugin) Submit(_ context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	name := filepath.Join(p.dir, fmt.Sprintf("launch-%s-%d", req.JobID, req.Attempt))
	if _, err := os.Stat(name); err == nil {
		return launcher.SubmitResponse{Handle: "h-" + req.JobID, Existing: true}, nil
	}
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		return launcher.SubmitResponse{}, err
	}
	return launcher.SubmitResponse{Handle: "h-" + req.JobID}, nil
}

func (p testPlugin) Status(_ context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	return make([]launcher.JobStatus, len(refs)), nil
}

func (p testPlugin) Cancel(context.Context, launcher.JobRef) error { return nil }

// events records the registry's events.
type events struct {
	mu        sync.Mutex
	changes   []string
	restarted []string
}

func (e *events) hooks() launch.PluginEvents {
	return launch.PluginEvents{
		Availability: func(site string, up bool, reason string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.changes = append(e.changes, fmt.Sprintf("%s %t %s", site, up, reason))
		},
		Restarted: func(site string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.restarted = append(e.restarted, site)
		},
	}
}

func (e *events) snapshot() ([]string, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.changes...), append([]string(nil), e.restarted...)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testSpec(t *testing.T, site string) (launch.PluginSpec, string) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return launch.PluginSpec{Site: site, Config: []byte(`{"site":"` + site + `"}`), Host: launcher.HostConfig{
		Path: exe, Env: []string{envTestPlugin + "=" + dir, "PATH=" + os.Getenv("PATH")},
		Logger: slog.New(slog.DiscardHandler),
	}}, dir
}

func TestPluginsRestartAfterExit(t *testing.T) {
	spec, dir := testSpec(t, "s1")
	other, _ := testSpec(t, "s2")
	ctx := t.Context()
	reg, err := launch.StartPlugins(ctx, []launch.PluginSpec{spec, other},
		launch.SuperviseConfig{RestartBackoff: 50 * time.Millisecond, RestartBackoffMax: 400 * time.Millisecond, CheckInterval: 20 * time.Millisecond},
		nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	ev := &events{}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reg.Run(rctx, ev.hooks()) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})

	p, _ := reg.Plugin("s1")
	req := launcher.SubmitRequest{JobID: "job1", Containers: 1, CPUs: 1, MemoryBytes: 1 << 20, RuntimeSeconds: 60,
		User: "u", Env: map[string]string{"X": "1"}}
	resp, err := p.Submit(ctx, req)
	if err != nil || resp.Existing {
		t.Fatalf("submit = %+v, %v", resp, err)
	}
	if up, reason := reg.Available("s1"); !up || reason != "" {
		t.Fatalf("available = %t %q", up, reason)
	}

	// The plugin process dies; restarts fail while the plugin refuses to start.
	if err := os.WriteFile(filepath.Join(dir, "refuse"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the site to be unavailable after a failed restart", func() bool {
		up, reason := reg.Available("s1")
		return !up && strings.Contains(reason, "could not be restarted")
	})
	if _, err := p.Submit(ctx, req); !errors.Is(err, launcher.ErrUnavailable) || !strings.Contains(err.Error(), "could not be restarted") {
		t.Fatalf("submit while down = %v, want ErrUnavailable with the reason", err)
	}
	if up, _ := reg.Available("s2"); !up {
		t.Fatal("another site's plugin went down with it")
	}

	// It may start again: the supervisor restarts it, configures it again, and the launch made
	// before the crash is found again, not repeated.
	if err := os.Remove(filepath.Join(dir, "refuse")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restart", func() bool { up, _ := reg.Available("s1"); return up })
	if p.Restarts() != 1 || p.Pid() == pid || p.Pid() == 0 {
		t.Fatalf("restarts %d, pid %d (was %d)", p.Restarts(), p.Pid(), pid)
	}
	resp, err = p.Submit(ctx, req)
	if err != nil || !resp.Existing || resp.Handle != "h-job1" {
		t.Fatalf("submit after the restart = %+v, %v; want the existing launch", resp, err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "configured"))
	if err != nil || string(cfg) != "{\"site\":\"s1\"}\n{\"site\":\"s1\"}\n" {
		t.Fatalf("configure calls %q, %v: want the configuration sent again after the restart", cfg, err)
	}
	changes, restarted := ev.snapshot()
	if len(restarted) != 1 || restarted[0] != "s1" {
		t.Fatalf("restarted events %v", restarted)
	}
	if len(changes) < 2 || !strings.HasPrefix(changes[0], "s1 false the launcher plugin process exited") ||
		changes[len(changes)-1] != "s1 true " {
		t.Fatalf("availability events %q", changes)
	}
}

func TestPluginCallSeesTheExit(t *testing.T) {
	spec, _ := testSpec(t, "s1")
	// The supervisor checks rarely: only the failed call can make the restart prompt.
	reg, err := launch.StartPlugins(t.Context(), []launch.PluginSpec{spec},
		launch.SuperviseConfig{RestartBackoff: 10 * time.Millisecond, CheckInterval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	rctx, stop := context.WithCancel(t.Context())
	defer stop()
	// The first pass of Run happens at once; kill the plugin after it.
	p, _ := reg.Plugin("s1")
	go func() { _ = reg.Run(rctx, launch.PluginEvents{}) }()
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a call to see the exit", func() bool {
		_, err := p.Status(t.Context(), []launcher.JobRef{{JobID: "j", Handle: "h"}})
		return errors.Is(err, launcher.ErrPluginExited) || errors.Is(err, launcher.ErrUnavailable)
	})
	waitFor(t, "the restart woken by the call", func() bool { return p.Restarts() == 1 })
}

func TestStartPluginsFailsWhole(t *testing.T) {
	good, _ := testSpec(t, "good")
	bad, dir := testSpec(t, "bad")
	if err := os.WriteFile(filepath.Join(dir, "refuse"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := launch.StartPlugins(t.Context(), []launch.PluginSpec{good, bad}, launch.SuperviseConfig{}, nil)
	if err == nil || !strings.Contains(err.Error(), "site bad: start launcher plugin") {
		t.Fatalf("StartPlugins = %v", err)
	}
}
