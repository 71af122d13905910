// Package config reads the agent's configuration from its environment: the CTS worker contract
// (as the Python service's jobs get them: JOB_ID, CONTAINER_NUMBER, SERVICE_ROOT_URL, TOKEN_PATH, S3_URL,
// S3_ACCESS_KEY, S3_SECRET_PATH, ...) plus the agent's own CTS_AGENT_* settings. Secrets (the
// KBase token and the S3 secret key) are read from the files the environment names; they are
// never taken from the environment itself, never logged, never passed to containers.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kbase/cts/shared/grace"
	launchenv "github.com/kbase/cts/shared/launcher/env"
)

// Worker is the connection half of the CTS worker contract, the same in both agent modes:
// where the coordinator and S3 are, and the files holding the token and the S3 secret.
type Worker struct {
	ServiceURL string
	TokenPath  string
	// Token is what the agent presents to the coordinator: the credential its launcher gave
	// it for this container or staging (CTS_AGENT_CREDENTIAL_FILE, or CTS_AGENT_CREDENTIAL),
	// else the KBase token of TOKEN_PATH, which the coordinator accepts for dry runs only.
	Token string `json:"-"`
	// CredentialFile is CTS_AGENT_CREDENTIAL_FILE; Credential is the credential read from it
	// or given in CTS_AGENT_CREDENTIAL.
	CredentialFile string
	Credential     string `json:"-"`

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
		CredentialFile: get(launchenv.CredentialFile), Credential: get(launchenv.Credential),
	}
	if w.S3Region == "" {
		w.S3Region = "us-east-1"
	}
	var errs []error
	if w.TokenPath == "" && (w.CredentialFile != "" || w.Credential != "") {
		w.TokenPath = "-" // not needed: the credential takes the token's place
	}
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
	if w.TokenPath != "" && w.TokenPath != "-" {
		if w.Token, err = readSecret(w.TokenPath); err != nil {
			errs = append(errs, fmt.Errorf("read token: %w", err))
		}
	}
	if w.CredentialFile != "" {
		if w.Credential, err = readSecret(w.CredentialFile); err != nil {
			errs = append(errs, fmt.Errorf("read the agent credential (%s): %w", launchenv.CredentialFile, err))
		}
	}
	if w.Credential != "" {
		w.Token = w.Credential
	}
	if w.S3SecretPath != "" {
		if w.S3Secret, err = readSecret(w.S3SecretPath); err != nil {
			errs = append(errs, fmt.Errorf("read S3 secret: %w", err))
		}
	}
	return errs
}

// Node is the container half of the agent's configuration: the node's runtime, its shared
// state and its bounds. The run, reap and check modes read it the same way (NodeFromEnv).
type Node struct {
	// Runtime is "oci", "runc", "crun", "docker" or "auto". "oci" is the agent's own OCI
	// runtime (its image cache and config.json) with crun when crun is found and can make
	// cgroups on this node, else with runc; "runc" and "crun" pin one; "auto" is docker when its
	// socket answers a ping, else oci.
	Runtime string
	// DockerSocket is the Docker Engine's unix socket (default /var/run/docker.sock).
	DockerSocket string
	// CacheDir holds the node's verified image cache (shared by agents).
	CacheDir string
	// RuncRoot is the state directory of CTS containers on this node, runc's and crun's.
	RuncRoot string
	// RuncPath and CrunPath are the runc and crun binaries ("runc" and "crun" on PATH when
	// empty).
	RuncPath string
	CrunPath string
	// NodeDir holds what the agents of this node share besides the image cache: each live
	// agent's registration (its work directory, under an owner lock) and the record of the
	// Docker images agents pulled. Reapers use it to find what dead agents left.
	NodeDir string
	// ImageCacheMaxBytes and ImageCacheMaxAge bound the images agents keep on this node (the
	// oci cache, or the Docker images agents pulled): least recently used images go first, and
	// none is removed while an agent uses it.
	ImageCacheMaxBytes int64
	ImageCacheMaxAge   time.Duration
}

