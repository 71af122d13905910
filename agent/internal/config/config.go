// Package config reads the agent's configuration from its environment: the CTS worker contract
// (reference §6.3: JOB_ID, CONTAINER_NUMBER, SERVICE_ROOT_URL, TOKEN_PATH, S3_URL,
// S3_ACCESS_KEY, S3_SECRET_PATH, ...) plus the agent's own CTS_AGENT_* settings. Secrets (the
// KBase token and the S3 secret key) are read from the files the environment names; they are
// never taken from the environment itself, never logged, never passed to containers.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Worker is the connection half of the CTS worker contract, the same in both agent modes:
// where the coordinator and S3 are, and the files holding the token and the S3 secret.
type Worker struct {
	ServiceURL string
	TokenPath  string
	Token      string `json:"-"`

	S3URL        string
	S3AccessKey  string
	S3SecretPath string
	S3Secret     string `json:"-"`
	S3Region     string
	S3Insecure   bool
	LogLevel     string
}

// workerFromEnv reads the Worker variables; it returns the missing required ones in a fixed
// order. Secrets are read later, by readSecrets.
func workerFromEnv(get func(string) string) (Worker, []error) {
	w := Worker{
		ServiceURL: get("SERVICE_ROOT_URL"), TokenPath: get("TOKEN_PATH"), S3URL: get("S3_URL"),
		S3AccessKey: get("S3_ACCESS_KEY"), S3SecretPath: get("S3_SECRET_PATH"), S3Region: get("S3_REGION"),
		S3Insecure: strings.EqualFold(get("S3_INSECURE"), "true"), LogLevel: get("CTS_LOG_LEVEL"),
	}
	if w.S3Region == "" {
		w.S3Region = "us-east-1"
	}
	var errs []error
	for _, kv := range [][2]string{{"SERVICE_ROOT_URL", w.ServiceURL}, {"TOKEN_PATH", w.TokenPath},
		{"S3_URL", w.S3URL}, {"S3_ACCESS_KEY", w.S3AccessKey}, {"S3_SECRET_PATH", w.S3SecretPath}} {
		if kv[1] == "" {
			errs = append(errs, fmt.Errorf("%s is required", kv[0]))
		}
	}
	return w, errs
}

// readSecrets reads the token and the S3 secret from their files.
func (w *Worker) readSecrets() []error {
	var errs []error
	var err error
	if w.TokenPath != "" {
		if w.Token, err = readSecret(w.TokenPath); err != nil {
			errs = append(errs, fmt.Errorf("read token: %w", err))
		}
	}
	if w.S3SecretPath != "" {
		if w.S3Secret, err = readSecret(w.S3SecretPath); err != nil {
			errs = append(errs, fmt.Errorf("read S3 secret: %w", err))
		}
	}
	return errs
}

// Config is the agent's configuration.
type Config struct {
	Worker
	JobID     string
	Container int
	Attempt   string

	// WorkDir holds this container's inputs, outputs and logs.
	WorkDir string
	// CacheDir holds the node's verified image cache (shared by agents).
	CacheDir string
	// RuncRoot is the runc state directory of CTS containers on this node.
	RuncRoot string
	RuncPath string
	// Network is "none" (default) or "host".
	Network string
	// MountPrefixOverride ("from:to") rewrites host mount sources for an agent that runs
	// inside a container itself.
	MountPrefixOverride string
	// Runtime is "oci", "docker" or "auto" (default: docker when its socket answers, else oci).
	Runtime string
	// DockerSocket is the Docker Engine's unix socket (default /var/run/docker.sock).
	DockerSocket string
	// S3LogPath is S3_ERROR_LOG_PATH ("bucket/prefix"): the CTS contract's log folder; the
	// agent uses it only for `cts-agent check` (the assignment names the real log folder).
	S3LogPath string
	// RefdataHostPath is REFDATA_HOST_PATH: where the node's staged reference data lives.
	RefdataHostPath string
}

