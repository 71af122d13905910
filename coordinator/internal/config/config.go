// Package config loads the coordinator's configuration: defaults, then a YAML file, then
// environment variables (each key's variable is in its `env` tag), then Validate. Secrets come
// from files or the environment and are never printed: Redacted is what gets logged.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/shared/s3path"
)

// Config is the whole coordinator configuration.
type Config struct {
	// Listen is the address the HTTP server binds.
	Listen string `yaml:"listen" env:"CTS_LISTEN"`
	// ServiceURL is the external root URL of the service (agents connect to it).
	ServiceURL string `yaml:"service_url" env:"CTS_SERVICE_URL"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"CTS_LOG_LEVEL"`
	// AgentBinary is the path of the static cts-agent the coordinator serves at
	// GET /external_exec/files/cts-agent (for launchers that download it); empty: not served.
	AgentBinary   string        `yaml:"agent_binary" env:"CTS_AGENT_BINARY"`
	Auth          Auth          `yaml:"auth"`
	Mongo         Mongo         `yaml:"mongo"`
	Kafka         Kafka         `yaml:"kafka"`
	S3            S3            `yaml:"s3"`
	Jobs          Jobs          `yaml:"jobs"`
	Access        Access        `yaml:"access"`
	Reconcile     Reconcile     `yaml:"reconcile"`
	Launchers     Launchers     `yaml:"launchers"`
	Agents        Agents        `yaml:"agents"`
	Replicas      Replicas      `yaml:"replicas"`
	Observability Observability `yaml:"observability"`
	Sites         []Site        `yaml:"sites"`
}

// Agents tunes the agent sessions of one replica.
type Agents struct {
	// StoreWork bounds how many agent hellos and events one replica applies at once across all
	// its sessions; the others wait in order, each without a store deadline running.
	StoreWork int `yaml:"store_work" env:"CTS_AGENTS_STORE_WORK"`
	// HeartbeatInterval is how often a replica records which agents are connected to it
	// (MongoDB's presence collection, one point write per 2,000 agents).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" env:"CTS_AGENTS_HEARTBEAT_INTERVAL"`
}

// Replicas configures how several coordinator replicas (processes sharing one MongoDB and
// Kafka, behind one load balancer) share the work. A single coordinator is a replica too.
type Replicas struct {
	// Name names this replica among those sharing one MongoDB; it must stay the same when the
	// process is restarted and must differ between any two replicas alive at once. Empty (the
	// default) derives it from the host name and the listen port, "<host>:<port>", which is
	// both on a host whose name is its own. A restarted replica takes over at once the leases
	// its name held before; a name two live replicas share makes their periodic work run
	// twice at once for a moment each time one starts (see docs/operators.md).
	Name string `yaml:"name" env:"CTS_REPLICAS_NAME"`
	// LeaseTTL is how long a replica holds the lease of a periodic loop (the submitter, the
	// reconciler, the cleaner, the Kafka sender, the reference data stager) without renewing
	// it: after a replica dies, its loops stop for at most this long. The replicas' clocks
	// must agree within a third of it.
	LeaseTTL time.Duration `yaml:"lease_ttl" env:"CTS_REPLICAS_LEASE_TTL"`
	// PollInterval is how often a replica reads the stop signals (a cancel accepted by another
	// replica reaches this replica's agents within about this long) and the other replicas'
	// pokes.
	PollInterval time.Duration `yaml:"poll_interval" env:"CTS_REPLICAS_POLL_INTERVAL"`
}

// Launchers configures the supervision of the sites' launcher plugins: a plugin process that
// exits is restarted after RestartBackoff, doubled after every failed restart up to
// RestartBackoffMax.
type Launchers struct {
	RestartBackoff    time.Duration `yaml:"restart_backoff" env:"CTS_LAUNCHERS_RESTART_BACKOFF"`
	RestartBackoffMax time.Duration `yaml:"restart_backoff_max" env:"CTS_LAUNCHERS_RESTART_BACKOFF_MAX"`
	// CheckInterval is how often the plugin processes are checked.
	CheckInterval time.Duration `yaml:"check_interval" env:"CTS_LAUNCHERS_CHECK_INTERVAL"`
}

// Observability configures the metrics and the readiness probe.
type Observability struct {
	// CountInterval is how often the jobs by state and the Kafka backlog are counted in
	// MongoDB for GET /metrics.
	CountInterval time.Duration `yaml:"count_interval" env:"CTS_OBSERVABILITY_COUNT_INTERVAL"`
	// ReadyTimeout bounds each dependency check of GET /readyz.
	ReadyTimeout time.Duration `yaml:"ready_timeout" env:"CTS_OBSERVABILITY_READY_TIMEOUT"`
	// Pprof serves the Go runtime's profiles at /debug/pprof/ to CTS admins (off by default).
	Pprof bool `yaml:"pprof" env:"CTS_OBSERVABILITY_PPROF"`
}