// Runtimes are the values of CTS_AGENT_RUNTIME.
var Runtimes = []string{"oci", "runc", "crun", "docker", "auto"}

// OCI reports whether runtime (a value of CTS_AGENT_RUNTIME) is the agent's OCI runtime,
// with whichever engine: "oci", "runc" or "crun".
func OCI(runtime string) bool { return runtime == "oci" || runtime == "runc" || runtime == "crun" }

// Node defaults.
const (
	DefaultNodeDir            = "/var/lib/cts-agent"
	DefaultImageCacheMaxBytes = 20_000_000_000
	DefaultImageCacheMaxAge   = 7 * 24 * time.Hour
	DefaultLogMaxBytes        = 1_000_000_000
)

// NodeFromEnv reads the Node variables, with their defaults.
func NodeFromEnv(lookup func(string) (string, bool)) (Node, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	n := Node{
		Runtime: get("CTS_AGENT_RUNTIME"), DockerSocket: get("CTS_AGENT_DOCKER_SOCKET"),
		CacheDir: get("CTS_AGENT_CACHE_DIR"), RuncRoot: get("CTS_AGENT_RUNC_ROOT"), RuncPath: get("CTS_AGENT_RUNC"),
		CrunPath: get("CTS_AGENT_CRUN"),
		NodeDir:  get("CTS_AGENT_NODE_DIR"),
	}
	if n.CacheDir == "" {
		base := get("GLOBAL_CACHE_DIR")
		if base == "" {
			base = os.TempDir()
		}
		n.CacheDir = filepath.Join(base, "cts-image-cache")
	}
	if n.RuncRoot == "" {
		n.RuncRoot = "/run/cts-runc"
	}
	if n.NodeDir == "" {
		n.NodeDir = DefaultNodeDir
	}
	if n.Runtime == "" {
		n.Runtime = "auto"
	}
	if !slices.Contains(Runtimes, n.Runtime) {
		errs = append(errs, fmt.Errorf("CTS_AGENT_RUNTIME must be one of %s, got %q", strings.Join(Runtimes, ", "), n.Runtime))
	}
	if n.DockerSocket == "" {
		n.DockerSocket = "/var/run/docker.sock"
	}
	n.ImageCacheMaxBytes = DefaultImageCacheMaxBytes
	if v := get("CTS_AGENT_IMAGE_CACHE_GB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f < 1<<20) {
			errs = append(errs, fmt.Errorf("CTS_AGENT_IMAGE_CACHE_GB must be a number of gigabytes above 0, got %q", v))
		}
		n.ImageCacheMaxBytes = int64(f * 1e9)
	}
	n.ImageCacheMaxAge = DefaultImageCacheMaxAge
	if v := get("CTS_AGENT_IMAGE_CACHE_DAYS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f < 100000) {
			errs = append(errs, fmt.Errorf("CTS_AGENT_IMAGE_CACHE_DAYS must be a number of days above 0, got %q", v))
		}
		n.ImageCacheMaxAge = time.Duration(f * 24 * float64(time.Hour))
	}
	for _, p := range []*string{&n.CacheDir, &n.RuncRoot, &n.NodeDir} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	return n, errors.Join(errs...)
}

