// Package devmode runs a complete CTS on one machine: the embedded stack (devstack: S3,
// MongoDB wire, Kafka, registry, auth2), the coordinator, and the local launcher plugin that
// starts real agents (which run real containers with runc). cts-dev (`make dev`), `make demo` and the
// end-to-end tests use it. Like devstack, it is never a production path.
package devmode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/test/ports"
)

// Users and roles of the dev site.
const (
	UserName     = "cts_user"  // a KBase staff member: may submit to the local site
	AdminName    = "cts_admin" // a CTS admin (and staff)
	ExecutorName = "cts_executor"
	// SiteName is the dev site's cluster name.
	SiteName = "local"
	// DataBucket holds users' inputs and outputs; LogBucket the container logs.
	DataBucket = "cts-data"
	LogBucket  = "cts-logs"
)

// Options configures a dev environment.
type Options struct {
	// Dir holds all state (made absolute). Starting again on a Dir that held a dev site
	// restarts that site: its jobs, images, reference data, S3 objects, Kafka messages and
	// tokens are kept (see Start). Only one process may run a site from a Dir at a time.
	Dir string
	// Listen is the coordinator's address. "" or a port of 0 takes the address of the
	// site's previous run when it is free, else a free loopback port outside the kernel's
	// ephemeral range (which no outgoing connection takes while the site is stopped). The
	// address is held from the moment it is chosen, so nothing can take it while the stack
	// starts or while the coordinator restarts.
	Listen string
	// AgentPath and LauncherPath are the cts-agent and cts-launcher-local binaries.
	AgentPath    string
	LauncherPath string
	Log          *slog.Logger
	// Configure, when set, may adjust the coordinator configuration before it starts.
	Configure func(*app.Config)
	// RegistryOptions configure the embedded registry (tests use devstack.WithBlobTamper).
	RegistryOptions []devstack.RegistryOption
	// Samples, when set, are pushed, registered and uploaded when the site is first created
	// (and on a later start if that did not finish), so the documentation's examples run on
	// a new site as they are written.
	Samples *Samples
	// ClientDir, when set, is prepended to PATH in the env file: the folder holding cts.
	ClientDir string
	// AgentRuntime is the agents' container runtime (CTS_AGENT_RUNTIME: "oci", "runc",
	// "crun", "docker" or "auto"); "" takes CTS_AGENT_RUNTIME from this process's environment,
	// else "oci", so a Docker engine that happens to run never changes what dev agents do.
	// "oci" runs crun when the node has a crun that can make cgroups, else runc (the agent
	// decides and logs it; docs/agent.md, "Container runtimes").
	AgentRuntime string
}

// agentRuntimes are the values of the agent's CTS_AGENT_RUNTIME (agent/internal/config's
// Runtimes, internal to the agent).
var agentRuntimes = []string{"oci", "runc", "crun", "docker", "auto"}

// AgentRuntime returns the runtime dev agents use for o.AgentRuntime (see Options).
func AgentRuntime(o Options) (string, error) {
	rt := o.AgentRuntime
	if rt == "" {
		rt = strings.TrimSpace(os.Getenv("CTS_AGENT_RUNTIME"))
	}
	if rt == "" {
		rt = "oci"
	}
	if !slices.Contains(agentRuntimes, rt) {
		return "", fmt.Errorf("CTS_AGENT_RUNTIME must be one of %s, got %q", strings.Join(agentRuntimes, ", "), rt)
	}
	return rt, nil
}

// Env is a running dev environment.
type Env struct {
	Stack *devstack.Stack
	App   *app.App
	// URL is the coordinator's root URL.
	URL string
	// UserToken, AdminToken and ExecutorToken are auth2 tokens of the dev users. They are made
	// when the site is created and kept across restarts.
	UserToken, AdminToken, ExecutorToken string
	Dir                                  string
	Config                               app.Config
	// Restarted says the site existed before this start (its state was kept).
	Restarted bool
	// AgentRuntime is the container runtime of the dev agents (a value of CTS_AGENT_RUNTIME).
	AgentRuntime string

	clientDir string
	// port holds the coordinator's address from the moment it is chosen until Close, also
	// while the coordinator restarts (RestartCoordinator); ln is its listener until the
	// coordinator takes it over.
	port    *ports.Reservation
	ln      net.Listener
	unlock  func()
	cancel  context.CancelFunc
	stopped chan struct{}
	runErr  error
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// siteState is what a site keeps in <Dir>/site.json across restarts (mode 0600: tokens).
type siteState struct {
	UserToken     string `json:"user_token"`
	AdminToken    string `json:"admin_token"`
	ExecutorToken string `json:"executor_token"`
	// Listen is the coordinator's address of the last run.
	Listen string `json:"listen,omitempty"`
	// Seeded says the samples were all registered and uploaded.
	Seeded bool `json:"seeded,omitempty"`
}

const siteFile = "site.json"

func readState(dir string) (siteState, bool, error) {
	var st siteState
	b, err := os.ReadFile(filepath.Join(dir, siteFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil || st.UserToken == "" || st.AdminToken == "" || st.ExecutorToken == "" {
		return st, false, fmt.Errorf("%s is damaged: remove %s to start afresh (make clean)", filepath.Join(dir, siteFile), dir)
	}
	return st, true, nil
}

func writeState(dir string, st siteState) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := filepath.Join(dir, siteFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, siteFile))
}

// Start brings the environment up; the coordinator runs until Close. On a Dir that held a
// site it restarts that site with its state and tokens. When it fails, everything it started
// is stopped again.
func Start(ctx context.Context, o Options) (*Env, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("dev site folder %q: %w", o.Dir, err)
	}
	for _, p := range []string{o.AgentPath, o.LauncherPath} {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return nil, fmt.Errorf("binary %q not found: build it first (make build)", p)
		}
	}
	runtimeName, err := AgentRuntime(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dev site folder: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, unlock: unlock, clientDir: o.ClientDir, AgentRuntime: runtimeName}
	if err := e.start(ctx, o); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