// Reconcile configures the reconciler that settles jobs whose containers went wrong outside
// the agents' reach. Zero durations take the reconciler's own defaults, which Default repeats
// (docs/operators.md shows them).
type Reconcile struct {
	Interval          time.Duration `yaml:"interval" env:"CTS_RECONCILE_INTERVAL"`
	HeartbeatDeadline time.Duration `yaml:"heartbeat_deadline" env:"CTS_RECONCILE_HEARTBEAT_DEADLINE"`
	ConnectDeadline   time.Duration `yaml:"connect_deadline" env:"CTS_RECONCILE_CONNECT_DEADLINE"`
	SubmitDeadline    time.Duration `yaml:"submit_deadline" env:"CTS_RECONCILE_SUBMIT_DEADLINE"`
	CancelDeadline    time.Duration `yaml:"cancel_deadline" env:"CTS_RECONCILE_CANCEL_DEADLINE"`
	IdleDeadline      time.Duration `yaml:"idle_deadline" env:"CTS_RECONCILE_IDLE_DEADLINE"`
	RuntimeGrace      time.Duration `yaml:"runtime_grace" env:"CTS_RECONCILE_RUNTIME_GRACE"`
	// MaxLaunchRetries is how many times a job is launched again when its containers failed
	// for infrastructure reasons before any of them ran (and a reference data staging is
	// restaged).
	MaxLaunchRetries int `yaml:"max_launch_retries" env:"CTS_RECONCILE_MAX_LAUNCH_RETRIES"`
	// StagingDeadline is how long a reference data staging task may run.
	StagingDeadline time.Duration `yaml:"staging_deadline" env:"CTS_RECONCILE_STAGING_DEADLINE"`
}

// Auth configures KBase auth2.
type Auth struct {
	URL          string   `yaml:"url" env:"CTS_AUTH_URL"`
	AdminRoles   []string `yaml:"admin_roles" env:"CTS_AUTH_ADMIN_ROLES"`
	StaffRole    string   `yaml:"staff_role" env:"CTS_AUTH_STAFF_ROLE"`
	ExecutorRole string   `yaml:"executor_role" env:"CTS_AUTH_EXECUTOR_ROLE"`
	RefdataRole  string   `yaml:"refdata_role" env:"CTS_AUTH_REFDATA_ROLE"`
	// Timeout bounds each request to auth2.
	Timeout time.Duration `yaml:"timeout" env:"CTS_AUTH_TIMEOUT"`
}

// Mongo configures the job store.
type Mongo struct {
	URI      string `yaml:"uri" env:"CTS_MONGO_URI" secret:"true"`
	Database string `yaml:"database" env:"CTS_MONGO_DATABASE"`
	// Timeout bounds each MongoDB operation (server selection and connecting included).
	Timeout time.Duration `yaml:"timeout" env:"CTS_MONGO_TIMEOUT"`
}

// Kafka configures job notifications.
type Kafka struct {
	Brokers []string `yaml:"brokers" env:"CTS_KAFKA_BROKERS"`
	Topic   string   `yaml:"topic" env:"CTS_KAFKA_TOPIC"`
	// Timeout bounds an admin's re-send of a notification (the sender loop has its own).
	Timeout time.Duration `yaml:"timeout" env:"CTS_KAFKA_TIMEOUT"`
}

// S3 locates the object store shared by the coordinator and the agents.
type S3 struct {
	Endpoint      string `yaml:"endpoint" env:"CTS_S3_ENDPOINT"`
	AccessKey     string `yaml:"access_key" env:"CTS_S3_ACCESS_KEY"`
	SecretKey     string `yaml:"-" env:"CTS_S3_SECRET_KEY" secret:"true"`
	SecretKeyFile string `yaml:"secret_key_file" env:"CTS_S3_SECRET_KEY_FILE"`
	Region        string `yaml:"region" env:"CTS_S3_REGION"`
	Insecure      bool   `yaml:"insecure" env:"CTS_S3_INSECURE"`
	// WorkerEndpoint is the S3 URL agents use, when it differs from Endpoint.
	WorkerEndpoint string `yaml:"worker_endpoint" env:"CTS_S3_WORKER_ENDPOINT"`
	// Timeout bounds each S3 call of the coordinator (a log stream: until its first byte and
	// between reads).
	Timeout time.Duration `yaml:"timeout" env:"CTS_S3_TIMEOUT"`
}

