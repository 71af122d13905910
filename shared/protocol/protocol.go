// Package protocol defines the messages the agent and the coordinator exchange over the agent
// websocket (endpoint Path). It owns the wire format and its version, nothing else: no I/O.
//
// A session, one websocket per agent attempt:
//
//	agent                                   coordinator
//	  ── Hello{job, container, attempt} ──►   (the agent's credential checked on the HTTP
//	                                           upgrade, then against the hello)
//	  ◄── Assignment ─────────────────────    (or Fatal, then close)
//	  ◄── Credential ─────────────────────    (a session credential, renewed periodically)
//	  ── Event{seq:1, job_submitting} ────►
//	  ◄── Ack{seq:1} ─────────────────────    (applied exactly once per attempt+seq)
//	  ── Log{stream, lines} ──────────────►   (not acknowledged, may be dropped)
//	  ── Progress{phase, bytes, files} ───►   (not acknowledged, may be dropped)
//	  ◄── Cancel ─────────────────────────    (the job is canceling: stop, upload logs, report)
//	  ── Event{seq:n, complete|error} ────►
//	  ◄── Ack{seq:n} ─────────────────────
//
// Every message is one JSON text frame: an Envelope whose Type names the body's Go type.
// Events carry a per-attempt sequence number starting at 1; the coordinator acknowledges every
// event it has applied or had already applied, so the agent may resend unacknowledged events
// after a reconnect without fear of double application. Heartbeats are websocket ping/pong.
//
// Forward compatibility: a new best-effort message type (one that is never acknowledged, such
// as Progress) may be added without bumping Version. Decode returns an error matching
// ErrUnknownType for a type it does not know, and a receiver must skip such a frame rather
// than end the session: an older coordinator then simply ignores what a newer agent adds.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kbase/cts/shared/job"
)

// Version is the protocol version; the endpoint path carries it. Bump it only for changes an
// older peer would misread.
const Version = 1

// Path is the coordinator's websocket endpoint for agents, relative to the service root.
const Path = "/agent/v1/ws"

// Message types.
const (
	TypeHello      = "hello"
	TypeAssignment = "assignment"
	TypeEvent      = "event"
	TypeAck        = "ack"
	TypeLog        = "log"
	TypeCancel     = "cancel"
	TypeFatal      = "fatal"
	TypeProgress   = "progress"
	TypeCredential = "credential"
)

// ErrUnknownType is matched (errors.Is) by Decode's error for a frame whose type this version
// does not know: receivers skip such frames (see the package comment).
var ErrUnknownType = errors.New("protocol: unknown message type")

