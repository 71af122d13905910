// Package container runs a job's container on a worker node. It owns the agent's container
// runtime contract (Runtime, Spec, Result) and its `oci` implementation: images are pulled by
// digest only into a local OCI-layout cache with every blob verified against its digest,
// unpacked once per node through os.Root (so a hostile layer cannot write outside the root
// file system) into a shared tree that each container mounts read-only under an overlay of
// its own (rootfs.go), and run by runc with every capability dropped, no new privileges, a
// read-only root, resource limits and no network.
//
// It must not talk to the coordinator, S3 or anything of the job's protocol, and it must never
// signal the runtime process (runc) itself: killing `runc run` orphans the container. It stops a
// container only with the runtime's own kill/delete sequence.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Network modes for Spec.Network.
const (
	// NetworkNone gives the container a fresh network namespace with only the loopback device.
	NetworkNone = "none"
	// NetworkHost shares the node's network namespace.
	NetworkHost = "host"
)

// DefaultKillGrace is the time between SIGTERM and SIGKILL when Spec.KillGrace is 0.
const DefaultKillGrace = 10 * time.Second

// DefaultPidsLimit bounds a container's processes and threads when Spec.PidsLimit is 0.
const DefaultPidsLimit = 4096

// Mount binds a host path into the container.
type Mount struct {
	// Source is the absolute host path.
	Source string
	// Destination is the absolute path inside the container.
	Destination string
	// ReadOnly mounts the source read-only.
	ReadOnly bool
}

// Spec describes one container run.
type Spec struct {
	// ID is the runtime container id, unique on the node, e.g. "cts-<job8>-<n>-<attempt8>".
	// Letters, digits and "_+-." only.
	ID string
	// Image is "host/name@sha256:...": always pinned by digest, and pulled before Run.
	Image string
	// Command is the exec-form argv (no shell). Command[0] is resolved inside the image:
	// absolute, or through the PATH of the container's environment.
	Command []string
	// Env ("KEY=value") is appended to the image config's environment; a key given here
	// replaces the image's value.
	Env []string
	// Mounts are bind mounts, applied parents first.
	Mounts []Mount
	// CPUs limits CPU time (CPUs × one CPU, via the CFS quota); 0 = no limit.
	CPUs float64
	// MemoryBytes limits memory (swap included); 0 = no limit.
	MemoryBytes int64
	// PidsLimit bounds the container's processes and threads (DefaultPidsLimit when 0).
	PidsLimit int64
	// Timeout is the wall-clock limit from start; 0 = none. When it passes the container is
	// stopped (TERM, KillGrace, KILL) and Result.TimedOut is set.
	Timeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL (DefaultKillGrace when 0).
	KillGrace time.Duration
	// Network is NetworkNone (the default when "") or NetworkHost.
	Network string
	// Stdout and Stderr receive the container's streams (discarded when nil). When the
	// container cannot start, Stderr also receives the runtime's error line.
	Stdout, Stderr io.Writer
}

// grace is the time between SIGTERM and SIGKILL when the container is stopped: KillGrace, or
// DefaultKillGrace when it is 0.
func (s Spec) grace() time.Duration {
	if s.KillGrace == 0 {
		return DefaultKillGrace
	}
	return s.KillGrace
}

// deadline returns a channel that receives once Timeout has passed (nil, never, without a
// Timeout) and the function that releases its timer.
func (s Spec) deadline() (timeout <-chan time.Time, release func()) {
	if s.Timeout <= 0 {
		return nil, func() {}
	}
	t := time.NewTimer(s.Timeout)
	return t.C, func() { t.Stop() }
}

// Result is how a container ended.
type Result struct {
	// ExitCode is the container process's exit status, 128+signal when a signal killed it;
	// -1 when the run was canceled before the container started.
	ExitCode int
	// OOMKilled reports that the kernel's OOM killer killed a process of the container
	// because of its memory limit.
	OOMKilled bool
	// TimedOut reports that Spec.Timeout stopped the container.
	TimedOut bool
	// Canceled reports that the caller's context stopped the container (or kept it from
	// starting).
	Canceled bool
	// Started and Ended bracket the container's run.
	Started, Ended time.Time
}

