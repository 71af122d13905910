// Package launcher is the launcher plugin SDK: the contract between the CTS coordinator and the
// backends that start agents on compute (local processes, HTCondor, later Slurm or Kubernetes).
//
// It owns the Launcher interface and its types, the sentinel errors and their gRPC mapping, the
// go-plugin handshake, Serve (for a plugin's main) and Client/Start (for the host). The wire
// is gRPC only (proto/launcher.proto, generated code in internal/launcherpb); hashicorp/go-plugin
// runs each plugin as a child process of the coordinator.
//
// It must not know any backend, must not import anything of ours outside shared/, and must never
// carry the host's configuration or secrets across the boundary: a plugin receives only its own
// opaque configuration (Configure) and the per-job worker environment (SubmitRequest.Env), which
// names secret files but never holds secrets.
//
// The life of a job as a launcher sees it:
//
//	Submit(job, attempt) ──► containers idle ──► running ──┬─► exited (exit code)
//	     ▲ same key again:                                 ├─► held (backend keeps it; HTCondor)
//	     └ same handle, Existing=true                      └─► removed (after Cancel)
//
// A new launch of the same job (after a lost or failed one) uses a new Attempt.
package launcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/kbase/cts/shared/launcher/env"
)

// APIVersion is the semantic version of this contract. A plugin reports the version it
// implements in Info; Start refuses a plugin whose version differs. It is bumped when the
// meaning of a call changes; wire-level breaks bump Handshake.ProtocolVersion instead.
const APIVersion = 1

// Capabilities a plugin may list in Info.Capabilities.
const (
	// CapabilityCleanup means the plugin implements Cleaner.
	CapabilityCleanup = "cleanup"
)

// Environment variables a launcher sets for every container, beside SubmitRequest.Env (see
// package env, which the agent reads them from).
const (
	// EnvContainerNumber is the container number, 0 to Containers-1.
	EnvContainerNumber = env.ContainerNumber
	// EnvAgentAttempt names this run of the container, unique per launch (HTCondor
	// "cluster.proc", local "local-<jobid8>-<attempt>-<n>"); the agent reports it in its hello.
	EnvAgentAttempt = env.AgentAttempt
	// EnvCredentialFile names the file holding the container's credential
	// (SubmitRequest.Credentials): an absolute path, or one relative to the agent's working
	// directory. The file is readable by the agent's user only.
	EnvCredentialFile = env.CredentialFile
	// EnvCredential holds the container's credential itself, for a backend that can pass
	// environment variables privately but no file (other processes of the agent's user may
	// read a process environment: prefer EnvCredentialFile).
	EnvCredential = env.Credential
)

// MaxCredentialLength bounds one credential of SubmitRequest.Credentials.
const MaxCredentialLength = 4096

// Limits on a SubmitRequest, checked by SubmitRequest.Validate.
const (
	// MaxContainers is the largest number of containers one job may ask for.
	MaxContainers = 10000
	// MaxJobIDLength is the longest accepted job ID.
	MaxJobIDLength = 128
)

// Info describes a plugin.
type Info struct {
	// Name is the plugin's short name ("local", "htcondor").
	Name string
	// APIVersion is the contract version the plugin implements (see APIVersion).
	APIVersion int
	// Capabilities lists optional features (CapabilityCleanup, ...).
	Capabilities []string
}

// HasCapability reports whether the plugin lists capability c.
func (i Info) HasCapability(c string) bool {
	for _, v := range i.Capabilities {
		if v == c {
			return true
		}
	}
	return false
}

// SubmitRequest asks a launcher to start the agents of one job: one container per container
// number.
type SubmitRequest struct {
	// JobID is the CTS job ID: 1 to MaxJobIDLength characters of [A-Za-z0-9_.-], not starting
	// with '.'.
	JobID string
	// Attempt counts launches of this job, 0 for the first. (JobID, Attempt) is the
	// idempotency key of Submit.
	Attempt int
	// Containers is the number of containers (1 to MaxContainers).
	Containers int
	// CPUs, MemoryBytes, RuntimeSeconds and DiskBytes are the per-container resource request.
	// Zero means "not specified"; a backend may ignore what it cannot enforce (and documents it).
	CPUs           int
	MemoryBytes    int64
	RuntimeSeconds float64
	DiskBytes      int64
	// User is the CTS user name, for accounting groups and concurrency limits.
	User string
	// BatchName groups the job's containers in the backend's listings.
	BatchName string
	// Env is the worker environment common to all containers (JOB_ID, SERVICE_ROOT_URL,
	// S3_URL, TOKEN_PATH, ...). It never holds secrets: secrets live in files on the worker and
	// Env names those files. The launcher adds EnvContainerNumber and EnvAgentAttempt per
	// container, and its own configured variables.
	Env map[string]string
	// Credentials holds one secret per container (index = container number) that the
	// container's agent presents to the coordinator: the launcher hands Credentials[n] to
	// container n only, as a private file named by EnvCredentialFile (or, where the backend
	// has no file transfer, in EnvCredential), and never logs it, returns it, or puts it in
	// anything other users of the backend can read (a job description, a queue listing).
	// Empty when the coordinator mints none.
	Credentials []string
}