// FromEnv reads the configuration with lookup (os.LookupEnv in production) and reads the
// secret files. Every problem is reported, joined.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	worker, workerErrs := workerFromEnv(get)
	c := Config{
		Worker:              worker,
		JobID:               get("JOB_ID"),
		Attempt:             get("CTS_AGENT_ATTEMPT"),
		WorkDir:             get("CTS_AGENT_WORKDIR"),
		CacheDir:            get("CTS_AGENT_CACHE_DIR"),
		RuncRoot:            get("CTS_AGENT_RUNC_ROOT"),
		RuncPath:            get("CTS_AGENT_RUNC"),
		Network:             get("CTS_AGENT_NETWORK"),
		MountPrefixOverride: get("MOUNT_PREFIX_OVERRIDE"),
		Runtime:             get("CTS_AGENT_RUNTIME"),
		DockerSocket:        get("CTS_AGENT_DOCKER_SOCKET"),
		S3LogPath:           get("S3_ERROR_LOG_PATH"),
		RefdataHostPath:     get("REFDATA_HOST_PATH"),
	}
	cn := get("CONTAINER_NUMBER")
	n, err := strconv.Atoi(cn)
	if err != nil || n < 0 {
		errs = append(errs, fmt.Errorf("CONTAINER_NUMBER must be a whole number ≥ 0, got %q", cn))
	}
	c.Container = n
	if c.JobID == "" {
		errs = append(errs, errors.New("JOB_ID is required"))
	}
	errs = append(errs, workerErrs...)
	if c.Attempt == "" {
		host, _ := os.Hostname()
		c.Attempt = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.WorkDir == "" {
		wd, _ := os.Getwd()
		c.WorkDir = filepath.Join(wd, "cts-work")
	}
	if c.CacheDir == "" {
		base := get("GLOBAL_CACHE_DIR")
		if base == "" {
			base = os.TempDir()
		}
		c.CacheDir = filepath.Join(base, "cts-image-cache")
	}
	if c.RuncRoot == "" {
		c.RuncRoot = "/run/cts-runc"
	}
	if c.Network == "" {
		c.Network = "none"
	}
	if c.Runtime == "" {
		c.Runtime = "auto"
	}
	if c.Runtime != "oci" && c.Runtime != "docker" && c.Runtime != "auto" {
		errs = append(errs, fmt.Errorf("CTS_AGENT_RUNTIME must be oci, docker or auto, got %q", c.Runtime))
	}
	if c.DockerSocket == "" {
		c.DockerSocket = "/var/run/docker.sock"
	}
	if c.Network != "none" && c.Network != "host" {
		errs = append(errs, fmt.Errorf("CTS_AGENT_NETWORK must be none or host, got %q", c.Network))
	}
	if c.MountPrefixOverride != "" {
		if from, to, ok := strings.Cut(c.MountPrefixOverride, ":"); !ok || !filepath.IsAbs(from) || !filepath.IsAbs(to) {
			errs = append(errs, fmt.Errorf("MOUNT_PREFIX_OVERRIDE must be <absolute prefix>:<absolute replacement>, got %q", c.MountPrefixOverride))
		}
	}
	errs = append(errs, c.readSecrets()...)
	for _, p := range []*string{&c.WorkDir, &c.CacheDir, &c.RuncRoot} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	return c, errors.Join(errs...)
}

// readSecret reads a secret file: its whole content, surrounding white space removed. An empty
// file is an error.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// HostPath applies MountPrefixOverride to a path on this agent's file system, giving the path
// the container runtime (on the host) sees. Like CTS (replacement / path.relative_to(prefix))
// the prefix matches whole path elements: "/data" rewrites "/data/x", not "/database/x".
func (c Config) HostPath(p string) string {
	from, to, ok := strings.Cut(c.MountPrefixOverride, ":")
	if !ok || from == "" {
		return p
	}
	rel, err := filepath.Rel(filepath.Clean(from), filepath.Clean(p))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(from) != filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(to, rel)
}