// Envelope is the frame of every message: Type selects how Body decodes.
type Envelope struct {
	V    int             `json:"v"`
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// Hello is the agent's first message: which container of which job this attempt runs.
type Hello struct {
	JobID     string `json:"job_id"`
	Container int    `json:"container"`
	// Attempt names this run of the container, unique per launch (HTCondor "cluster.proc",
	// or a local identifier). Sequence numbers are per attempt.
	Attempt      string `json:"attempt"`
	AgentVersion string `json:"agent_version,omitempty"`
	// DryRun marks an admin's `cts-agent --dry-run`: the coordinator answers with the
	// assignment and records nothing (no heartbeat, no event is accepted).
	DryRun bool `json:"dry_run,omitempty"`
}

// InputFile is one input of a container: where it is in S3, its checksum, and where the
// container sees it.
type InputFile struct {
	// S3Path is "bucket/key".
	S3Path string `json:"s3_path"`
	// CRC64NVME is the base64 CRC64/NVME of the object, as recorded at submit.
	CRC64NVME string `json:"crc64nvme"`
	// Size is the object's size in bytes at submit.
	Size int64 `json:"size"`
	// RelPath is the path below the input mount point (e.g. "dir/file1"); never absolute,
	// never containing "..".
	RelPath string `json:"rel_path"`
}

// Assignment is everything an agent needs to run its container. It carries no secrets.
type Assignment struct {
	JobID     string `json:"job_id"`
	Container int    `json:"container"`
	// Image is "name@sha256:..." : always pinned by digest.
	Image string `json:"image"`
	// Command is the full argv (entrypoint followed by the generated arguments), exec form:
	// no shell ever interprets it.
	Command []string `json:"command"`
	// Env is "KEY=value" entries for the container.
	Env              []string    `json:"env,omitempty"`
	Inputs           []InputFile `json:"inputs"`
	InputMountPoint  string      `json:"input_mount_point"`
	OutputMountPoint string      `json:"output_mount_point"`
	// OutputDir is "bucket/prefix/" ; outputs are uploaded to OutputDir + path below the mount
	// (prefixed by "<container>/" when Declobber).
	OutputDir string `json:"output_dir"`
	Declobber bool   `json:"declobber,omitempty"`
	// LogDir is "bucket/prefix/" where container-<n>-stdout.txt and -stderr.txt go.
	LogDir string `json:"log_dir"`
	CPUs   int    `json:"cpus"`
	// MemoryBytes is the container's memory limit.
	MemoryBytes int64 `json:"memory_bytes"`
	// RuntimeSeconds is the wall-clock limit of the container process.
	RuntimeSeconds float64 `json:"runtime_seconds"`
	// RefdataID and RefdataMountPoint are set when the image needs reference data.
	RefdataID         string `json:"refdata_id,omitempty"`
	RefdataMountPoint string `json:"refdata_mount_point,omitempty"`
	// NextSeq is the sequence number the coordinator expects next from this attempt (1 for a
	// new attempt); events below it were already applied.
	NextSeq int64 `json:"next_seq"`
	// ContainerState is the container's state when the hello arrived, and ContainerAttempt
	// the attempt that last reported for it (empty before the first report). A new attempt
	// can start only a container that is still download_submitted: the agent checks this
	// before it downloads anything. (Empty from a coordinator older than this field.)
	ContainerState   job.State `json:"container_state,omitempty"`
	ContainerAttempt string    `json:"container_attempt,omitempty"`
}

// OutputFile is an uploaded output with its checksum.
type OutputFile struct {
	// File is "bucket/key".
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme"`
}

// MaxInlineOutputs is the most outputs a complete event carries in Outputs. An agent with
// more writes them to an outputs manifest in S3 and sends its OutputsManifest instead, so
// output lists of any size fit the coordinator's frame limit and memory.
const MaxInlineOutputs = 1000

// ManifestFile is the name of container n's outputs manifest in the job's log folder
// (Assignment.LogDir): the only place a coordinator accepts it, as users cannot write there.
func ManifestFile(container int) string {
	return fmt.Sprintf("container-%d-outputs.jsonl", container)
}

// ManifestEntry is one line of an outputs manifest: a JSON object per line, the lines
// sorted by File in strictly increasing byte order (so a reader finds duplicates and merges
// several manifests with constant memory), each ended by '\n'.
type ManifestEntry struct {
	// File is "bucket/key", as in OutputFile.
	File      string `json:"file"`
	Size      int64  `json:"size"`
	CRC64NVME string `json:"crc64nvme"`
}

// OutputsManifest locates and seals an outputs manifest: the coordinator reads the object
// at File and accepts it only if its bytes have CRC64NVME and Size and it lists Count
// outputs.
type OutputsManifest struct {
	// File is "bucket/key": <LogDir>ManifestFile(container).
	File      string `json:"file"`
	Count     int64  `json:"count"`
	Size      int64  `json:"size"`
	CRC64NVME string `json:"crc64nvme"`
}

// Event reports a container state change. The allowed states and their fields:
//
//	job_submitting               inputs downloaded and verified
//	job_submitted                the container process runs
//	upload_submitting            the container exited 0 (ExitCode set)
//	error_processing_submitting  the container exited non-zero (ExitCode set)
//	upload_submitted             outputs are being uploaded
//	error_processing_submitted   logs are being uploaded after a failure
//	complete                     outputs uploaded and verified (Outputs set, or
//	                             OutputsManifest for more than MaxInlineOutputs)
//	error                        AdminError set (always), Error (user-facing) optional
type Event struct {
	Seq      int64        `json:"seq"`
	State    job.State    `json:"state"`
	Time     time.Time    `json:"time"`
	ExitCode *int         `json:"exit_code,omitempty"`
	Outputs  []OutputFile `json:"outputs,omitempty"`
	// OutputsManifest replaces Outputs when the container wrote more than MaxInlineOutputs
	// files. (A coordinator older than this field sees no outputs: upgrade coordinators first.)
	OutputsManifest *OutputsManifest `json:"outputs_manifest,omitempty"`
	// Error is the message for the user; AdminError the detailed one for admins.
	Error      string `json:"error,omitempty"`
	AdminError string `json:"admin_error,omitempty"`
	Traceback  string `json:"traceback,omitempty"`
	// OOMKilled is true when the container was killed for exceeding its memory limit.
	OOMKilled bool `json:"oom_killed,omitempty"`
}

// Ack acknowledges that the event with Seq is applied (now or earlier).
type Ack struct {
	Seq int64 `json:"seq"`
}

// Log carries live container output lines. Best effort: never acknowledged.
type Log struct {
	Stream string   `json:"stream"` // "stdout" or "stderr"
	Lines  []string `json:"lines"`
}

// Progress phases.
const (
	PhaseDownload = "download"
	PhaseUpload   = "upload"
)

// Progress reports how far the agent's current transfer phase is: the inputs being downloaded
// or the outputs being uploaded. Best effort: never acknowledged, may be dropped, sent at most
// about once a second and once at the end of each phase.
type Progress struct {
	// Phase is PhaseDownload or PhaseUpload.
	Phase      string `json:"phase"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
	FilesDone  int    `json:"files_done"`
	FilesTotal int    `json:"files_total"`
}

// Credential is a session credential the coordinator gives the agent after its hello and
// again before the previous one expires: the agent presents the newest one (in the
// Authorization header) when it reconnects. It is bound to the agent's job, container, launch
// and attempt. Best effort: never acknowledged; an agent that does not know it keeps its
// launch credential. A secret: never log it.
type Credential struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// Cancel tells the agent that its job is canceling.
type Cancel struct {
	Reason string `json:"reason,omitempty"`
}

// Fatal tells the agent the coordinator refuses it (bad hello, unknown job, job already
// terminal); the agent must not retry.
type Fatal struct {
	Message string `json:"message"`
}

// Encode wraps a message body in an Envelope and marshals it. The type is derived from the
// body's Go type.
func Encode(body any) ([]byte, error) {
	var t string
	switch body.(type) {
	case Hello, *Hello:
		t = TypeHello
	case Assignment, *Assignment:
		t = TypeAssignment
	case Event, *Event:
		t = TypeEvent
	case Ack, *Ack:
		t = TypeAck
	case Log, *Log:
		t = TypeLog
	case Cancel, *Cancel:
		t = TypeCancel
	case Fatal, *Fatal:
		t = TypeFatal
	case Progress, *Progress:
		t = TypeProgress
	case Credential, *Credential:
		t = TypeCredential
	default:
		return nil, fmt.Errorf("protocol: unknown message type %T", body)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", t, err)
	}
	return json.Marshal(Envelope{V: Version, Type: t, Body: b})
}

// Decode parses a frame and returns its body as a pointer to the matching message type
// (*Hello, *Assignment, ...). A frame of another protocol version is an error; a frame of an
// unknown type is an error matching ErrUnknownType.
func Decode(frame []byte) (any, error) {
	var env Envelope
	if err := json.Unmarshal(frame, &env); err != nil {
		return nil, fmt.Errorf("protocol: decode envelope: %w", err)
	}
	if env.V != Version {
		return nil, fmt.Errorf("protocol: version %d, want %d", env.V, Version)
	}
	var body any
	switch env.Type {
	case TypeHello:
		body = &Hello{}
	case TypeAssignment:
		body = &Assignment{}
	case TypeEvent:
		body = &Event{}
	case TypeAck:
		body = &Ack{}
	case TypeLog:
		body = &Log{}
	case TypeCancel:
		body = &Cancel{}
	case TypeFatal:
		body = &Fatal{}
	case TypeProgress:
		body = &Progress{}
	case TypeCredential:
		body = &Credential{}
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownType, env.Type)
	}
	if err := json.Unmarshal(env.Body, body); err != nil {
		return nil, fmt.Errorf("protocol: decode %s: %w", env.Type, err)
	}
	return body, nil
}