// Jobs configures job rules.
type Jobs struct {
	// LogDir is "bucket/prefix" for container logs; jobs may not write below it.
	LogDir       string   `yaml:"log_dir" env:"CTS_JOBS_LOG_DIR"`
	AllowedPaths []string `yaml:"allowed_paths" env:"CTS_JOBS_ALLOWED_PATHS"`
	MaxCPUHours  float64  `yaml:"max_cpu_hours" env:"CTS_JOBS_MAX_CPU_HOURS"`
	// SubmitInterval is how often the submitter scans for jobs to hand to launchers.
	SubmitInterval time.Duration `yaml:"submit_interval" env:"CTS_JOBS_SUBMIT_INTERVAL"`
	// CleanInterval is the time between passes of the job cleaner, plus a random CleanJitter;
	// CleanAge how long after its end a job is cleaned.
	CleanInterval time.Duration `yaml:"clean_interval" env:"CTS_JOBS_CLEAN_INTERVAL"`
	CleanJitter   time.Duration `yaml:"clean_jitter" env:"CTS_JOBS_CLEAN_JITTER"`
	CleanAge      time.Duration `yaml:"clean_age" env:"CTS_JOBS_CLEAN_AGE"`
}

// Access configures the S3 folders each user's jobs may read and write, beside
// jobs.allowed_paths (every user's) and jobs.log_dir (nobody's). A "{user}" segment stands for
// the user's name: write_paths ["cts-data/{user}/"] gives alice cts-data/alice/. With none of
// the three lists set, jobs may use any path the service's own S3 credentials can (docs/admins.md).
type Access struct {
	// ReadPaths are folders users may read (inputs, reference data) but not write.
	ReadPaths []string `yaml:"read_paths" env:"CTS_ACCESS_READ_PATHS"`
	// WritePaths are folders users may read and write (output folders).
	WritePaths []string `yaml:"write_paths" env:"CTS_ACCESS_WRITE_PATHS"`
}

// AccessConfig returns the access rules' configuration: the log folder, the allowed paths and
// the per-user folders.
func (c Config) AccessConfig() access.Config {
	return access.Config{LogDir: c.Jobs.LogDir, Allowed: c.Jobs.AllowedPaths, Read: c.Access.ReadPaths, Write: c.Access.WritePaths}
}

// Site is one compute site with its launcher plugin.
type Site struct {
	Name string `yaml:"name"`
	// Plugin is the path of the launcher plugin binary.
	Plugin string `yaml:"plugin"`
	// PluginConfig is handed to the plugin as JSON (only this, never the whole configuration).
	PluginConfig    map[string]any    `yaml:"plugin_config"`
	CPUsPerNode     int               `yaml:"cpus_per_node"`
	MemoryPerNodeGB float64           `yaml:"memory_per_node_gb"`
	MaxRuntimeMin   float64           `yaml:"max_runtime_min"`
	Nodes           *int              `yaml:"nodes"`
	RequireStaff    bool              `yaml:"require_staff"`
	Notes           []string          `yaml:"notes"`
	WorkerEnv       map[string]string `yaml:"worker_env"`
}

// Default returns the defaults.
func Default() Config {
	return Config{
		Listen:     "127.0.0.1:5000",
		ServiceURL: "http://127.0.0.1:5000",
		LogLevel:   "info",
		Auth: Auth{
			StaffRole: "KBASE_STAFF", ExecutorRole: "CTS_EXTERNAL_EXECUTOR", RefdataRole: "CTS_REFDATA_SERVICE",
			AdminRoles: []string{"CDM_TASK_SERVICE_ADMIN"}, Timeout: 5 * time.Second,
		},
		Mongo: Mongo{Database: "cdmtaskservice", Timeout: 5 * time.Second},
		Kafka: Kafka{Topic: "cts-jobs", Timeout: 5 * time.Second},
		S3:    S3{Region: "us-east-1", Timeout: 5 * time.Second},
		Jobs: Jobs{LogDir: "cts-logs/container_logs", MaxCPUHours: 100, SubmitInterval: 5 * time.Second,
			CleanInterval: 24 * time.Hour, CleanJitter: time.Hour, CleanAge: 30 * 24 * time.Hour},
		Reconcile: Reconcile{Interval: 30 * time.Second, HeartbeatDeadline: 2 * time.Minute, ConnectDeadline: 10 * time.Minute,
			SubmitDeadline: time.Hour, CancelDeadline: 30 * time.Minute, IdleDeadline: 7 * 24 * time.Hour,
			RuntimeGrace: 30 * time.Minute, MaxLaunchRetries: 2, StagingDeadline: 24 * time.Hour},
		Launchers:     Launchers{RestartBackoff: time.Second, RestartBackoffMax: time.Minute, CheckInterval: time.Second},
		Agents:        Agents{StoreWork: 16, HeartbeatInterval: 10 * time.Second},
		Replicas:      Replicas{LeaseTTL: 15 * time.Second, PollInterval: 500 * time.Millisecond},
		Observability: Observability{CountInterval: 15 * time.Second, ReadyTimeout: 2 * time.Second},
	}
}