// Config is the agent's configuration.
type Config struct {
	Worker
	Node
	JobID     string
	Container int
	Attempt   string

	// WorkDir holds this container's inputs, outputs and logs.
	WorkDir string
	// WorkDirGiven is false when WorkDir is the default ./cts-work of a hand run (no launcher
	// named one): such a run removes the directory when it ends (unless --keep).
	WorkDirGiven bool
	// Network is "none" (default) or "host".
	Network string
	// MountPrefixOverride ("from:to") rewrites host mount sources for an agent that runs
	// inside a container itself.
	MountPrefixOverride string
	// S3LogPath is S3_ERROR_LOG_PATH ("bucket/prefix"): the CTS contract's log folder; the
	// agent uses it only for `cts-agent check` (the assignment names the real log folder).
	S3LogPath string
	// RefdataHostPath is REFDATA_HOST_PATH: where the node's staged reference data lives.
	RefdataHostPath string
	// Budget orders the deadlines of a stop (shared/grace), from the launcher's kill grace
	// (CTS_AGENT_KILL_GRACE).
	Budget grace.Budget
	// LogMaxBytes bounds each of the container's stdout and stderr files
	// (CTS_AGENT_LOG_MAX_MB); output past it is counted and dropped, with a note at the end.
	LogMaxBytes int64
	// CoordinatorTimeout is how long the coordinator may stay unreachable before the agent
	// gives up (CTS_AGENT_COORDINATOR_TIMEOUT_MIN, DefaultCoordinatorTimeout): it stops its
	// container, keeps its journal and exits non-zero.
	CoordinatorTimeout time.Duration
}

// DefaultCoordinatorTimeout is CTS_AGENT_COORDINATOR_TIMEOUT_MIN's default: the Python
// service's JOB_UPDATE_TIMEOUT_MIN, 6 hours.
const DefaultCoordinatorTimeout = 6 * time.Hour

// FromEnv reads the configuration with lookup (os.LookupEnv in production) and reads the
// secret files. Every problem is reported, joined.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var errs []error
	worker, workerErrs := workerFromEnv(get)
	node, err := NodeFromEnv(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c := Config{
		Worker:              worker,
		Node:                node,
		JobID:               get("JOB_ID"),
		Attempt:             get("CTS_AGENT_ATTEMPT"),
		WorkDir:             get("CTS_AGENT_WORKDIR"),
		Network:             get("CTS_AGENT_NETWORK"),
		MountPrefixOverride: get("MOUNT_PREFIX_OVERRIDE"),
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
	c.WorkDirGiven = c.WorkDir != ""
	if c.WorkDir == "" {
		wd, _ := os.Getwd()
		c.WorkDir = filepath.Join(wd, "cts-work")
	}
	if c.Network == "" {
		c.Network = "none"
	}
	if c.Network != "none" && c.Network != "host" {
		errs = append(errs, fmt.Errorf("CTS_AGENT_NETWORK must be none or host, got %q", c.Network))
	}
	if c.MountPrefixOverride != "" {
		if from, to, ok := strings.Cut(c.MountPrefixOverride, ":"); !ok || !filepath.IsAbs(from) || !filepath.IsAbs(to) {
			errs = append(errs, fmt.Errorf("MOUNT_PREFIX_OVERRIDE must be <absolute prefix>:<absolute replacement>, got %q", c.MountPrefixOverride))
		}
	}
	kill, err := grace.Parse(get(grace.EnvKillGrace))
	if err != nil {
		errs = append(errs, err)
	}
	c.Budget = grace.Split(kill)
	c.LogMaxBytes = DefaultLogMaxBytes
	if v := get("CTS_AGENT_LOG_MAX_MB"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f < 1<<30) {
			errs = append(errs, fmt.Errorf("CTS_AGENT_LOG_MAX_MB must be a number of megabytes above 0, got %q", v))
		}
		c.LogMaxBytes = int64(f * 1e6)
	}
	c.CoordinatorTimeout = DefaultCoordinatorTimeout
	if v := get("CTS_AGENT_COORDINATOR_TIMEOUT_MIN"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 7*24*60) {
			errs = append(errs, fmt.Errorf("CTS_AGENT_COORDINATOR_TIMEOUT_MIN must be a number of minutes above 0 and at most 10080 (a week), got %q", v))
		} else {
			c.CoordinatorTimeout = time.Duration(f * float64(time.Minute))
		}
	}
	errs = append(errs, c.readSecrets()...)
	if abs, err := filepath.Abs(c.WorkDir); err == nil {
		c.WorkDir = abs
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
