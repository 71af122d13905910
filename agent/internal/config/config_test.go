package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testToken  = "kbase-token-XYZ123"
	testSecret = "s3-secret-ABC789"
)

// env is a complete, valid environment with secret files in a temp dir.
func env(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	sec := filepath.Join(dir, "s3secret")
	// Surrounding white space, as an editor or `echo` leaves it, is not part of the secret.
	if err := os.WriteFile(tok, []byte("  "+testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sec, []byte(testSecret+"\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"JOB_ID": "job1", "CONTAINER_NUMBER": "3", "SERVICE_ROOT_URL": "https://cts.example/services/cts",
		"TOKEN_PATH": tok, "S3_URL": "https://s3.example", "S3_ACCESS_KEY": "access", "S3_SECRET_PATH": sec,
	}
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFromEnvValid(t *testing.T) {
	t.Parallel()
	e := env(t)
	e["S3_INSECURE"] = "TRUE"
	e["CTS_AGENT_ATTEMPT"] = " 17.3 "
	e["CTS_AGENT_WORKDIR"] = "/scratch/w"
	e["CTS_AGENT_NETWORK"] = "host"
	e["S3_REGION"] = "eu-west-1"
	c, err := FromEnv(lookup(e))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if c.JobID != "job1" || c.Container != 3 || c.Attempt != "17.3" || c.ServiceURL != "https://cts.example/services/cts" ||
		c.S3URL != "https://s3.example" || c.S3AccessKey != "access" || !c.S3Insecure || c.S3Region != "eu-west-1" ||
		c.WorkDir != "/scratch/w" || c.Network != "host" {
		t.Errorf("config = %+v", c)
	}
	if c.Token != testToken || c.S3Secret != testSecret {
		t.Errorf("secrets not read and trimmed: token %q, secret %q", c.Token, c.S3Secret)
	}
}

func TestFromEnvDefaults(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	wd, _ := os.Getwd()
	cases := []struct {
		name  string
		extra map[string]string
		check func(c Config) error
	}{
		{"attempt is host-pid", nil, func(c Config) error {
			return want(c.Attempt, fmt.Sprintf("%s-%d", host, os.Getpid()))
		}},
		{"work dir below the working directory", nil, func(c Config) error {
			return want(c.WorkDir, filepath.Join(wd, "cts-work"))
		}},
		{"relative work dir made absolute", map[string]string{"CTS_AGENT_WORKDIR": "w"}, func(c Config) error {
			return want(c.WorkDir, filepath.Join(wd, "w"))
		}},
		{"cache dir in TMPDIR", nil, func(c Config) error {
			return want(c.CacheDir, filepath.Join(os.TempDir(), "cts-image-cache"))
		}},
		{"cache dir in GLOBAL_CACHE_DIR", map[string]string{"GLOBAL_CACHE_DIR": "/cache"}, func(c Config) error {
			return want(c.CacheDir, "/cache/cts-image-cache")
		}},
		{"explicit cache dir", map[string]string{"CTS_AGENT_CACHE_DIR": "/c2", "GLOBAL_CACHE_DIR": "/cache"}, func(c Config) error {
			return want(c.CacheDir, "/c2")
		}},
		{"runc root", nil, func(c Config) error { return want(c.RuncRoot, "/run/cts-runc") }},
		{"network none", nil, func(c Config) error { return want(c.Network, "none") }},
		{"region", nil, func(c Config) error { return want(c.S3Region, "us-east-1") }},
		{"S3 secure unless exactly true", map[string]string{"S3_INSECURE": "yes"}, func(c Config) error {
			return want(fmt.Sprint(c.S3Insecure), "false")
		}},
		{"container 0", map[string]string{"CONTAINER_NUMBER": "0"}, func(c Config) error {
			return want(fmt.Sprint(c.Container), "0")
		}},
		{"node dir", nil, func(c Config) error { return want(c.NodeDir, DefaultNodeDir) }},
		{"default work dir is a hand run's", nil, func(c Config) error { return want(fmt.Sprint(c.WorkDirGiven), "false") }},
		{"launcher's work dir", map[string]string{"CTS_AGENT_WORKDIR": "/w"}, func(c Config) error {
			return want(fmt.Sprint(c.WorkDirGiven), "true")
		}},
		{"stop budget without a launcher", nil, func(c Config) error {
			return want(c.Budget.String(), "container stop 10s < final report 30s < launcher kill 45s")
		}},
		{"stop budget from the launcher's kill grace", map[string]string{"CTS_AGENT_KILL_GRACE": "9"}, func(c Config) error {
			return want(c.Budget.String(), "container stop 2s < final report 6s < launcher kill 9s")
		}},
		{"bounds", nil, func(c Config) error {
			return want(fmt.Sprint(c.ImageCacheMaxBytes, c.ImageCacheMaxAge, c.LogMaxBytes, c.CoordinatorTimeout), "20000000000 168h0m0s 1000000000 6h0m0s")
		}},
		{"bounds set", map[string]string{"CTS_AGENT_IMAGE_CACHE_GB": "1.5", "CTS_AGENT_IMAGE_CACHE_DAYS": "0.5", "CTS_AGENT_LOG_MAX_MB": "2", "CTS_AGENT_COORDINATOR_TIMEOUT_MIN": "0.5"}, func(c Config) error {
			return want(fmt.Sprint(c.ImageCacheMaxBytes, c.ImageCacheMaxAge, c.LogMaxBytes, c.CoordinatorTimeout), "1500000000 12h0m0s 2000000 30s")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := env(t)
			for k, v := range tc.extra {
				e[k] = v
			}
			c, err := FromEnv(lookup(e))
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			if err := tc.check(c); err != nil {
				t.Error(err)
			}
		})
	}
}

func want(got, want string) error {
	if got != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

func TestFromEnvErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(t *testing.T, e map[string]string)
		// wants are substrings of the error, in order.
		wants []string
	}{
		{
			name: "every required variable missing",
			edit: func(t *testing.T, e map[string]string) {
				for _, k := range []string{"JOB_ID", "SERVICE_ROOT_URL", "TOKEN_PATH", "S3_URL", "S3_ACCESS_KEY", "S3_SECRET_PATH", "CONTAINER_NUMBER"} {
					delete(e, k)
				}
			},
			wants: []string{`CONTAINER_NUMBER must be a whole number ≥ 0, got ""`, "JOB_ID is required", "SERVICE_ROOT_URL is required",
				"TOKEN_PATH is required", "S3_URL is required", "S3_ACCESS_KEY is required", "S3_SECRET_PATH is required"},
		},
		{
			name:  "blank is missing",
			edit:  func(t *testing.T, e map[string]string) { e["JOB_ID"] = "  " },
			wants: []string{"JOB_ID is required"},
		},
		{
			name:  "container number negative",
			edit:  func(t *testing.T, e map[string]string) { e["CONTAINER_NUMBER"] = "-1" },
			wants: []string{`CONTAINER_NUMBER must be a whole number ≥ 0, got "-1"`},
		},
		{
			name:  "container number not a number",
			edit:  func(t *testing.T, e map[string]string) { e["CONTAINER_NUMBER"] = "1.5" },
			wants: []string{`got "1.5"`},
		},
		{
			name:  "network",
			edit:  func(t *testing.T, e map[string]string) { e["CTS_AGENT_NETWORK"] = "bridge" },
			wants: []string{`CTS_AGENT_NETWORK must be none or host, got "bridge"`},
		},
		{
			name:  "mount prefix override without a colon",
			edit:  func(t *testing.T, e map[string]string) { e["MOUNT_PREFIX_OVERRIDE"] = "/data" },
			wants: []string{"MOUNT_PREFIX_OVERRIDE must be"},
		},
		{
			name: "bounds and grace",
			edit: func(t *testing.T, e map[string]string) {
				e["CTS_AGENT_KILL_GRACE"] = "0"
				e["CTS_AGENT_IMAGE_CACHE_GB"] = "-1"
				e["CTS_AGENT_IMAGE_CACHE_DAYS"] = "week"
				e["CTS_AGENT_LOG_MAX_MB"] = "0"
				e["CTS_AGENT_COORDINATOR_TIMEOUT_MIN"] = "forever"
			},
			wants: []string{"CTS_AGENT_IMAGE_CACHE_GB must be", "CTS_AGENT_IMAGE_CACHE_DAYS must be", "CTS_AGENT_KILL_GRACE must be", "CTS_AGENT_LOG_MAX_MB must be", "CTS_AGENT_COORDINATOR_TIMEOUT_MIN must be"},
		},
		{
			name: "token file missing",
			edit: func(t *testing.T, e map[string]string) {
				e["TOKEN_PATH"] = filepath.Join(t.TempDir(), "nope")
			},
			wants: []string{"read token", "nope", "no such file"},
		},
		{
			name: "secret files empty",
			edit: func(t *testing.T, e map[string]string) {
				for _, k := range []string{"TOKEN_PATH", "S3_SECRET_PATH"} {
					if err := os.WriteFile(e[k], []byte(" \n\t\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			},
			wants: []string{"read token", "is empty", "read S3 secret", "is empty"},
		},
		{
			name: "secret path is a directory",
			edit: func(t *testing.T, e map[string]string) {
				e["S3_SECRET_PATH"] = t.TempDir()
			},
			wants: []string{"read S3 secret"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := env(t)
			tc.edit(t, e)
			_, err := FromEnv(lookup(e))
			if err == nil {
				t.Fatal("FromEnv succeeded")
			}
			msg := err.Error()
			rest := msg
			for _, w := range tc.wants {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q lacks %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(msg, testToken) || strings.Contains(msg, testSecret) {
				t.Errorf("error %q contains a secret", msg)
			}
		})
	}
}

func TestHostPath(t *testing.T) {
	t.Parallel()
	cases := []struct {
		override, in, want string
	}{
		{"", "/work/x", "/work/x"},
		{"/work:/host/work", "/work/job/input", "/host/work/job/input"},
		{"/work:/host/work", "/work", "/host/work"},
		{"/work/:/host/work/", "/work/job", "/host/work/job"},
		{"/work:/host/work", "/workshop/job", "/workshop/job"},
		{"/work:/host/work", "/other/work/job", "/other/work/job"},
		{"/:/host", "/work/job", "/host/work/job"},
	}
	for _, tc := range cases {
		t.Run(tc.override+" "+tc.in, func(t *testing.T) {
			t.Parallel()
			if got := (Config{MountPrefixOverride: tc.override}).HostPath(tc.in); got != tc.want {
				t.Errorf("HostPath(%q) with %q = %q, want %q", tc.in, tc.override, got, tc.want)
			}
		})
	}
}

func TestHostPathFromEnv(t *testing.T) {
	t.Parallel()
	e := env(t)
	e["MOUNT_PREFIX_OVERRIDE"] = "/scratch:/mnt/scratch"
	e["CTS_AGENT_WORKDIR"] = "/scratch/job1"
	c, err := FromEnv(lookup(e))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.HostPath(filepath.Join(c.WorkDir, "input")); got != "/mnt/scratch/job1/input" {
		t.Errorf("HostPath = %q", got)
	}
}

func TestRuntimeSetting(t *testing.T) {
	cases := []struct {
		name, value, want string
		wantErr           bool
	}{
		{name: "default auto", value: "", want: "auto"},
		{name: "oci", value: "oci", want: "oci"},
		{name: "runc", value: "runc", want: "runc"},
		{name: "crun", value: "crun", want: "crun"},
		{name: "docker", value: "docker", want: "docker"},
		{name: "unknown", value: "podman", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := env(t)
			m["CTS_AGENT_RUNTIME"] = tc.value
			c, err := FromEnv(lookup(m))
			if (err != nil) != tc.wantErr {
				t.Fatalf("FromEnv: %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (c.Runtime != tc.want || c.DockerSocket != "/var/run/docker.sock") {
				t.Errorf("runtime %q socket %q", c.Runtime, c.DockerSocket)
			}
		})
	}
}

// TestCredential: the launcher's credential, from its file or its variable, is what the agent
// presents to the coordinator; with one, TOKEN_PATH is not needed.
func TestCredential(t *testing.T) {
	t.Parallel()
	e := env(t)
	file := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(file, []byte("ctsagent1.file.sig\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e["CTS_AGENT_CREDENTIAL_FILE"] = file
	delete(e, "TOKEN_PATH")
	c, err := FromEnv(lookup(e))
	if err != nil || c.Token != "ctsagent1.file.sig" {
		t.Fatalf("from the file: token %q, %v", c.Token, err)
	}
	e = env(t)
	e["CTS_AGENT_CREDENTIAL"] = "ctsagent1.env.sig"
	if c, err := FromEnv(lookup(e)); err != nil || c.Token != "ctsagent1.env.sig" {
		t.Fatalf("from the variable: token %q, %v", c.Token, err)
	}
	e["CTS_AGENT_CREDENTIAL_FILE"] = filepath.Join(t.TempDir(), "missing")
	if _, err := FromEnv(lookup(e)); err == nil || !strings.Contains(err.Error(), "read the agent credential (CTS_AGENT_CREDENTIAL_FILE)") {
		t.Fatalf("a missing credential file: %v", err)
	}
}
