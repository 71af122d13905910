// Package supervisor is the local launcher's per-container supervisor (Supervise), and the
// on-disk records it shares with the plugin (the files under a container's directory, how
// to read and write them, and the process checks behind them). It runs as its own small
// binary, cmd/cts-local-supervisor, so it must not import the plugin machinery
// (shared/launcher, go-plugin, gRPC): a supervisor starts for every container, on the job's
// critical path.
package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The on-disk state, all under Config.WorkDir. It is the only state: a restarted plugin (after a
// coordinator crash) reads it back, and the supervisors keep it current while no plugin runs.
//
//	<work_dir>/<job_id>/<attempt>/request.json       the accepted submit (RequestRecord)
//	<work_dir>/<job_id>/<attempt>/<n>/spawned        the supervisor as Submit started it (ProcRecord)
//	                                 /claim           created O_EXCL by the one supervisor of container n
//	                                 /supervisor.pid  the supervisor (ProcRecord)
//	                                 /pid             the agent, leader of its process group (ProcRecord)
//	                                 /cancel          Cancel was requested (CancelRecord)
//	                                 /exit            the agent ended (ExitRecord), written last
//	                                 /agent.out, /agent.err, /supervisor.log
//
// Records are JSON, written to a temporary file and renamed into place, so a reader sees a
// whole record or none.
const (
	RequestFile    = "request.json"
	SpawnedFile    = "spawned"
	ClaimFile      = "claim"
	SupervisorFile = "supervisor.pid"
	PIDFile        = "pid"
	CancelFile     = "cancel"
	ExitFile       = "exit"
	StdoutFile     = "agent.out"
	StderrFile     = "agent.err"
	SupervisorLog  = "supervisor.log"
)

// RequestRecord is request.json: what was submitted under (job, attempt).
type RequestRecord struct {
	JobID      string    `json:"job_id"`
	Attempt    int       `json:"attempt"`
	Containers int       `json:"containers"`
	Submitted  time.Time `json:"submitted"`
}

// ProcRecord names a process: pid plus its kernel start time (see ProcStart).
type ProcRecord struct {
	PID       int       `json:"pid"`
	ProcStart uint64    `json:"proc_start"`
	Started   time.Time `json:"started"`
}

// CancelRecord is the cancel marker.
type CancelRecord struct {
	Requested time.Time `json:"requested"`
}

// ExitRecord is how the agent ended.
type ExitRecord struct {
	// ExitCode is the agent's exit code, 128+signal when a signal ended it, nil when unknown.
	ExitCode *int   `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	// Canceled is true when the agent ended after Cancel.
	Canceled bool      `json:"canceled"`
	Reason   string    `json:"reason"`
	Started  time.Time `json:"started,omitzero"`
	Ended    time.Time `json:"ended"`
}

// JobDir is the directory of one (job, attempt).
func JobDir(workDir, jobID string, attempt int) string {
	return filepath.Join(workDir, jobID, strconv.Itoa(attempt))
}

// ContainerDir is the directory of container n of a job directory.
func ContainerDir(JobDir string, n int) string {
	return filepath.Join(JobDir, strconv.Itoa(n))
}

// WriteRecord writes v as JSON to path atomically (temporary file, then rename).
func WriteRecord(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadRecord reads the JSON record at path into v. A missing file gives an error wrapping
// os.ErrNotExist.
func ReadRecord(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// exists reports whether path exists (an error other than not-exist counts as existing, so a
// permission problem never makes us start a second agent).
func Exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, os.ErrNotExist)
}
