package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/config"
)

// env is a lookup over a fixed map, so tests never read the real environment.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// minimalYAML is the least a valid configuration needs besides the S3 secret.
const minimalYAML = `
auth: {url: "http://auth.example/services/auth"}
mongo: {uri: "mongodb://cts:pw@mongo.example:27017"}
kafka: {brokers: ["k1:9092"]}
s3: {endpoint: "http://s3.example:9000", access_key: "AK"}
sites:
  - name: kbase
    plugin: /usr/lib/cts/cts-launcher-htcondor
`

// secretEnv supplies the S3 secret from the environment, as production does.
var secretEnv = map[string]string{"CTS_S3_SECRET_KEY": "s3cr3t"}

func TestDefaults(t *testing.T) {
	d := config.Default()
	if d.Listen != "127.0.0.1:5000" || d.LogLevel != "info" || d.Mongo.Database != "cdmtaskservice" ||
		d.Kafka.Topic != "cts-jobs" || d.S3.Region != "us-east-1" || d.Jobs.MaxCPUHours != 100 ||
		d.Jobs.SubmitInterval != 5*time.Second || d.Jobs.CleanInterval != 24*time.Hour || d.Jobs.CleanAge != 30*24*time.Hour || d.Jobs.LogDir != "cts-logs/container_logs" ||
		d.Auth.StaffRole != "KBASE_STAFF" || d.Auth.ExecutorRole != "CTS_EXTERNAL_EXECUTOR" ||
		!reflect.DeepEqual(d.Auth.AdminRoles, []string{"CDM_TASK_SERVICE_ADMIN"}) {
		t.Fatalf("unexpected defaults: %+v", d)
	}
	// The defaults alone are not a working configuration: every missing piece is named.
	err := d.Validate()
	if err == nil {
		t.Fatal("the defaults validate")
	}
	for _, want := range []string{"auth.url is required", "mongo.uri is required", "kafka.brokers is required",
		"s3.endpoint, s3.access_key and a secret key", "at least one site is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, missing %q", err, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	t.Run("minimal file keeps the other defaults", func(t *testing.T) {
		c, err := config.Load(writeFile(t, "c.yaml", minimalYAML), env(secretEnv))
		if err != nil {
			t.Fatal(err)
		}
		if c.Auth.URL != "http://auth.example/services/auth" || c.Kafka.Topic != "cts-jobs" || c.Listen != "127.0.0.1:5000" ||
			len(c.Sites) != 1 || c.Sites[0].Name != "kbase" || c.S3.SecretKey != "s3cr3t" {
			t.Fatalf("loaded %+v", c)
		}
	})
	t.Run("every key", func(t *testing.T) {
		agent := writeFile(t, "cts-agent", "binary")
		yml := `
agent_binary: ` + agent + `
observability: {count_interval: 1m, ready_timeout: 500ms}
launchers: {restart_backoff: 2s, restart_backoff_max: 3m, check_interval: 250ms}
agents: {store_work: 32, heartbeat_interval: 5s}
replicas: {name: cts-a.example:8080, lease_ttl: 20s, poll_interval: 250ms}
listen: 0.0.0.0:8080
service_url: https://cts.example/services/cts
log_level: debug
auth: {url: "http://a", admin_roles: [R1, R2], staff_role: S, executor_role: E, refdata_role: RD, timeout: 3s}
mongo: {uri: "mongodb://m", database: db, timeout: 4s}
kafka: {brokers: [b1, b2], topic: t-1, timeout: 2s}
s3: {endpoint: "http://s3", access_key: AK, region: eu, insecure: true, worker_endpoint: "http://s3w", timeout: 6s}
jobs: {log_dir: logs/cl, allowed_paths: [aaa/b/, ccc/], max_cpu_hours: 2.5, submit_interval: 250ms, clean_interval: 2h, clean_jitter: 5m, clean_age: 48h}
access: {read_paths: [ccc/shared/, "ddd/{user}/ro"], write_paths: ["ddd/{user}/"]}
reconcile: {interval: 3s, heartbeat_deadline: 1m, connect_deadline: 2m, submit_deadline: 3m, cancel_deadline: 4m, idle_deadline: 5m, runtime_grace: 6m, max_launch_retries: 3, staging_deadline: 7m}
sites:
  - name: kbase
    plugin: /p
    plugin_config: {schedd: s1, nested: {x: 1}}
    cpus_per_node: 8
    memory_per_node_gb: 31.5
    max_runtime_min: 60
    nodes: 3
    require_staff: true
    notes: [n1]
    worker_env: {TOKEN_PATH: /t}
`
		c, err := config.Load(writeFile(t, "c.yaml", yml), env(secretEnv))
		if err != nil {
			t.Fatal(err)
		}
		three := 3
		want := config.Config{
			Listen: "0.0.0.0:8080", ServiceURL: "https://cts.example/services/cts", LogLevel: "debug", AgentBinary: agent,
			Observability: config.Observability{CountInterval: time.Minute, ReadyTimeout: 500 * time.Millisecond},
			Auth:          config.Auth{URL: "http://a", AdminRoles: []string{"R1", "R2"}, StaffRole: "S", ExecutorRole: "E", RefdataRole: "RD", Timeout: 3 * time.Second},
			Mongo:         config.Mongo{URI: "mongodb://m", Database: "db", Timeout: 4 * time.Second},
			Kafka:         config.Kafka{Brokers: []string{"b1", "b2"}, Topic: "t-1", Timeout: 2 * time.Second},
			S3:            config.S3{Endpoint: "http://s3", AccessKey: "AK", SecretKey: "s3cr3t", Region: "eu", Insecure: true, WorkerEndpoint: "http://s3w", Timeout: 6 * time.Second},
			Jobs: config.Jobs{LogDir: "logs/cl", AllowedPaths: []string{"aaa/b/", "ccc/"}, MaxCPUHours: 2.5, SubmitInterval: 250 * time.Millisecond,
				CleanInterval: 2 * time.Hour, CleanJitter: 5 * time.Minute, CleanAge: 48 * time.Hour},
			Access: config.Access{ReadPaths: []string{"ccc/shared/", "ddd/{user}/ro"}, WritePaths: []string{"ddd/{user}/"}},
			Reconcile: config.Reconcile{Interval: 3 * time.Second, HeartbeatDeadline: time.Minute, ConnectDeadline: 2 * time.Minute,
				SubmitDeadline: 3 * time.Minute, CancelDeadline: 4 * time.Minute, IdleDeadline: 5 * time.Minute,
				RuntimeGrace: 6 * time.Minute, MaxLaunchRetries: 3, StagingDeadline: 7 * time.Minute},
			Launchers: config.Launchers{RestartBackoff: 2 * time.Second, RestartBackoffMax: 3 * time.Minute, CheckInterval: 250 * time.Millisecond},
			Agents:    config.Agents{StoreWork: 32, HeartbeatInterval: 5 * time.Second},
			Replicas:  config.Replicas{Name: "cts-a.example:8080", LeaseTTL: 20 * time.Second, PollInterval: 250 * time.Millisecond},
			Sites: []config.Site{{
				Name: "kbase", Plugin: "/p", PluginConfig: map[string]any{"schedd": "s1", "nested": map[string]any{"x": 1}},
				CPUsPerNode: 8, MemoryPerNodeGB: 31.5, MaxRuntimeMin: 60, Nodes: &three, RequireStaff: true,
				Notes: []string{"n1"}, WorkerEnv: map[string]string{"TOKEN_PATH": "/t"},
			}},
		}
		if !reflect.DeepEqual(c, want) {
			t.Fatalf("loaded\n%+v\nwant\n%+v", c, want)
		}
		// The plugin configuration crosses to the plugin as JSON.
		if _, err := json.Marshal(c.Sites[0].PluginConfig); err != nil {
			t.Fatal(err)
		}
	})
	refusals := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", minimalYAML + "nope: 1\n", "field nope not found"},
		{"unknown nested key", strings.Replace(minimalYAML, `access_key: "AK"`, `access_key: "AK", acess_key: x`, 1), "field acess_key not found"},
		// Secrets never come from the configuration file.
		{"secret key in the file", strings.Replace(minimalYAML, `access_key: "AK"`, `access_key: "AK", secret_key: x`, 1), "field secret_key not found"},
		{"wrong type", minimalYAML + "jobs: {max_cpu_hours: lots}\n", "cannot unmarshal"},
		{"not yaml", "{{", "parse config"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(writeFile(t, "c.yaml", tc.yaml), env(secretEnv))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), env(secretEnv))
		if err == nil || !strings.Contains(err.Error(), "read config") {
			t.Fatalf("Load = %v", err)
		}
	})
}

