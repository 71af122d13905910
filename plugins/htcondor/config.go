package htcondor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// Config is the HTCondor launcher's plugin configuration, the JSON handed to Configure.
//
//	{"agent_path": "/opt/cts/cts-agent", "initial_dir": "/condor_workdir",
//	 "client_group": "kbase", "env": {"TOKEN_PATH": "/cts/cts_token", "S3_SECRET_PATH": "/cts/s3_secret"},
//	 "condor_env": {"_CONDOR_COLLECTOR_HOST": "cm.example.org"}}
type Config struct {
	// AgentPath is the absolute path, on the coordinator host, of the static cts-agent; HTCondor
	// transfers it to the worker as the job's executable. Exactly one of AgentPath and
	// AgentURL is set.
	AgentPath string `json:"agent_path"`
	// AgentURL is an http(s) URL the workers download the agent from (for instance the
	// coordinator's own file route). Its last path element is the file name.
	AgentURL string `json:"agent_url"`
	// InitialDir is the absolute directory where the submit files and the procs' stdout,
	// stderr and event logs go (the submit description's initialdir). It must exist on the
	// schedd's host too; it is created here if missing.
	InitialDir string `json:"initial_dir"`
	// ClientGroup, when set, restricts procs to workers whose CLIENTGROUP attribute matches it
	// (requirements = regexp("<client_group>", CLIENTGROUP)).
	ClientGroup string `json:"client_group"`
	// Env is added to every proc's environment (the site's worker settings: TOKEN_PATH,
	// S3_SECRET_PATH, GLOBAL_CACHE_DIR, ...). The request's variables override it.
	Env map[string]string `json:"env"`
	// KillGraceSeconds is the time between SIGTERM and SIGKILL when a proc is removed
	// (job_max_vacate_time; default 45). It is the outer clock of a stop (shared/grace): each
	// agent gets it in CTS_AGENT_KILL_GRACE and stops its container and reports within it.
	KillGraceSeconds float64 `json:"kill_grace_seconds"`
	// RuntimeMarginSeconds is added to the job's runtime for allowed_job_duration: the agent
	// also downloads, pulls and uploads (default 3600).
	RuntimeMarginSeconds float64 `json:"runtime_margin_seconds"`
	// CommandTimeoutSeconds bounds every condor_* command (default 60).
	CommandTimeoutSeconds float64 `json:"command_timeout_seconds"`
	// CredentialSweepSeconds is the time between two sweeps of the procs' credential files
	// out of initial_dir (default 60): a file goes once its proc has left the queue (see
	// Launcher.SweepCredentials).
	CredentialSweepSeconds float64 `json:"credential_sweep_seconds"`
	// CondorSubmit, CondorQ, CondorHistory and CondorRm are the tools' paths or names looked up
	// in PATH (defaults: condor_submit, condor_q, condor_history, condor_rm).
	CondorSubmit  string `json:"condor_submit"`
	CondorQ       string `json:"condor_q"`
	CondorHistory string `json:"condor_history"`
	CondorRm      string `json:"condor_rm"`
	// CondorEnv is added to the tools' environment (beside PATH and HOME): how they find and
	// authenticate to the pool (_CONDOR_COLLECTOR_HOST, _CONDOR_SCHEDD_HOST,
	// _CONDOR_SEC_TOKEN_DIRECTORY, CONDOR_CONFIG, ...). It never reaches the procs.
	CondorEnv map[string]string `json:"condor_env"`
}

// Defaults of the optional settings.
const (
	DefaultKillGraceSeconds       = 45
	DefaultRuntimeMarginSeconds   = 3600
	DefaultCommandTimeoutSeconds  = 60
	DefaultCredentialSweepSeconds = 60
)

// reservedEnv are set by the launcher per proc and may not come from configuration.
var reservedEnv = []string{launcher.EnvContainerNumber, launcher.EnvAgentAttempt}

var clientGroupPattern = regexp.MustCompile(`^[A-Za-z0-9_.,-]+$`)

