package client

import (
	"encoding/json"
	"time"

	"github.com/kbase/cts/shared/job"
)

// ServiceInfo is GET /.
type ServiceInfo struct {
	ServiceName string    `json:"service_name"`
	Version     string    `json:"version"`
	GitHash     string    `json:"git_hash"`
	ServerTime  time.Time `json:"server_time"`
	Notes       string    `json:"notes,omitempty"`
}

// AllowedPath is an S3 path prefix the user may write outputs to.
type AllowedPath struct {
	Path string `json:"path"`
	Perm string `json:"perm"`
}

// WhoAmI is GET /whoami.
type WhoAmI struct {
	User string `json:"user"`
	// Roles holds "full_admin" for a service administrator.
	Roles        []string      `json:"roles"`
	AllowedPaths []AllowedPath `json:"allowed_paths"`
}

// IsAdmin reports whether the user is a full service administrator.
func (w *WhoAmI) IsAdmin() bool {
	for _, r := range w.Roles {
		if r == "full_admin" {
			return true
		}
	}
	return false
}

// Site is one compute site of GET /sites.
type Site struct {
	Cluster           string   `json:"cluster"`
	Nodes             *int     `json:"nodes"`
	CPUsPerNode       int      `json:"cpus_per_node"`
	MemoryPerNodeGB   float64  `json:"memory_per_node_gb"`
	MaxRuntimeMin     float64  `json:"max_runtime_min"`
	Notes             []string `json:"notes"`
	Active            bool     `json:"active"`
	Available         bool     `json:"available"`
	UnavailableReason *string  `json:"unavailable_reason"`
}

// Transition is one state change of a job or container. TransID and NotifSent are shown to
// admins only.
type Transition struct {
	State     job.State `json:"state"`
	Time      time.Time `json:"time"`
	TransID   string    `json:"trans_id,omitempty"`
	NotifSent *bool     `json:"notif_sent,omitempty"`
}

// JobStatus is GET /jobs/{id}/status, and the common part of every job view.
type JobStatus struct {
	ID          string         `json:"id"`
	User        string         `json:"user"`
	State       job.State      `json:"state"`
	AdminMeta   map[string]any `json:"admin_meta"`
	Transitions []Transition   `json:"transition_times"`
}

// S3File is an S3 object with its CRC64/NVME.
type S3File struct {
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme"`
}

// Image is a registered image.
type Image struct {
	Name                     string    `json:"name"`
	Digest                   string    `json:"digest"`
	Tag                      string    `json:"tag,omitempty"`
	Entrypoint               []string  `json:"entrypoint"`
	RefdataID                string    `json:"refdata_id,omitempty"`
	DefaultRefdataMountPoint string    `json:"default_refdata_mount_point,omitempty"`
	RegisteredBy             string    `json:"registered_by"`
	RegisteredOn             time.Time `json:"registered_on"`
	URLs                     []string  `json:"urls,omitempty"`
	UsageNotes               string    `json:"usage_notes,omitempty"`
}

// Job is GET /jobs/{id} (and, with the admin fields, GET /admin/jobs/{id}); list routes give
// the same without input_files and outputs.
type Job struct {
	JobStatus
	Input           JobInput `json:"job_input"`
	Image           Image    `json:"image"`
	InputFileCount  int      `json:"input_file_count"`
	CPUHours        *float64 `json:"cpu_hours,omitempty"`
	CPUFactor       *float64 `json:"cpu_factor,omitempty"`
	MaxMemory       *int64   `json:"max_memory,omitempty"`
	OutputFileCount *int     `json:"output_file_count,omitempty"`
	// Error is the user-facing reason of a failed job.
	Error string `json:"error,omitempty"`
	// LogPath is the S3 folder of the container logs, set once the job has ended.
	LogPath string   `json:"logpath,omitempty"`
	Outputs []S3File `json:"outputs,omitempty"`

	// Admin view only.
	Cleaned    *bool           `json:"cleaned,omitempty"`
	AdminError string          `json:"admin_error,omitempty"`
	Traceback  string          `json:"traceback,omitempty"`
	Launch     json.RawMessage `json:"launch,omitempty"`
}

// SubJob is one container of a job (GET /admin/jobs/{id}/container).
type SubJob struct {
	ID          string       `json:"id"`
	SubID       int          `json:"sub_id"`
	State       job.State    `json:"state"`
	Transitions []Transition `json:"transition_times"`
	ExitCode    *int         `json:"exit_code"`
	Outputs     []S3File     `json:"outputs,omitempty"`
	AdminError  string       `json:"admin_error,omitempty"`
	Traceback   string       `json:"traceback,omitempty"`
}
