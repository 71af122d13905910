package testsite

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/test/minicondor"
)

// Condor is the mini-condor pool behind a site started with Options.HTCondor: the
// coordinator drives the real htcondor launcher plugin, which drives mini-condor's
// condor_submit, condor_q, condor_history and condor_rm (test/minicondor).
type Condor struct {
	// Plugin is the cts-launcher-htcondor binary.
	Plugin string
	// Tools maps each HTCondor tool name (minicondor.Tools) to its path.
	Tools map[string]string
	// StateDir is the pool's state (MINICONDOR_DIR).
	StateDir string

	agentPath, initialDir, cacheDir, runcRoot string
}

// condorTools holds the plugin and the installed tools, made once per test binary.
var condorTools struct {
	once   sync.Once
	plugin string
	tools  map[string]string
	err    error
}

// newCondor builds (once) the plugin and mini-condor and lays out a fresh pool for one site.
func newCondor(t testing.TB, agentPath string) *Condor {
	t.Helper()
	condorTools.once.Do(func() {
		if condorTools.plugin, condorTools.err = binary(HTCondorPkg); condorTools.err != nil {
			return
		}
		mini, err := binary(MiniCondorPkg)
		if err != nil {
			condorTools.err = err
			return
		}
		toolDir := filepath.Join(filepath.Dir(mini), "condor-bin")
		if err := os.MkdirAll(toolDir, 0o755); err != nil {
			condorTools.err = fmt.Errorf("mini-condor tools: %w", err)
			return
		}
		condorTools.tools, condorTools.err = minicondor.Install(mini, toolDir)
	})
	if condorTools.err != nil {
		t.Fatal(condorTools.err)
	}
	pool := t.TempDir()
	return &Condor{
		Plugin: condorTools.plugin, Tools: condorTools.tools, StateDir: filepath.Join(pool, "state"),
		agentPath: agentPath, initialDir: filepath.Join(pool, "initialdir"),
		cacheDir: filepath.Join(pool, "image-cache"), runcRoot: filepath.Join(pool, "runc"),
	}
}

// configure makes the site's only site ("local") launch through the htcondor plugin.
func (c *Condor) configure(cfg *app.Config) {
	st := &cfg.Sites[0]
	st.Plugin = c.Plugin
	st.PluginConfig = map[string]any{
		"agent_path":  c.agentPath,
		"initial_dir": c.initialDir,
		"env": map[string]string{
			"PATH":                os.Getenv("PATH"),
			"CTS_AGENT_CACHE_DIR": c.cacheDir,
			"CTS_AGENT_RUNC_ROOT": c.runcRoot,
		},
		"kill_grace_seconds": 5,
		"condor_submit":      c.Tools["condor_submit"],
		"condor_q":           c.Tools["condor_q"],
		"condor_history":     c.Tools["condor_history"],
		"condor_rm":          c.Tools["condor_rm"],
		"condor_env":         map[string]string{minicondor.EnvDir: c.StateDir},
	}
}

// Command returns a command that runs the HTCondor tool name ("condor_q") against this pool.
func (c *Condor) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.Tools[name], args...)
	cmd.Env = append(os.Environ(), minicondor.EnvDir+"="+c.StateDir)
	return cmd
}