// ParseConfig decodes and validates a configuration: unknown fields are errors, defaults are
// filled in, the tools are looked up. Every problem is reported, each wrapping
// launcher.ErrInvalidConfig.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: decode: %v", launcher.ErrInvalidConfig, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%w: decode: trailing data after the JSON object", launcher.ErrInvalidConfig)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	if c.KillGraceSeconds == 0 {
		c.KillGraceSeconds = DefaultKillGraceSeconds
	}
	if c.RuntimeMarginSeconds == 0 {
		c.RuntimeMarginSeconds = DefaultRuntimeMarginSeconds
	}
	if c.CommandTimeoutSeconds == 0 {
		c.CommandTimeoutSeconds = DefaultCommandTimeoutSeconds
	}
	if c.CredentialSweepSeconds == 0 {
		c.CredentialSweepSeconds = DefaultCredentialSweepSeconds
	}
	for _, t := range []struct {
		p   *string
		def string
	}{{&c.CondorSubmit, "condor_submit"}, {&c.CondorQ, "condor_q"}, {&c.CondorHistory, "condor_history"}, {&c.CondorRm, "condor_rm"}} {
		if *t.p == "" {
			*t.p = t.def
		}
	}
}

// Validate returns every problem of c joined, each wrapping launcher.ErrInvalidConfig, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{launcher.ErrInvalidConfig}, args...)...))
	}
	switch {
	case c.AgentPath == "" && c.AgentURL == "":
		bad("one of agent_path and agent_url is required")
	case c.AgentPath != "" && c.AgentURL != "":
		bad("agent_path and agent_url are exclusive")
	case c.AgentPath != "":
		switch fi, err := os.Stat(c.AgentPath); {
		case !filepath.IsAbs(c.AgentPath):
			bad("agent_path %q is not absolute", c.AgentPath)
		case err != nil:
			bad("agent_path: %v", err)
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			bad("agent_path %q is not an executable regular file", c.AgentPath)
		case strings.ContainsAny(c.AgentPath, " ,\"'$\n"):
			bad("agent_path %q has characters a submit description cannot carry", c.AgentPath)
		}
	default:
		u, err := url.Parse(c.AgentURL)
		switch {
		case err != nil:
			bad("agent_url: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("agent_url %q is not http(s)", c.AgentURL)
		case u.RawQuery != "" || u.Fragment != "" || path.Base(u.Path) == "/" || path.Base(u.Path) == ".":
			bad("agent_url %q must end in a file name, without query or fragment", c.AgentURL)
		case strings.ContainsAny(c.AgentURL, " ,\"'$\n"):
			bad("agent_url %q has characters a submit description cannot carry", c.AgentURL)
		}
	}
	switch {
	case c.InitialDir == "":
		bad("initial_dir is required")
	case !filepath.IsAbs(c.InitialDir):
		bad("initial_dir %q is not absolute", c.InitialDir)
	case strings.ContainsAny(c.InitialDir, "\"'$\n"):
		bad("initial_dir %q has characters a submit description cannot carry", c.InitialDir)
	}
	if c.ClientGroup != "" && !clientGroupPattern.MatchString(c.ClientGroup) {
		bad("client_group %q has characters outside [A-Za-z0-9_.,-]", c.ClientGroup)
	}
	for k, v := range c.Env {
		if err := checkEnvEntry(k, v); err != nil {
			bad("env: %v", err)
		}
		for _, r := range reservedEnv {
			if k == r {
				bad("env: %s is set by the launcher", k)
			}
		}
	}
	for k, v := range c.CondorEnv {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			bad("condor_env: bad entry %q", k)
		}
	}
	for name, secs := range map[string]float64{
		"kill_grace_seconds": c.KillGraceSeconds, "runtime_margin_seconds": c.RuntimeMarginSeconds,
		"command_timeout_seconds": c.CommandTimeoutSeconds, "credential_sweep_seconds": c.CredentialSweepSeconds,
	} {
		if math.IsNaN(secs) || secs < 0 || secs > 7*24*3600 {
			bad("%s %v not in 0..604800", name, secs)
		}
	}
	for name, tool := range map[string]string{
		"condor_submit": c.CondorSubmit, "condor_q": c.CondorQ, "condor_history": c.CondorHistory, "condor_rm": c.CondorRm,
	} {
		if _, err := exec.LookPath(tool); err != nil {
			bad("%s: %v", name, err)
		}
	}
	return errors.Join(errs...)
}

func (c Config) sweepInterval() time.Duration {
	return max(time.Duration(c.CredentialSweepSeconds*float64(time.Second)), 10*time.Millisecond)
}

func (c Config) commandTimeout() time.Duration {
	return time.Duration(c.CommandTimeoutSeconds * float64(time.Second))
}

// agentName is the file name of the agent in the proc's scratch directory.
func (c Config) agentName() string {
	if c.AgentURL != "" {
		u, _ := url.Parse(c.AgentURL)
		return path.Base(u.Path)
	}
	return filepath.Base(c.AgentPath)
}
