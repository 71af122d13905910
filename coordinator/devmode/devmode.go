// Package devmode runs a complete CTS on one machine: the embedded stack (devstack: S3,
// MongoDB wire, Kafka, registry, auth2), the coordinator, and the local launcher plugin that
// starts real agents (which run real containers with runc). `cts dev`, `make demo` and the
// end-to-end tests use it. Like devstack, it is never a production path.
package devmode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/devstack/auth2"
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
	// Dir holds all state (made absolute).
	Dir string
	// Listen is the coordinator's address; "" or a port of 0 picks a free loopback port.
	Listen string
	// AgentPath and LauncherPath are the cts-agent and cts-launcher-local binaries.
	AgentPath    string
	LauncherPath string
	Log          *slog.Logger
	// Configure, when set, may adjust the coordinator configuration before it starts.
	Configure func(*app.Config)
	// RegistryOptions configure the embedded registry (tests use devstack.WithBlobTamper).
	RegistryOptions []devstack.RegistryOption
	// AgentRuntime is the agents' container runtime (CTS_AGENT_RUNTIME: "oci", "docker" or
	// "auto"); "" takes CTS_AGENT_RUNTIME from this process's environment, else "oci", so a
	// Docker engine that happens to run never changes what dev agents do.
	AgentRuntime string
}

// AgentRuntime returns the runtime dev agents use for o.AgentRuntime (see Options).
func AgentRuntime(o Options) (string, error) {
	rt := o.AgentRuntime
	if rt == "" {
		rt = strings.TrimSpace(os.Getenv("CTS_AGENT_RUNTIME"))
	}
	if rt == "" {
		rt = "oci"
	}
	if rt != "oci" && rt != "docker" && rt != "auto" {
		return "", fmt.Errorf("CTS_AGENT_RUNTIME must be oci, docker or auto, got %q", rt)
	}
	return rt, nil
}

// Env is a running dev environment.
type Env struct {
	Stack *devstack.Stack
	App   *app.App
	// URL is the coordinator's root URL.
	URL string
	// UserToken, AdminToken and ExecutorToken are auth2 tokens of the dev users.
	UserToken, AdminToken, ExecutorToken string
	Dir                                  string
	Config                               app.Config
	// AgentRuntime is the container runtime of the dev agents ("oci", "docker" or "auto").
	AgentRuntime string

	cancel  context.CancelFunc
	stopped chan struct{}
	runErr  error
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// Start brings the environment up; the coordinator runs until Close.
func Start(ctx context.Context, o Options) (e *Env, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
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
	e = &Env{Dir: dir, UserToken: token(), AdminToken: token(), ExecutorToken: token(), AgentRuntime: runtimeName}
	defer func() {
		if err != nil {
			_ = e.Close()
		}
	}()
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
		return nil, fmt.Errorf("start embedded stack: %w", err)
	}
	// Worker-side secret files, as an HTCondor worker would hold them.
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, err
	}
	// The site's shared reference data folder, where refdata agents publish.
	if err := os.MkdirAll(filepath.Join(dir, "refdata"), 0o755); err != nil {
		return nil, err
	}
	tokenPath, secretPath := filepath.Join(secrets, "cts_token"), filepath.Join(secrets, "s3_secret")
	if err := os.WriteFile(tokenPath, []byte(e.ExecutorToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(secretPath, []byte(e.Stack.S3.SecretKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	listen := o.Listen
	if listen == "" || strings.HasSuffix(listen, ":0") {
		// The service URL must be known before the coordinator starts: pick the port now.
		if listen, err = freeAddr(); err != nil {
			return nil, err
		}
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
				"CTS_AGENT_RUNTIME":   runtimeName,
			},
			"kill_grace_seconds": 10,
		},
	}}
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	e.Config = cfg
	e.URL = cfg.ServiceURL
	e.App, err = app.New(ctx, cfg, o.Log)
	if err != nil {
		return nil, fmt.Errorf("start coordinator: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.stopped = make(chan struct{})
	go func() { e.runErr = e.App.Run(rctx); close(e.stopped) }()
	return e, nil
}

// freeAddr returns a free loopback address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
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
		"CTS_SITE=" + SiteName,
		"CTS_DATA_BUCKET=" + DataBucket,
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("export " + l + "\n")
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

// Close stops the coordinator, then the stack.
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
	if e.Stack != nil {
		errs = append(errs, e.Stack.Close())
		e.Stack = nil
	}
	return errors.Join(errs...)
}
