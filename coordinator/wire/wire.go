// Package wire holds the models of the coordinator's REST API, once: the response and
// request bodies the server (internal/api) encodes and decodes, the Go client
// (coordinator/client) sends and reads, and the OpenAPI document (GET /openapi.json)
// describes, since the document is generated from these very types. A field added here is in
// all three at once.
//
// The JSON follows the CTS conventions: null fields omitted where the Python service omits
// them (omitempty), times ISO 8601 UTC with a Z (Timestamp), memory in bytes, runtimes ISO 8601
// durations in views. Request bodies accept what the service accepts (JobInput's Size,
// Duration and InputFile take either form).
//
// It must hold no behaviour beyond JSON encoding and must not import the coordinator's
// internal packages (the client imports it).
package wire

import (
	"encoding/json"
	"time"

	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/staging"
)

// Timestamp is a time as the CTS renders it: ISO 8601 UTC with a Z, with microseconds when
// the fraction is not zero ("2024-10-24T22:35:40Z", "2024-10-24T22:35:40.123000Z"). It reads
// any RFC 3339 time. The embedded time.Time gives it every method of a time.
type Timestamp struct{ time.Time }

// At returns the Timestamp of t.
func At(t time.Time) Timestamp { return Timestamp{t} }

// FormatTime renders t as the CTS does.
func FormatTime(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05Z")
	}
	return t.Format("2006-01-02T15:04:05.000000Z")
}

// MarshalJSON renders the timestamp.
func (t Timestamp) MarshalJSON() ([]byte, error) { return json.Marshal(FormatTime(t.Time)) }

// String renders the timestamp as MarshalJSON does, without the quotes.
func (t Timestamp) String() string { return FormatTime(t.Time) }

// UnmarshalJSON reads an RFC 3339 timestamp.
func (t *Timestamp) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &t.Time) }

// JSONSchema describes a Timestamp: an ISO 8601 UTC date-time with a Z.
func (Timestamp) JSONSchema() map[string]any {
	return map[string]any{"type": "string", "format": "date-time", "example": "2024-10-24T22:35:40.123000Z"}
}

// ServiceInfo is GET /.
type ServiceInfo struct {
	ServiceName string    `json:"service_name"`
	Version     string    `json:"version"`
	GitHash     string    `json:"git_hash"`
	ServerTime  Timestamp `json:"server_time"`
	Notes       string    `json:"notes"`
}

// AllowedPath is an S3 folder the user's jobs may use: Perm "write" (read and write) or
// "read". The list is empty when the site sets no access rules: jobs may then use anything
// the service can reach but the log folder.
type AllowedPath struct {
	Path string `json:"path"`
	Perm string `json:"perm" enum:"read,write"`
}