// Runtime runs job containers on this node.
type Runtime interface {
	// Pull fetches image (pinned by digest) into the node's cache and verifies every blob
	// against its digest. It is idempotent and cheap when the image is already cached, and
	// safe to call concurrently, also from several agents sharing the cache. ctx bounds the
	// whole pull.
	Pull(ctx context.Context, image string) error
	// Run creates the container from a pulled image, runs it, and blocks until it has exited
	// and been deleted (a Waiter returns once it has exited and leaves its deletion for
	// Wait, see Waiter). Canceling ctx stops the container gracefully (TERM, grace, KILL,
	// delete) and returns with Result.Canceled. A non-nil error means the system failed
	// (cache, unpack, runtime), never that the user's program failed: that is in Result.
	Run(ctx context.Context, spec Spec) (Result, error)
	// Reap finds what dead agents of this node left behind in this runtime (containers, their
	// runtime state, bundles, cgroups), never what a live agent owns, and removes it when
	// apply is set. It returns what it removed (or would remove). Agents call it at start;
	// `cts-agent reap` lists it for admins.
	Reap(ctx context.Context, apply bool) ([]Leftover, error)
	// Remove kills and deletes the container id with its runtime state and bundle, whoever
	// owns it; a missing container is not an error. An agent restarted for the same attempt
	// calls it first: the container of its previous process cannot be picked up.
	Remove(ctx context.Context, id string) error
	// Known reports whether the runtime still holds a container named id (running or not).
	Known(ctx context.Context, id string) bool
	// PruneImages bounds the images agents keep on this node: it removes those unused for
	// maxAge, then the least recently used while they take more than maxBytes, never one a
	// live agent pulled (Pull holds it until the agent exits). It returns what it removed.
	PruneImages(ctx context.Context, maxBytes int64, maxAge time.Duration) ([]PrunedImage, error)
}

// Waiter is implemented by a Runtime whose Run may return before the container it ran is
// deleted: the container has exited by itself and its Result is final, and its deletion (for
// oci a `runc delete`, the cgroups, the bundle) is left for Wait, so that it takes no CPU from
// the job's uploads and final report. An agent calls Wait once its final state is reported,
// before it exits; an agent that dies first leaves a stopped container that the next agent's
// Reap removes. Until Wait, the exited container holds no process, only its runtime state.
type Waiter interface {
	Wait()
}

// Leftover is one thing a dead agent left in a runtime.
type Leftover struct {
	// Kind is "container", "bundle", "cgroup" or "create" (an in-flight Docker create).
	Kind string
	// ID names it: the container ID, or the path of a bundle or cgroup.
	ID string
	// Detail says whose it was or why it counts as left over.
	Detail string
}

func (l Leftover) String() string { return fmt.Sprintf("%-12s %s (%s)", l.Kind, l.ID, l.Detail) }

// Sentinel errors; test with errors.Is.
var (
	// ErrNotPinned: the image reference carries no digest (a tag alone can move).
	ErrNotPinned = errors.New("image reference is not pinned by digest")
	// ErrNotPulled: Run was called for an image that is not in the cache.
	ErrNotPulled = errors.New("image not pulled")
	// ErrInvalidSpec: the Spec is malformed (see the wrapped message).
	ErrInvalidSpec = errors.New("invalid container spec")
	// ErrDigestMismatch: a blob's content does not match its digest (registry or cache).
	ErrDigestMismatch = errors.New("blob digest mismatch")
	// ErrUnsafeLayer: a layer entry tries to leave the root file system or is malformed.
	ErrUnsafeLayer = errors.New("unsafe layer entry")
	// ErrTooLarge: the unpacked image exceeds the configured size bound.
	ErrTooLarge = errors.New("unpacked image too large")
	// ErrImageUnavailable: the registry did not deliver the image (unknown name or digest,
	// access refused, registry unreachable). The wrapped message says which.
	ErrImageUnavailable = errors.New("image not available from its registry")
	// ErrEngineUnavailable: the container runtime itself cannot be used on this node (the
	// Docker engine does not answer, runc is missing or failing).
	ErrEngineUnavailable = errors.New("container runtime not available on this node")
	// ErrNoSpace: the node's disk filled up while pulling or unpacking the image.
	ErrNoSpace = errors.New("no space left on the node's disk")
)

// StartError reports that the runtime could not start the container's process (for example
// the command is not found in the image, or a mount source is missing): the user's program
// never ran. Message is the runtime's own error text.
type StartError struct {
	ID      string
	Message string
}

func (e *StartError) Error() string {
	return fmt.Sprintf("start container %s: %s", e.ID, e.Message)
}
