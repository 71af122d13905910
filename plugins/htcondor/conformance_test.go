package htcondor_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/plugins/htcondor"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/launcher/launchertest"
	"github.com/kbase/cts/test/minicondor"
)

var (
	buildOnce sync.Once
	bins      struct {
		dir, plugin string
		tools       map[string]string
		err         error
	}
)

// build builds the plugin and mini-condor once per test run.
func build(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "cts-launcher-htcondor-test")
		if bins.err != nil {
			return
		}
		bins.plugin = filepath.Join(bins.dir, "cts-launcher-htcondor")
		mini := filepath.Join(bins.dir, "minicondor")
		for out, pkg := range map[string]string{
			bins.plugin: "github.com/kbase/cts/plugins/htcondor/cmd/cts-launcher-htcondor",
			mini:        "github.com/kbase/cts/test/minicondor/cmd/minicondor",
		} {
			if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				bins.err = &buildError{pkg, err, string(b)}
				return
			}
		}
		bins.tools, bins.err = minicondor.Install(mini, bins.dir)
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

type buildError struct {
	pkg string
	err error
	out string
}

func (e *buildError) Error() string { return "build " + e.pkg + ": " + e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func startPlugin(t testing.TB) *launcher.Client {
	t.Helper()
	build(t)
	c, err := launcher.Start(t.Context(), launcher.HostConfig{
		Path: bins.plugin,
		Env:  []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "CTS_TEST_PLUGIN_ONLY=leak"},
	})
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	return c
}

// pool is one mini-condor pool with a plugin configuration pointing at it.
type pool struct {
	state, initial, records, agent string
	cfg                            htcondor.Config
}

func newPool(t testing.TB, grace time.Duration) *pool {
	t.Helper()
	build(t)
	root := t.TempDir()
	p := &pool{state: filepath.Join(root, "condor"), initial: filepath.Join(root, "initial"), records: filepath.Join(root, "records")}
	for _, d := range []string{p.state, p.records} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	agent, err := launchertest.WriteStandIn(root)
	if err != nil {
		t.Fatal(err)
	}
	p.agent = agent
	p.cfg = htcondor.Config{
		AgentPath: agent, InitialDir: p.initial, KillGraceSeconds: grace.Seconds(),
		CondorSubmit: bins.tools["condor_submit"], CondorQ: bins.tools["condor_q"],
		CondorHistory: bins.tools["condor_history"], CondorRm: bins.tools["condor_rm"],
		CondorEnv: map[string]string{minicondor.EnvDir: p.state},
		Env:       map[string]string{"TOKEN_PATH": "/nonexistent/token"},
	}
	return p
}

func (p *pool) config(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *pool) harness(t testing.TB) launchertest.Harness {
	return launchertest.Harness{
		Start:         func(t *testing.T) *launcher.Client { return startPlugin(t) },
		Config:        p.config(t),
		RecordDir:     p.records,
		UnknownHandle: func(string) string { return "987654" },
		KillGrace:     time.Duration(p.cfg.KillGraceSeconds * float64(time.Second)),
	}
}

// TestConformance runs the shared launcher suite through the real plugin binary, go-plugin
// gRPC and mini-condor.
func TestConformance(t *testing.T) {
	p := newPool(t, time.Second)
	launchertest.Run(t, p.harness(t))
}