var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*$`)

// ValidateJobID checks that id is an acceptable job ID: 1 to MaxJobIDLength characters of
// [A-Za-z0-9_.-], not starting with '.'. Such IDs are safe as file names and in submit files.
func ValidateJobID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty job id", ErrInvalidRequest)
	case len(id) > MaxJobIDLength:
		return fmt.Errorf("%w: job id longer than %d characters", ErrInvalidRequest, MaxJobIDLength)
	case !jobIDPattern.MatchString(id):
		return fmt.Errorf("%w: job id %q has characters outside [A-Za-z0-9_.-] or starts with '.'", ErrInvalidRequest, id)
	}
	return nil
}

// Validate returns every problem of r joined, each wrapping ErrInvalidRequest, or nil.
func (r SubmitRequest) Validate() error {
	var errs []error
	if err := ValidateJobID(r.JobID); err != nil {
		errs = append(errs, err)
	}
	if r.Attempt < 0 || r.Attempt > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("%w: attempt %d not in 0..%d", ErrInvalidRequest, r.Attempt, math.MaxInt32))
	}
	if r.Containers < 1 || r.Containers > MaxContainers {
		errs = append(errs, fmt.Errorf("%w: containers %d not in 1..%d", ErrInvalidRequest, r.Containers, MaxContainers))
	}
	if r.CPUs < 0 || r.CPUs > math.MaxInt32 || r.MemoryBytes < 0 || r.DiskBytes < 0 ||
		!(r.RuntimeSeconds >= 0) || math.IsInf(r.RuntimeSeconds, 0) {
		errs = append(errs, fmt.Errorf("%w: resource request out of range", ErrInvalidRequest))
	}
	for k, v := range r.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			errs = append(errs, fmt.Errorf("%w: bad environment variable name %q", ErrInvalidRequest, k))
		}
		if strings.ContainsRune(v, 0) {
			errs = append(errs, fmt.Errorf("%w: environment variable %s contains NUL", ErrInvalidRequest, k))
		}
		if k == EnvContainerNumber || k == EnvAgentAttempt || k == EnvCredentialFile || k == EnvCredential {
			errs = append(errs, fmt.Errorf("%w: environment variable %s is set by the launcher", ErrInvalidRequest, k))
		}
	}
	if len(r.Credentials) != 0 && len(r.Credentials) != r.Containers {
		errs = append(errs, fmt.Errorf("%w: %d credentials for %d containers", ErrInvalidRequest, len(r.Credentials), r.Containers))
	}
	for i, c := range r.Credentials {
		// Never quote a credential in an error.
		if c == "" || len(c) > MaxCredentialLength || strings.IndexFunc(c, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			errs = append(errs, fmt.Errorf("%w: credential %d is empty, longer than %d bytes or not printable ASCII", ErrInvalidRequest, i, MaxCredentialLength))
		}
	}
	return errors.Join(errs...)
}

// SubmitResponse is the result of Submit.
type SubmitResponse struct {
	// Handle is the backend's opaque name for this launch; the coordinator stores it and
	// passes it back in JobRef.
	Handle string
	// Existing is true when an earlier Submit with the same (JobID, Attempt) was found and
	// nothing new was started.
	Existing bool
}

// JobRef names a launched job: its ID and the Handle Submit returned.
type JobRef struct {
	JobID  string
	Handle string
}

// ContainerState is the backend's view of one container.
type ContainerState string

// The container states.
const (
	// StateIdle: accepted by the backend, not running yet (queued, being started).
	StateIdle ContainerState = "idle"
	// StateRunning: the agent process runs (or is being stopped after Cancel).
	StateRunning ContainerState = "running"
	// StateHeld: the backend keeps the container stopped and needs an admin (HTCondor hold).
	StateHeld ContainerState = "held"
	// StateExited: the agent ended by itself; ExitCode says how.
	StateExited ContainerState = "exited"
	// StateRemoved: the container was canceled and has ended.
	StateRemoved ContainerState = "removed"
	// StateUnknown: the backend cannot tell (state lost, process vanished unrecorded); Reason
	// says why.
	StateUnknown ContainerState = "unknown"
)

// Terminal reports whether a container in state s will not run again by itself.
func (s ContainerState) Terminal() bool { return s == StateExited || s == StateRemoved }

// ContainerStatus is one container of a JobStatus.
type ContainerStatus struct {
	// Container is the container number.
	Container int
	State     ContainerState
	// ExitCode is the agent's exit code once known (128+signal when a signal ended it).
	ExitCode *int
	// Reason explains the state in words (hold reason, signal, why unknown).
	Reason string
	// Attempt is the value the container's agent got in EnvAgentAttempt.
	Attempt string
	// Started and Ended are zero when unknown.
	Started, Ended time.Time
	// HoldCode is the backend's numeric reason for StateHeld (HTCondor HoldReasonCode); 0
	// when none or unknown.
	HoldCode int
	// Usage is what the backend accounted to the container (HTCondor: RemoteUserCpu +
	// RemoteSysCpu, CommittedTime, MemoryUsage, RequestCpus); nil when it records nothing.
	Usage *Usage
	// Details is the backend's own record of the container as a JSON object (HTCondor: the
	// ClassAd subset the CTS runner_status shows), for admins; nil when none.
	Details []byte
}

// Usage is the accounting of one container run.
type Usage struct {
	// CPUSeconds is user plus system CPU time.
	CPUSeconds float64
	// WallSeconds is how long the container ran.
	WallSeconds float64
	// MaxMemoryBytes is the peak memory; 0 when unknown.
	MaxMemoryBytes int64
	// CPUs is the number of CPUs the container was given; 0 when unknown.
	CPUs int
}

// JobUsage is the accounting of a whole job, computed from its containers as the CTS does.
// Nil fields are unknown.
type JobUsage struct {
	// CPUHours is the sum of the containers' CPU seconds / 3600; nil when that sum is 0.
	CPUHours *float64
	// CPUFactor is the CPU seconds divided by the sum over containers of wall seconds × CPUs;
	// nil when no container has wall time.
	CPUFactor *float64
	// MaxMemory is the largest peak memory of any container in bytes; nil when none is known.
	MaxMemory *int64
}

// SumUsage computes the job accounting from the containers' Usage (containers without Usage
// are skipped).
func SumUsage(cs []ContainerStatus) JobUsage {
	var cpu, committed float64
	var maxMem int64
	for _, c := range cs {
		if c.Usage == nil {
			continue
		}
		cpu += c.Usage.CPUSeconds
		committed += c.Usage.WallSeconds * float64(max(c.Usage.CPUs, 1))
		maxMem = max(maxMem, c.Usage.MaxMemoryBytes)
	}
	var u JobUsage
	if cpu > 0 {
		h := cpu / 3600
		u.CPUHours = &h
	}
	if committed > 0 {
		f := cpu / committed
		u.CPUFactor = &f
	}
	if maxMem > 0 {
		u.MaxMemory = &maxMem
	}
	return u
}

// JobStatus is the backend's view of one job.
type JobStatus struct {
	JobID string
	// Containers holds one entry per container number, in order.
	Containers []ContainerStatus
	// Err is set when this job could not be reported; Containers is then empty. A job the
	// backend does not know (never submitted, cleaned up, forgotten by the backend) gives an
	// error wrapping ErrNotFound; a malformed JobRef one wrapping ErrInvalidRequest.
	Err error
}

// Launcher starts and tracks the agents of jobs on one compute backend. The coordinator calls
// it from several goroutines at once; implementations must be safe for concurrent use.
//
// Every method honours ctx: when it ends, the method returns promptly with ctx's error, and
// what it already did stays done (Submit and Cancel are safe to repeat).
type Launcher interface {
	// Info names the plugin, its API version and capabilities. It is called first, before
	// Configure, and must not depend on configuration.
	Info(ctx context.Context) (Info, error)

	// Configure hands the plugin its own opaque configuration (JSON), never the host's whole
	// configuration. It is called once after Info and before any other call, and may be called
	// again to reconfigure. Invalid configuration returns an error wrapping ErrInvalidConfig
	// naming every problem; the previous configuration then stays in force. Calls other than
	// Info before a successful Configure fail with ErrNotConfigured.
	Configure(ctx context.Context, config []byte) error

	// Submit starts the job's containers. It is idempotent per (JobID, Attempt): when that key
	// was submitted before (also by an earlier plugin process), it starts nothing and returns
	// the same Handle with Existing=true. The same key with a different number of containers
	// fails with ErrConflict. An invalid request fails with ErrInvalidRequest, a backend that
	// cannot be reached with ErrUnavailable. Submit returns once the backend has accepted the
	// containers; it does not wait for them to run.
	Submit(ctx context.Context, req SubmitRequest) (SubmitResponse, error)

	// Status reports the given jobs in one batched call: the result has one entry per ref, in
	// the same order. Per-job failures (ErrNotFound for an unknown job) are in JobStatus.Err;
	// the call itself fails only when nothing can be reported (ErrNotConfigured,
	// ErrUnavailable). Status has no side effects.
	Status(ctx context.Context, jobs []JobRef) ([]JobStatus, error)

	// Cancel removes the job's containers gracefully: each agent gets SIGTERM, then SIGKILL
	// after the backend's grace period. It returns once removal is under way, not when the
	// containers have ended: Status reports StateRemoved when they have. It is idempotent: a
	// finished, already canceled, cleaned up or unknown job is success.
	Cancel(ctx context.Context, ref JobRef) error
}

// Cleaner is the optional Cleanup capability (CapabilityCleanup): it removes what the backend
// keeps of a finished job (work directories, logs, queue entries).
type Cleaner interface {
	// Cleanup forgets a job whose containers have all ended; Status then reports it as not
	// found. It is idempotent (an unknown job is success) and fails with ErrConflict while a
	// container still runs (Cancel first).
	Cleanup(ctx context.Context, ref JobRef) error
}
