package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kbase/cts/shared/grace"
	"github.com/kbase/cts/shared/launcher"
)

// Config is the local launcher's plugin configuration, the JSON handed to Configure.
//
//	{"agent_path": "/abs/cts-agent", "agent_args": [], "work_dir": "/abs/dir",
//	 "env": {"TOKEN_PATH": "/abs/token", "S3_SECRET_PATH": "/abs/secret"},
//	 "kill_grace_seconds": 10}
type Config struct {
	// AgentPath is the absolute path of the agent executable started once per container.
	AgentPath string `json:"agent_path"`
	// AgentArgs are its arguments.
	AgentArgs []string `json:"agent_args"`
	// WorkDir is the absolute directory holding one directory per container
	// (<work_dir>/<job_id>/<attempt>/<container>/) and the launcher's state. It is created if
	// missing.
	WorkDir string `json:"work_dir"`
	// Env is added to every agent's environment (the site's settings: TOKEN_PATH,
	// S3_SECRET_PATH, ...). Request variables override it; the launcher's own
	// (CONTAINER_NUMBER, CTS_AGENT_ATTEMPT, CTS_AGENT_WORKDIR) override both.
	Env map[string]string `json:"env"`
	// KillGraceSeconds is how long Cancel waits after SIGTERM before SIGKILL (default 45). It
	// is the outer clock of a stop (shared/grace): each agent gets it in CTS_AGENT_KILL_GRACE
	// and stops its container and reports within it.
	KillGraceSeconds float64 `json:"kill_grace_seconds"`
}

// DefaultKillGraceSeconds is KillGraceSeconds when the configuration omits it.
var DefaultKillGraceSeconds = grace.DefaultLauncherKill.Seconds()

// agentRuntimes are the values of the agent's CTS_AGENT_RUNTIME (agent/internal/config's
// Runtimes, internal to the agent).
var agentRuntimes = []string{"oci", "runc", "crun", "docker", "auto"}

// maxKillGraceSeconds bounds KillGraceSeconds (one hour).
const maxKillGraceSeconds = 3600

// EnvAgentWorkDir names the container's own directory in the agent's environment; the agent
// also starts there.
const EnvAgentWorkDir = "CTS_AGENT_WORKDIR"

// reservedEnv are set by the launcher per container and may not come from configuration.
var reservedEnv = []string{launcher.EnvContainerNumber, launcher.EnvAgentAttempt, EnvAgentWorkDir, grace.EnvKillGrace}

// ParseConfig decodes and validates a configuration. Unknown fields are errors (a misspelt key
// must not silently fall back to a default). Every problem is reported, each wrapping
// launcher.ErrInvalidConfig.
func ParseConfig(data []byte) (Config, error) {
	cfg := Config{KillGraceSeconds: DefaultKillGraceSeconds}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: decode: %v", launcher.ErrInvalidConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: decode: trailing data after the JSON object", launcher.ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate returns every problem of c joined, each wrapping launcher.ErrInvalidConfig, or nil.
// It checks the file system: the agent must be an executable regular file, and work_dir, if it
// exists, a directory.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{launcher.ErrInvalidConfig}, args...)...))
	}
	switch {
	case c.AgentPath == "":
		bad("agent_path is required")
	case !filepath.IsAbs(c.AgentPath):
		bad("agent_path %q is not absolute", c.AgentPath)
	default:
		fi, err := os.Stat(c.AgentPath)
		switch {
		case err != nil:
			bad("agent_path: %v", err)
		case !fi.Mode().IsRegular():
			bad("agent_path %q is not a regular file", c.AgentPath)
		case fi.Mode().Perm()&0o111 == 0:
			bad("agent_path %q is not executable", c.AgentPath)
		}
	}
	switch {
	case c.WorkDir == "":
		bad("work_dir is required")
	case !filepath.IsAbs(c.WorkDir):
		bad("work_dir %q is not absolute", c.WorkDir)
	default:
		fi, err := os.Stat(c.WorkDir)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			bad("work_dir: %v", err)
		case !fi.IsDir():
			bad("work_dir %q is not a directory", c.WorkDir)
		}
	}
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			bad("env: bad variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			bad("env: %s contains NUL", k)
		}
		for _, r := range reservedEnv {
			if k == r {
				bad("env: %s is set by the launcher", k)
			}
		}
	}
	if rt, ok := c.Env["CTS_AGENT_RUNTIME"]; ok && !slices.Contains(agentRuntimes, rt) {
		bad("env: CTS_AGENT_RUNTIME must be one of %s, got %q", strings.Join(agentRuntimes, ", "), rt)
	}
	for i, a := range c.AgentArgs {
		if strings.ContainsRune(a, 0) {
			bad("agent_args[%d] contains NUL", i)
		}
	}
	if math.IsNaN(c.KillGraceSeconds) || c.KillGraceSeconds < 0 || c.KillGraceSeconds > maxKillGraceSeconds {
		bad("kill_grace_seconds %v not in 0..%d", c.KillGraceSeconds, maxKillGraceSeconds)
	}
	return errors.Join(errs...)
}

// killGrace is KillGraceSeconds as a duration.
func (c Config) killGrace() time.Duration {
	return time.Duration(c.KillGraceSeconds * float64(time.Second))
}