// Load reads the file at path (if path is not empty) over the defaults, then the environment
// (lookup is os.LookupEnv in production), then reads secret files, then validates.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), lookup); err != nil {
		return cfg, err
	}
	// An allowed path is a directory: "bucket/out" must not admit "bucket/outside/" (the CTS
	// appends the "/" too).
	for i, p := range cfg.Jobs.AllowedPaths {
		if !strings.HasSuffix(p, "/") {
			cfg.Jobs.AllowedPaths[i] = p + "/"
		}
	}
	if cfg.S3.SecretKey == "" && cfg.S3.SecretKeyFile != "" {
		b, err := os.ReadFile(cfg.S3.SecretKeyFile)
		if err != nil {
			return cfg, fmt.Errorf("read S3 secret key file: %w", err)
		}
		cfg.S3.SecretKey = strings.TrimSpace(string(b))
	}
	return cfg, cfg.Validate()
}

var topicRE = regexp.MustCompile(`^[a-zA-Z0-9-]{1,249}$`)

// Validate returns every problem found, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Listen == "" {
		bad("listen is required")
	}
	if u, err := url.Parse(c.ServiceURL); err != nil || u.Scheme == "" || u.Host == "" {
		bad("service_url must be an absolute URL, got %q", c.ServiceURL)
	}
	if c.Auth.URL == "" {
		bad("auth.url is required")
	}
	if c.Mongo.URI == "" {
		bad("mongo.uri is required")
	}
	if c.Mongo.Database == "" {
		bad("mongo.database is required")
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers is required")
	}
	if !topicRE.MatchString(c.Kafka.Topic) {
		bad("kafka.topic must match ^[a-zA-Z0-9-]+$ and be at most 249 characters, got %q", c.Kafka.Topic)
	}
	if c.S3.Endpoint == "" || c.S3.AccessKey == "" || c.S3.SecretKey == "" {
		bad("s3.endpoint, s3.access_key and a secret key (CTS_S3_SECRET_KEY or s3.secret_key_file) are required")
	}
	if d, err := s3path.ParseDir(c.Jobs.LogDir); err != nil || d.Prefix == "" {
		bad("jobs.log_dir must be an S3 path (bucket/prefix), got %q", c.Jobs.LogDir)
	} else if _, err := access.New(c.AccessConfig()); err != nil {
		// The log folder, allowed paths and per-user folders, checked together (overlaps).
		bad("jobs.allowed_paths, access.read_paths, access.write_paths: %w", err)
	}
	if c.Jobs.MaxCPUHours < 1 {
		bad("jobs.max_cpu_hours must be at least 1")
	}
	if c.Jobs.CleanInterval < time.Minute {
		bad("jobs.clean_interval must be at least 1m, got %s", c.Jobs.CleanInterval)
	}
	if c.Jobs.CleanJitter < 0 || c.Jobs.CleanAge < 0 {
		bad("jobs.clean_jitter and jobs.clean_age must not be negative")
	}
	if l := c.Launchers; l.RestartBackoff <= 0 || l.RestartBackoffMax < l.RestartBackoff || l.CheckInterval <= 0 {
		bad("launchers.restart_backoff and launchers.check_interval must be positive, and launchers.restart_backoff_max at least launchers.restart_backoff")
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{{"auth.timeout", c.Auth.Timeout}, {"mongo.timeout", c.Mongo.Timeout}, {"kafka.timeout", c.Kafka.Timeout}, {"s3.timeout", c.S3.Timeout}} {
		// An outage must be answered within 10 s, with room for the rest of the request.
		if t.d < 100*time.Millisecond || t.d > 8*time.Second {
			bad("%s must be between 100ms and 8s, got %s", t.key, t.d)
		}
	}
	if n := c.Replicas.Name; len(n) > 128 || strings.IndexFunc(n, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		bad("replicas.name must be at most 128 characters, without spaces or control characters, got %q", n)
	}
	if a := c.Agents; a.StoreWork < 1 || a.StoreWork > 1024 {
		bad("agents.store_work must be between 1 and 1024, got %d", a.StoreWork)
	}
	if a := c.Agents; a.HeartbeatInterval < time.Second || a.HeartbeatInterval > 5*time.Minute {
		bad("agents.heartbeat_interval must be between 1s and 5m, got %s", a.HeartbeatInterval)
	}
	if r := c.Replicas; r.LeaseTTL < 3*time.Second || r.PollInterval < 50*time.Millisecond || r.PollInterval > 10*time.Second {
		bad("replicas.lease_ttl must be at least 3s and replicas.poll_interval between 50ms and 10s, got %s and %s", r.LeaseTTL, r.PollInterval)
	}
	if c.Observability.CountInterval < time.Second || c.Observability.ReadyTimeout <= 0 {
		bad("observability.count_interval must be at least 1s and observability.ready_timeout positive")
	}
	if c.AgentBinary != "" {
		// As the Python service's worker files: the file must exist at start.
		if fi, err := os.Stat(c.AgentBinary); err != nil || !fi.Mode().IsRegular() {
			bad("agent_binary %q does not exist or is not a file", c.AgentBinary)
		}
	}
	if len(c.Sites) == 0 {
		bad("at least one site is required")
	}
	seen := map[string]bool{}
	for i, s := range c.Sites {
		if s.Name == "" || seen[s.Name] {
			bad("sites[%d]: name must be set and unique", i)
		}
		seen[s.Name] = true
		if s.Plugin == "" {
			bad("sites[%d] (%s): plugin is required", i, s.Name)
		}
		if _, err := json.Marshal(s.PluginConfig); err != nil {
			bad("sites[%d] (%s): plugin_config is not representable as JSON: %v", i, s.Name, err)
		}
	}
	return errors.Join(errs...)
}

