package local_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/plugins/local"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/launcher/launchertest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// pluginBinary builds cmd/cts-launcher-local once per test run, with cmd/cts-local-supervisor
// beside it as it is installed.
func pluginBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "cts-launcher-local-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "cts-launcher-local")
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "github.com/kbase/cts/plugins/local/cmd/cts-launcher-local",
			"github.com/kbase/cts/plugins/local/cmd/cts-local-supervisor")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build plugin: %v\n%s", buildErr, binPath)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// env is the plugin process environment the tests use: PATH and HOME, plus a variable that
// must not reach agents.
func pluginEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "CTS_TEST_PLUGIN_ONLY=leak"}
}

func startPlugin(t testing.TB) *launcher.Client {
	t.Helper()
	c, err := launcher.Start(t.Context(), launcher.HostConfig{
		Path:   pluginBinary(t),
		Env:    pluginEnv(),
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	return c
}

type harnessDirs struct {
	work, records, agent string
}

func newHarness(t testing.TB, grace time.Duration, extraEnv map[string]string) (launchertest.Harness, harnessDirs) {
	t.Helper()
	root := t.TempDir()
	d := harnessDirs{work: filepath.Join(root, "work"), records: filepath.Join(root, "records")}
	if err := os.MkdirAll(d.records, 0o755); err != nil {
		t.Fatal(err)
	}
	agent, err := launchertest.WriteStandIn(root)
	if err != nil {
		t.Fatal(err)
	}
	d.agent = agent
	cfg, err := json.Marshal(local.Config{
		AgentPath:        agent,
		WorkDir:          d.work,
		Env:              extraEnv,
		KillGraceSeconds: grace.Seconds(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return launchertest.Harness{
		Start:         func(t *testing.T) *launcher.Client { return startPlugin(t) },
		Config:        cfg,
		RecordDir:     d.records,
		UnknownHandle: func(jobID string) string { return local.Handle(jobID, 0) },
		KillGrace:     grace,
	}, d
}

func TestConformance(t *testing.T) {
	h, _ := newHarness(t, time.Second, map[string]string{"TOKEN_PATH": "/nonexistent/token"})
	launchertest.Run(t, h)
}