// start does Start's work on e; Start closes e when it fails.
func (e *Env) start(ctx context.Context, o Options) error {
	dir := e.Dir
	state, existed, err := readState(dir)
	if err != nil {
		return err
	}
	e.Restarted = existed
	if !existed {
		state = siteState{UserToken: token(), AdminToken: token(), ExecutorToken: token()}
	}
	e.UserToken, e.AdminToken, e.ExecutorToken = state.UserToken, state.AdminToken, state.ExecutorToken
	// The service URL must be known before the coordinator starts: take the address now and
	// hold it (the stack takes seconds to start, and any program could take a port that is
	// merely known to be free).
	if e.port, err = reserveListen(o.Listen, state.Listen); err != nil {
		return err
	}
	if e.ln, err = e.port.Listen(); err != nil {
		return fmt.Errorf("the coordinator cannot listen on %s: %w", e.port.Addr(), err)
	}
	listen := e.port.Addr()
	// Saved before the stack starts, so a failed first start keeps the same tokens.
	state.Listen = listen
	if err := writeState(dir, state); err != nil {
		return fmt.Errorf("save the site's state: %w", err)
	}
	e.Stack, err = devstack.Start(ctx, devstack.Options{
		Dir:             filepath.Join(dir, "stack"),
		Buckets:         []string{DataBucket, LogBucket},
		RegistryOptions: o.RegistryOptions,
		Users: []auth2.User{
			{Name: UserName, Token: e.UserToken, CustomRoles: []string{"KBASE_STAFF"}},
			{Name: AdminName, Token: e.AdminToken, CustomRoles: []string{"KBASE_STAFF", "CDM_TASK_SERVICE_ADMIN"}},
			{Name: ExecutorName, Token: e.ExecutorToken, CustomRoles: []string{"CTS_EXTERNAL_EXECUTOR"}},
		},
	})
	if err != nil {
		return fmt.Errorf("start embedded stack: %w", err)
	}
	// Worker-side secret files, as an HTCondor worker would hold them.
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return err
	}
	// The site's shared reference data folder, where refdata agents publish.
	if err := os.MkdirAll(filepath.Join(dir, "refdata"), 0o755); err != nil {
		return err
	}
	tokenPath, secretPath := filepath.Join(secrets, "cts_token"), filepath.Join(secrets, "s3_secret")
	if err := os.WriteFile(tokenPath, []byte(e.ExecutorToken+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(secretPath, []byte(e.Stack.S3.SecretKey+"\n"), 0o600); err != nil {
		return err
	}
	cfg := app.DefaultConfig()
	cfg.Listen = listen
	cfg.ServiceURL = "http://" + listen
	cfg.Auth.URL = e.Stack.Auth.URL()
	cfg.Mongo.URI = e.Stack.Mongo.URI()
	cfg.Kafka.Brokers = e.Stack.Kafka.Brokers()
	cfg.S3.Endpoint = e.Stack.S3.Endpoint
	cfg.S3.AccessKey = e.Stack.S3.AccessKey
	cfg.S3.SecretKey = e.Stack.S3.SecretKey
	cfg.S3.Region = e.Stack.S3.Region
	cfg.Jobs.LogDir = LogBucket + "/container_logs"
	cfg.Jobs.SubmitInterval = time.Second
	// A dev site is for looking inside: its profiles are there for the admin token.
	cfg.Observability.Pprof = true
	cfg.Sites = []app.Site{{
		Name:            SiteName,
		Plugin:          o.LauncherPath,
		CPUsPerNode:     runtime.NumCPU(),
		MemoryPerNodeGB: 8,
		MaxRuntimeMin:   60,
		RequireStaff:    true,
		Notes:           []string{"This machine, through the local launcher (dev mode)."},
		WorkerEnv: map[string]string{"TOKEN_PATH": tokenPath, "S3_SECRET_PATH": secretPath,
			// The "shared" reference data folder of this one-machine site.
			"REFDATA_HOST_PATH": filepath.Join(dir, "refdata")},
		PluginConfig: map[string]any{
			"agent_path": o.AgentPath,
			"work_dir":   filepath.Join(dir, "agents"),
			"env": map[string]string{
				"CTS_AGENT_CACHE_DIR": filepath.Join(dir, "image-cache"),
				"CTS_AGENT_RUNC_ROOT": filepath.Join(dir, "runc"),
				"CTS_AGENT_NODE_DIR":  filepath.Join(dir, "node"),
				"CTS_AGENT_RUNTIME":   e.AgentRuntime,
			},
			"kill_grace_seconds": 10,
		},
	}}
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	e.Config = cfg
	e.URL = cfg.ServiceURL
	ln := e.ln
	e.ln = nil // the coordinator owns it now, even when New fails
	e.App, err = app.New(ctx, cfg, o.Log, app.WithListener(ln))
	if err != nil {
		return fmt.Errorf("start coordinator: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.stopped = make(chan struct{})
	go func() { e.runErr = e.App.Run(rctx); close(e.stopped) }()
	if o.Samples != nil && !state.Seeded {
		if err := o.Samples.seed(ctx, e); err != nil {
			return fmt.Errorf("add the sample images and data: %w", err)
		}
		state.Seeded = true
		if err := writeState(dir, state); err != nil {
			return fmt.Errorf("save the site's state: %w", err)
		}
	}
	return nil
}

// reserveListen takes the coordinator's address: listen when it names a port; else the
// address of the site's previous run (prev) when it is free, so agents and shells set up for
// that run find the coordinator again; else a free port outside the kernel's ephemeral range,
// which nothing on the machine takes by chance while the site is stopped.
func reserveListen(listen, prev string) (*ports.Reservation, error) {
	host := "127.0.0.1"
	if listen != "" {
		h, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("the coordinator's address %q is not host:port: %w", listen, err)
		}
		if h != "" {
			host = h
		}
		if port != "0" {
			r, err := ports.ReserveAt(listen)
			switch {
			case errors.Is(err, syscall.EADDRINUSE):
				return nil, fmt.Errorf("the coordinator's address %s is in use by another program: stop it, or pick another address with CTS_DEV_LISTEN=127.0.0.1:PORT (or --listen)", listen)
			case err != nil:
				return nil, fmt.Errorf("the coordinator cannot listen on %s: %w", listen, err)
			}
			return r, nil
		}
	}
	if prev != "" {
		if h, _, err := net.SplitHostPort(prev); err == nil && (listen == "" || h == host) {
			if r, err := ports.ReserveAt(prev); err == nil {
				return r, nil
			}
		}
	}
	r, err := ports.ReserveStable(host)
	if err != nil {
		return nil, fmt.Errorf("the coordinator's address: %w", err)
	}
	return r, nil
}

// EnvLines are shell lines that point clients at this environment (`<dir>/env`).
func (e *Env) EnvLines() string {
	s := e.Stack
	lines := []string{
		"CTS_URL=" + e.URL,
		"CTS_TOKEN=" + e.UserToken,
		"CTS_ADMIN_TOKEN=" + e.AdminToken,
		"AWS_ENDPOINT_URL=" + s.S3.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.S3.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.S3.SecretKey,
		"AWS_REGION=" + s.S3.Region,
		"CTS_REGISTRY=" + s.Registry.Host(),
		"KAFKA_BOOTSTRAP_SERVERS=" + strings.Join(s.Kafka.Brokers(), ","),
		"MONGODB_URI=" + s.Mongo.URI(),
		"CTS_CLUSTER=" + SiteName,
		"CTS_DATA_BUCKET=" + DataBucket,
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("export " + l + "\n")
	}
	if e.clientDir != "" {
		b.WriteString("export PATH=" + shellQuote(e.clientDir) + ":\"$PATH\"\n")
	}
	return b.String()
}

// WriteEnvFile writes EnvLines to path (mode 0600: it holds tokens).
func (e *Env) WriteEnvFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(e.EnvLines()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Stopped is closed when the coordinator has stopped; Err then gives its result.
func (e *Env) Stopped() <-chan struct{} { return e.stopped }

// Err is the coordinator's result once Stopped is closed.
func (e *Env) Err() error { return e.runErr }

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Close stops the coordinator, then the stack, and releases the site's folder. It is
// idempotent.
func (e *Env) Close() error {
	var errs []error
	if e.cancel != nil {
		e.cancel()
		<-e.stopped
		if e.runErr != nil {
			errs = append(errs, e.runErr)
		}
		e.cancel = nil
	}
	if e.ln != nil {
		_ = e.ln.Close()
		e.ln = nil
	}
	if e.port != nil {
		_ = e.port.Close()
		e.port = nil
	}
	if e.Stack != nil {
		errs = append(errs, e.Stack.Close())
		e.Stack = nil
	}
	if e.unlock != nil {
		e.unlock()
		e.unlock = nil
	}
	return errors.Join(errs...)
}