// Redacted returns a copy safe to log: secret fields are "REDACTED", and in every URI (the
// service, auth2, MongoDB and S3 URLs, and URIs inside sites' plugin configurations and worker
// environments) the user-info password and the value of every query parameter that may hold
// a secret (see RedactURI).
func (c Config) Redacted() Config {
	r := c
	if r.S3.SecretKey != "" {
		r.S3.SecretKey = "REDACTED"
	}
	r.Mongo.URI = RedactURI(r.Mongo.URI)
	r.ServiceURL = RedactURI(r.ServiceURL)
	r.Auth.URL = RedactURI(r.Auth.URL)
	r.S3.Endpoint = RedactURI(r.S3.Endpoint)
	r.S3.WorkerEndpoint = RedactURI(r.S3.WorkerEndpoint)
	r.Sites = make([]Site, len(c.Sites))
	for i, st := range c.Sites {
		st.PluginConfig, _ = redactValue(st.PluginConfig).(map[string]any)
		if st.WorkerEnv != nil {
			env := make(map[string]string, len(st.WorkerEnv))
			for k, v := range st.WorkerEnv {
				env[k] = RedactURI(v)
			}
			st.WorkerEnv = env
		}
		r.Sites[i] = st
	}
	return r
}

// redactValue returns a copy of a decoded YAML/JSON value with RedactURI applied to every
// string in it.
func redactValue(v any) any {
	switch x := v.(type) {
	case string:
		return RedactURI(x)
	case map[string]any:
		if x == nil {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = redactValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	}
	return v
}

// secretParam reports whether a URI query parameter may carry a secret: its name holds
// "password", "secret", "token", "credential" or "signature" (tlsCertificateKeyFilePassword,
// X-Amz-Security-Token, ...), or it is MongoDB's authMechanismProperties (AWS session
// tokens). Names compare without case.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"password", "secret", "token", "credential", "signature", "authmechanismproperties"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// RedactURI returns s with the password of its user info and the values of its secret query
// parameters (secretParam) replaced by REDACTED; the order and spelling of the other
// parameters are kept. A string without "://" is returned as is; one that does not parse as a
// URI is replaced whole, as it may still hold a secret.
func RedactURI(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "REDACTED"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || secretParam(name) {
				parts[i] = k + "=REDACTED"
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	return u.String()
}

// applyEnv sets every field with an `env` tag from the environment.
func applyEnv(v reflect.Value, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			if err := applyEnv(fv, lookup); err != nil {
				return err
			}
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setValue(fv, s); err != nil {
			return fmt.Errorf("environment variable %s: %w", name, err)
		}
	}
	return nil
}

func setValue(fv reflect.Value, s string) error {
	switch fv.Interface().(type) {
	case string:
		fv.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(n))
	case float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
	case []string:
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		fv.Set(reflect.ValueOf(out))
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}