// WhoAmI is GET /whoami. Roles holds "full_admin" or nothing.
type WhoAmI struct {
	User         string        `json:"user"`
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

// Site is a compute site as GET /sites shows it: its limits, whether an admin left it active,
// and whether its launcher is available (with the reason when it is not).
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

// Sites is GET /sites.
type Sites struct {
	Sites []Site `json:"sites"`
}

// SubmitJobResponse is POST /jobs.
type SubmitJobResponse struct {
	JobID string `json:"job_id"`
}

// JobImage is the image a job runs: a registered image without its usage fields.
type JobImage struct {
	Name                     string    `json:"name"`
	Digest                   string    `json:"digest"`
	Tag                      string    `json:"tag,omitempty"`
	Entrypoint               []string  `json:"entrypoint"`
	RefdataID                string    `json:"refdata_id,omitempty"`
	DefaultRefdataMountPoint string    `json:"default_refdata_mount_point,omitempty"`
	RegisteredBy             string    `json:"registered_by"`
	RegisteredOn             Timestamp `json:"registered_on"`
}

// Image is a registered image (GET /images/{id}, POST /admin/images/{id}).
type Image struct {
	JobImage
	URLs       []string `json:"urls,omitempty"`
	UsageNotes string   `json:"usage_notes,omitempty"`
}

// Images is GET /images.
type Images struct {
	Data []Image `json:"data"`
}

// ImageRegistration is the optional body of POST /admin/images/{id}; RefdataID and
// DefaultRefdataMountPoint travel in the query string (refdata_id,
// default_refdata_mount_point).
type ImageRegistration struct {
	URLs       []string `json:"urls,omitempty"`
	UsageNotes string   `json:"usage_notes,omitempty"`
	// FromImage names a registered image whose usage fields (and reference data settings)
	// are copied where this registration leaves them unset.
	FromImage                string `json:"from_image,omitempty"`
	RefdataID                string `json:"-"`
	DefaultRefdataMountPoint string `json:"-"`
}

// Transition is one entry of transition_times; the admin views add trans_id and notif_sent.
type Transition struct {
	State     job.State `json:"state"`
	Time      Timestamp `json:"time"`
	TransID   string    `json:"trans_id,omitempty"`
	NotifSent *bool     `json:"notif_sent,omitempty"`
}

// JobStatus is GET /jobs/{id}/status, and the common part of every job view.
type JobStatus struct {
	ID          string         `json:"id"`
	User        string         `json:"user"`
	AdminMeta   map[string]any `json:"admin_meta"`
	State       job.State      `json:"state"`
	Transitions []Transition   `json:"transition_times"`
}

// S3File is an S3 object with its CRC64/NVME (a job's outputs).
type S3File struct {
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme"`
}

// JobInputView is a job's input as the job views show it, defaults applied: memory in bytes,
// runtime an ISO 8601 duration, input files with their CRC64/NVME. The list views
// (JobInputPreview) leave input_files out.
type JobInputView struct {
	Cluster       string          `json:"cluster"`
	Image         string          `json:"image"`
	Params        args.Parameters `json:"params"`
	NumContainers int             `json:"num_containers"`
	CPUs          int             `json:"cpus"`
	Memory        int64           `json:"memory"`
	Runtime       string          `json:"runtime"`
	InputRoots    []string        `json:"input_roots,omitempty"`
	OutputDir     string          `json:"output_dir"`
	InputFiles    []InputFileView `json:"input_files,omitempty"`
}

// InputFileView is an input file in the job views: always an object, with the CRC64/NVME
// the service recorded at submit.
type InputFileView struct {
	File      string `json:"file"`
	CRC64NVME string `json:"crc64nvme,omitempty"`
	DataID    string `json:"data_id,omitempty"`
}

// Job is GET /jobs/{id}, and (without job_input.input_files and outputs) an entry of
// GET /jobs (JobPreview).
type Job struct {
	JobStatus
	Input           JobInputView `json:"job_input"`
	Image           JobImage     `json:"image"`
	InputFileCount  int          `json:"input_file_count"`
	CPUHours        *float64     `json:"cpu_hours,omitempty"`
	CPUFactor       *float64     `json:"cpu_factor,omitempty"`
	MaxMemory       *int64       `json:"max_memory,omitempty"`
	OutputFileCount *int         `json:"output_file_count,omitempty"`
	// Error is the user-facing reason of a failed job.
	Error string `json:"error,omitempty"`
	// LogPath is the S3 folder of the container logs, set once the job has ended.
	LogPath string   `json:"logpath,omitempty"`
	Outputs []S3File `json:"outputs,omitempty"`
}

// Launch is how a job was handed to its site's launcher (the CTS htcondor_details,
// jaws_details and nersc_details in one): the site, the launcher's handle, the attempt
// (0 for the first) and why earlier attempts were abandoned.
type Launch struct {
	Site       string     `json:"site"`
	Handle     string     `json:"handle"`
	Attempt    int        `json:"attempt"`
	LaunchedAt *Timestamp `json:"launched_at,omitempty"`
	Retries    []string   `json:"retries,omitempty"`
}

// AdminJob is GET /admin/jobs/{id}: the job with the admin fields.
type AdminJob struct {
	Job
	Cleaned    bool    `json:"cleaned"`
	AdminError string  `json:"admin_error,omitempty"`
	Traceback  string  `json:"traceback,omitempty"`
	Launch     *Launch `json:"launch,omitempty"`
}

// Jobs is GET /jobs and GET /admin/jobs.
type Jobs struct {
	Jobs []Job `json:"jobs"`
}

// ExitCodes is GET /jobs/{id}/exit_codes: one per container, null while unknown.
type ExitCodes struct {
	ExitCodes []*int `json:"exit_codes"`
}

// SubJob is one container of a job (GET /admin/jobs/{id}/container/{n}). Nulls are shown, as
// in the CTS.
type SubJob struct {
	ID          string       `json:"id"`
	SubID       int          `json:"sub_id"`
	State       job.State    `json:"state"`
	Transitions []Transition `json:"transition_times"`
	ExitCode    *int         `json:"exit_code"`
	Outputs     []S3File     `json:"outputs"`
	AdminError  *string      `json:"admin_error"`
	Traceback   *string      `json:"traceback"`
}

// SubJobs is GET /admin/jobs/{id}/container (and GET /jobs/{id}/containers).
type SubJobs struct {
	SubJobs []SubJob `json:"subjobs"`
}

// UpdateAdminMeta is the body of PUT /admin/jobs/{id}/meta. set_fields values are strings or
// numbers.
type UpdateAdminMeta struct {
	SetFields map[string]any `json:"set_fields,omitempty"`
	UnsetKeys []string       `json:"unset_keys,omitempty"`
}

// UnsentNotifications is POST /admin/unsent_notifications: what was found and handed to the
// sender.
type UnsentNotifications struct {
	Jobs        int `json:"jobs"`
	Transitions int `json:"transitions"`
}

// ContainerProgress is one container's latest transfer progress in GET /jobs/{id}/progress.
type ContainerProgress struct {
	Container int `json:"container"`
	// Phase is "download" (the inputs) or "upload" (the outputs).
	Phase      string    `json:"phase"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	FilesDone  int       `json:"files_done"`
	FilesTotal int       `json:"files_total"`
	Updated    Timestamp `json:"updated"`
}

// JobProgress is GET /jobs/{id}/progress.
type JobProgress struct {
	// Containers lists the containers whose progress is known, by container number; empty
	// when none is.
	Containers []ContainerProgress `json:"containers"`
}

// ContainerRun is what one container of a previewed job would run.
type ContainerRun struct {
	Container int `json:"container"`
	// Command is the image's entrypoint followed by the generated arguments.
	Command []string `json:"command"`
	// Env is the generated environment, NAME=value.
	Env []string `json:"env"`
	// InputFiles are the container's input files, as paths inside the container.
	InputFiles []string `json:"input_files"`
}

// JobPreview is POST /jobs/preview.
type JobPreview struct {
	Containers []ContainerRun `json:"containers"`
}

// LiveEnd is the data of the "end" event that closes a live log stream once the job ended.
type LiveEnd struct {
	State job.State `json:"state"`
}

// S3Object is one object of an S3 listing.
type S3Object struct {
	// File is the object's path, "bucket/key", as input_files takes it.
	File     string    `json:"file"`
	Size     int64     `json:"size"`
	Modified Timestamp `json:"modified"`
}

// S3Listing is GET /s3/list.
type S3Listing struct {
	// Prefix is the prefix listed.
	Prefix string `json:"prefix"`
	// Folders are the sub-folders directly below it, each ending in "/"; list one to go down.
	Folders []string `json:"folders"`
	// Files are the objects directly below it.
	Files []S3Object `json:"files"`
	// Next, when present, continues the listing: pass it back as the next parameter.
	Next string `json:"next,omitempty"`
	// AllowedPaths are the folders the caller may read or write, when the site restricts
	// them (the listing of an empty prefix is only these, as folders).
	AllowedPaths []string `json:"allowed_paths,omitempty"`
}

// RefdataTransition is one state change of reference data at a site.
type RefdataTransition struct {
	State staging.State `json:"state"`
	Time  Timestamp     `json:"time"`
}

// RefdataStatus is the staging of reference data at one site. Cleaned, NERSCDownloadTaskID,
// AdminError and Traceback are in the admin view only.
type RefdataStatus struct {
	Cluster             string              `json:"cluster"`
	State               staging.State       `json:"state"`
	Transitions         []RefdataTransition `json:"transition_times"`
	Error               string              `json:"error,omitempty"`
	Cleaned             *bool               `json:"cleaned,omitempty"`
	NERSCDownloadTaskID *[]string           `json:"nersc_download_task_id,omitempty"`
	AdminError          string              `json:"admin_error,omitempty"`
	Traceback           string              `json:"traceback,omitempty"`
}

// Refdata is a registered reference data object (the CTS ReferenceData model;
// AdminReferenceData with the admin fields of its statuses).
type Refdata struct {
	ID           string          `json:"id"`
	File         string          `json:"file"`
	CRC64NVME    string          `json:"crc64nvme"`
	Unpack       bool            `json:"unpack"`
	RegisteredBy string          `json:"registered_by"`
	RegisteredOn Timestamp       `json:"registered_on"`
	Statuses     []RefdataStatus `json:"statuses"`
}

// RefdataList is the CTS RefData model (GET /refdata, /refdata/path/...).
type RefdataList struct {
	Data []Refdata `json:"data"`
}

// RefdataUpdate is the body of a staging task's report (shared/staging).
type RefdataUpdate = staging.Update