func TestLoadEnvironment(t *testing.T) {
	file := writeFile(t, "c.yaml", minimalYAML+"listen: 1.2.3.4:1\n")
	t.Run("every type, over the file", func(t *testing.T) {
		c, err := config.Load(file, env(map[string]string{
			"CTS_LISTEN":               "0.0.0.0:9",                 // string, overrides the file
			"CTS_S3_INSECURE":          "true",                      // bool
			"CTS_JOBS_MAX_CPU_HOURS":   "12.5",                      // float64
			"CTS_JOBS_SUBMIT_INTERVAL": "1m30s",                     // time.Duration
			"CTS_KAFKA_BROKERS":        " k1:1, k2:2,, ",            // []string, trimmed, empties dropped
			"CTS_AUTH_ADMIN_ROLES":     "A",                         // []string in a nested struct
			"CTS_MONGO_URI":            "mongodb://env:pw@m2:27017", // overrides the file
			"CTS_S3_SECRET_KEY":        "fromenv",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != "0.0.0.0:9" || !c.S3.Insecure || c.Jobs.MaxCPUHours != 12.5 || c.Jobs.SubmitInterval != 90*time.Second ||
			!reflect.DeepEqual(c.Kafka.Brokers, []string{"k1:1", "k2:2"}) || !reflect.DeepEqual(c.Auth.AdminRoles, []string{"A"}) ||
			c.Mongo.URI != "mongodb://env:pw@m2:27017" || c.S3.SecretKey != "fromenv" {
			t.Fatalf("loaded %+v", c)
		}
	})
	t.Run("an empty variable sets an empty value", func(t *testing.T) {
		_, err := config.Load(file, env(map[string]string{"CTS_S3_SECRET_KEY": "x", "CTS_AUTH_URL": ""}))
		if err == nil || !strings.Contains(err.Error(), "auth.url is required") {
			t.Fatalf("Load = %v, want auth.url to be required", err)
		}
	})
	for _, tc := range []struct{ name, value string }{
		{"CTS_S3_INSECURE", "maybe"},
		{"CTS_JOBS_MAX_CPU_HOURS", "many"},
		{"CTS_JOBS_SUBMIT_INTERVAL", "5"},
	} {
		t.Run("bad "+tc.name, func(t *testing.T) {
			_, err := config.Load(file, env(map[string]string{"CTS_S3_SECRET_KEY": "x", tc.name: tc.value}))
			if err == nil || !strings.Contains(err.Error(), "environment variable "+tc.name) {
				t.Fatalf("Load = %v, want an error naming %s", err, tc.name)
			}
		})
	}
	t.Run("secret key file", func(t *testing.T) {
		secret := writeFile(t, "secret", "  filesecret\n")
		c, err := config.Load(file, env(map[string]string{"CTS_S3_SECRET_KEY_FILE": secret}))
		if err != nil {
			t.Fatal(err)
		}
		if c.S3.SecretKey != "filesecret" {
			t.Fatalf("secret %q, want the trimmed file content", c.S3.SecretKey)
		}
		// A secret in the environment wins over the file, which is then not read at all.
		c, err = config.Load(file, env(map[string]string{"CTS_S3_SECRET_KEY": "env", "CTS_S3_SECRET_KEY_FILE": "/nonexistent"}))
		if err != nil || c.S3.SecretKey != "env" {
			t.Fatalf("Load = %+v, %v", c.S3, err)
		}
		_, err = config.Load(file, env(map[string]string{"CTS_S3_SECRET_KEY_FILE": filepath.Join(t.TempDir(), "none")}))
		if err == nil || !strings.Contains(err.Error(), "read S3 secret key file") {
			t.Fatalf("Load with a missing secret file = %v", err)
		}
	})
	t.Run("allowed paths are directories", func(t *testing.T) {
		c, err := config.Load(file, env(map[string]string{"CTS_S3_SECRET_KEY": "x", "CTS_JOBS_ALLOWED_PATHS": "bucket/out,other/,b33"}))
		if err != nil {
			t.Fatal(err)
		}
		// "bucket/out" must not allow "bucket/outside/": a "/" is appended, as in the CTS.
		if want := []string{"bucket/out/", "other/", "b33/"}; !reflect.DeepEqual(c.Jobs.AllowedPaths, want) {
			t.Fatalf("allowed paths %q, want %q", c.Jobs.AllowedPaths, want)
		}
	})
}

func TestValidateJoinsEveryProblem(t *testing.T) {
	c, err := config.Load(writeFile(t, "c.yaml", minimalYAML), env(secretEnv))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	c.Listen = ""
	c.ServiceURL = "/relative"
	c.Mongo.Database = ""
	c.Kafka.Topic = "bad topic"
	c.Jobs.LogDir = ""
	c.Jobs.MaxCPUHours = 0.5
	c.Jobs.CleanInterval = time.Second
	c.Jobs.CleanAge = -time.Hour
	c.Observability.CountInterval = time.Millisecond
	c.Mongo.Timeout = time.Minute
	c.Replicas.Name = "cts a"
	c.Agents.StoreWork = 0
	c.Agents.HeartbeatInterval = time.Hour
	c.AgentBinary = filepath.Join(t.TempDir(), "no-agent")
	c.Sites = append(c.Sites, config.Site{Name: "kbase"}, config.Site{Name: "p", Plugin: "/p", PluginConfig: map[string]any{"f": func() {}}})
	err = c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken configuration")
	}
	want := []string{
		"listen is required",
		`service_url must be an absolute URL, got "/relative"`,
		"mongo.database is required",
		`kafka.topic must match ^[a-zA-Z0-9-]+$ and be at most 249 characters, got "bad topic"`,
		`jobs.log_dir must be an S3 path (bucket/prefix), got ""`,
		"jobs.max_cpu_hours must be at least 1",
		"jobs.clean_interval must be at least 1m, got 1s",
		"jobs.clean_jitter and jobs.clean_age must not be negative",
		"observability.count_interval must be at least 1s",
		"mongo.timeout must be between 100ms and 8s, got 1m0s",
		`replicas.name must be at most 128 characters, without spaces or control characters, got "cts a"`,
		"agents.store_work must be between 1 and 1024, got 0",
		"agents.heartbeat_interval must be between 1s and 5m, got 1h0m0s",
		"agent_binary \"" + c.AgentBinary + "\" does not exist or is not a file",
		"sites[1]: name must be set and unique",
		"sites[1] (kbase): plugin is required",
		"sites[2] (p): plugin_config is not representable as JSON",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("Validate reported %d problems, want %d:\n%s", len(lines), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() misses %q", w)
		}
	}
}

// TestValidateAccess checks the folders are S3 folders compared by segments: a log folder
// reached through "..", or an allowed path that holds the log folder, is refused at start.
func TestValidateAccess(t *testing.T) {
	tests := []struct {
		name string
		set  func(*config.Config)
		want string
	}{
		{"dot-dot log folder", func(c *config.Config) { c.Jobs.LogDir = "cts-logs/x/../container_logs" }, "jobs.log_dir must be an S3 path"},
		{"log folder a bucket", func(c *config.Config) { c.Jobs.LogDir = "cts-logs/" }, "jobs.log_dir must be an S3 path"},
		{"allowed path holds the log folder", func(c *config.Config) { c.Jobs.AllowedPaths = []string{"cts-logs/"} }, "overlaps the log folder"},
		{"write path in the log folder", func(c *config.Config) { c.Access.WritePaths = []string{"cts-logs/container_logs/x/"} }, "overlaps the log folder"},
		{"placeholder inside a name", func(c *config.Config) { c.Access.ReadPaths = []string{"cts-data/u-{user}/"} }, "whole path segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Load(writeFile(t, "c.yaml", minimalYAML), env(secretEnv))
			if err != nil {
				t.Fatal(err)
			}
			tt.set(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	c := config.Default()
	c.S3.SecretKey = "s3cr3t"
	c.Mongo.URI = "mongodb://cts:hunter2@h1:27017,h2:27017/db?replicaSet=rs"
	r := c.Redacted()
	if r.S3.SecretKey != "REDACTED" {
		t.Errorf("secret key %q", r.S3.SecretKey)
	}
	if r.Mongo.URI != "mongodb://cts:REDACTED@h1:27017,h2:27017/db?replicaSet=rs" {
		t.Errorf("mongo URI %q", r.Mongo.URI)
	}
	if c.S3.SecretKey != "s3cr3t" || !strings.Contains(c.Mongo.URI, "hunter2") {
		t.Error("Redacted changed the original")
	}
	// What gets logged is the JSON of the redacted copy: no secret in it.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "s3cr3t") {
		t.Fatalf("a secret leaks into the log: %s", b)
	}

	for name, tc := range map[string]struct{ uri, want string }{
		"no credentials": {"mongodb://h:27017/db", "mongodb://h:27017/db"},
		"srv":            {"mongodb+srv://u:p@cluster.example/db", "mongodb+srv://u:REDACTED@cluster.example/db"},
		// A URI url.Parse refuses (a bad escape in the password) must not leak either.
		"unparseable": {"mongodb://u:pa%zzword@h/db", "REDACTED"},
		"empty":       {"", ""},
		// The logged URI hid the password but not these parameters.
		"tls key password": {"mongodb://h/db?tls=true&tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=hunter2",
			"mongodb://h/db?tls=true&tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=REDACTED"},
		"aws session token": {"mongodb://AKIA:hunter2@h/db?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:hunter2",
			"mongodb://AKIA:REDACTED@h/db?authMechanism=MONGODB-AWS&authMechanismProperties=REDACTED"},
		"ssl key password":    {"mongodb://h/?sslClientCertificateKeyPassword=hunter2&replicaSet=rs", "mongodb://h/?sslClientCertificateKeyPassword=REDACTED&replicaSet=rs"},
		"escaped name":        {"mongodb://h/?tlsCertificateKey%46ilePassword=hunter2", "mongodb://h/?tlsCertificateKey%46ilePassword=REDACTED"},
		"user without secret": {"mongodb://cts@h/db?authSource=admin", "mongodb://cts@h/db?authSource=admin"},
	} {
		t.Run(name, func(t *testing.T) {
			c := config.Default()
			c.Mongo.URI = tc.uri
			if got := c.Redacted().Mongo.URI; got != tc.want {
				t.Fatalf("Redacted URI %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("every URI", func(t *testing.T) {
		c := config.Default()
		c.ServiceURL = "https://u:hunter2@cts.example/?token=hunter2"
		c.Auth.URL = "https://auth.example/services/auth?secret=hunter2"
		c.S3.Endpoint = "https://k:hunter2@s3.example"
		c.S3.WorkerEndpoint = "https://s3w.example/?X-Amz-Security-Token=hunter2"
		c.Sites = []config.Site{{Name: "s", PluginConfig: map[string]any{"agent_url": "https://x.example/a?token=hunter2",
			"nested": map[string]any{"list": []any{"https://u:hunter2@h.example/"}}}, WorkerEnv: map[string]string{"X": "http://u:hunter2@h/"}}}
		b, err := json.Marshal(c.Redacted())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "hunter2") {
			t.Fatalf("a secret leaks into the log: %s", b)
		}
		if !strings.Contains(c.Sites[0].PluginConfig["agent_url"].(string), "hunter2") {
			t.Fatal("Redacted changed the original's plugin configuration")
		}
	})
	t.Run("empty secret stays empty", func(t *testing.T) {
		if got := config.Default().Redacted().S3.SecretKey; got != "" {
			t.Fatalf("secret %q", got)
		}
	})
}
