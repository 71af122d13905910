package api

import (
	"encoding/json"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// The response models of the CTS API (reference §1.6). They are the Go types the handlers
// encode and the OpenAPI document describes: null fields are omitted where the CTS omits them
// (omitempty), times are ISO 8601 UTC with Z (Timestamp), runtimes ISO 8601 durations.

// Timestamp is a time rendered as the CTS does: ISO 8601 UTC with a Z, with microseconds when
// the fraction is not zero ("2024-10-24T22:35:40Z", "2024-10-24T22:35:40.123000Z").
type Timestamp time.Time

// MarshalJSON renders the timestamp.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(ctserr.FormatTime(time.Time(t)))
}

// UnmarshalJSON reads an RFC 3339 timestamp (for clients and tests).
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var tt time.Time
	if err := json.Unmarshal(b, &tt); err != nil {
		return err
	}
	*t = Timestamp(tt)
	return nil
}

// Root is GET /.
type Root struct {
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

// SiteInfo is a site as GET /sites shows it.
type SiteInfo struct {
	Cluster         string   `json:"cluster"`
	Nodes           *int     `json:"nodes"`
	CPUsPerNode     int      `json:"cpus_per_node"`
	MemoryPerNodeGB float64  `json:"memory_per_node_gb"`
	MaxRuntimeMin   float64  `json:"max_runtime_min"`
	Notes           []string `json:"notes"`
	Active          bool     `json:"active"`
	Available       bool     `json:"available"`
	UnavailReason   *string  `json:"unavailable_reason"`
}

// Sites is GET /sites.
type Sites struct {
	Sites []SiteInfo `json:"sites"`
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

// ImageRegistration is the optional body of POST /admin/images/{id}.
type ImageRegistration = images.Registration

// Transition is one entry of transition_times; the admin view adds trans_id and notif_sent.
type Transition struct {
	State     job.State `json:"state"`
	Time      Timestamp `json:"time"`
	TransID   string    `json:"trans_id,omitempty"`
	NotifSent *bool     `json:"notif_sent,omitempty"`
}

// JobStatus is GET /jobs/{id}/status.
type JobStatus struct {
	ID              string         `json:"id"`
	User            string         `json:"user"`
	AdminMeta       map[string]any `json:"admin_meta"`
	State           job.State      `json:"state"`
	TransitionTimes []Transition   `json:"transition_times"`
}

// Job is GET /jobs/{id}, and (without job_input.input_files and outputs) an entry of
// GET /jobs (JobPreview).
type Job struct {
	JobStatus
	JobInput        jobinput.View `json:"job_input"`
	Image           JobImage      `json:"image"`
	InputFileCount  int           `json:"input_file_count"`
	CPUHours        *float64      `json:"cpu_hours,omitempty"`
	CPUFactor       *float64      `json:"cpu_factor,omitempty"`
	MaxMemory       *int64        `json:"max_memory,omitempty"`
	OutputFileCount *int          `json:"output_file_count,omitempty"`
	Error           string        `json:"error,omitempty"`
	LogPath         string        `json:"logpath,omitempty"`
	Outputs         []jobs.Output `json:"outputs,omitempty"`
}

// AdminJobDetails is GET /admin/jobs/{id}: the job with the admin fields. launch replaces the
// CTS htcondor_details / jaws_details / nersc_details: the site and the launcher's handle.
type AdminJobDetails struct {
	Job
	Cleaned    bool         `json:"cleaned"`
	AdminError string       `json:"admin_error,omitempty"`
	Traceback  string       `json:"traceback,omitempty"`
	Launch     *jobs.Launch `json:"launch,omitempty"`
}

// ListJobsResponse is GET /jobs and GET /admin/jobs.
type ListJobsResponse struct {
	Jobs []Job `json:"jobs"`
}

// ExitCodes is GET /jobs/{id}/exit_codes: one per container, null while unknown.
type ExitCodes struct {
	ExitCodes []*int `json:"exit_codes"`
}

// SubJob is one container of a job (GET /admin/jobs/{id}/container/{n}). Nulls are shown, as
// in the CTS.
type SubJob struct {
	ID              string        `json:"id"`
	SubID           int           `json:"sub_id"`
	State           job.State     `json:"state"`
	TransitionTimes []Transition  `json:"transition_times"`
	ExitCode        *int          `json:"exit_code"`
	Outputs         []jobs.Output `json:"outputs"`
	AdminError      *string       `json:"admin_error"`
	Traceback       *string       `json:"traceback"`
}

// SubJobs is GET /admin/jobs/{id}/container.
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

func jobImageView(im images.Image) JobImage {
	return JobImage{
		Name: im.Name, Digest: im.Digest, Tag: im.Tag, Entrypoint: nonNilStrings(im.Entrypoint),
		RefdataID: im.RefdataID, DefaultRefdataMountPoint: im.DefaultRefdataMountPoint,
		RegisteredBy: im.RegisteredBy, RegisteredOn: Timestamp(im.RegisteredOn),
	}
}

func imageView(im images.Image) Image {
	return Image{JobImage: jobImageView(im), URLs: im.URLs, UsageNotes: im.UsageNotes}
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func transitionsView(ts []jobs.Transition, admin bool) []Transition {
	out := make([]Transition, 0, len(ts))
	for _, t := range ts {
		v := Transition{State: t.State, Time: Timestamp(t.Time)}
		if admin {
			sent := t.NotifSent
			v.TransID, v.NotifSent = t.TransID, &sent
		}
		out = append(out, v)
	}
	return out
}

func statusView(j *jobs.Job) JobStatus {
	meta := j.AdminMeta
	if meta == nil {
		meta = map[string]any{}
	}
	return JobStatus{ID: j.ID, User: j.User, AdminMeta: meta, State: j.State, TransitionTimes: transitionsView(j.Transitions, false)}
}

// jobView renders a job; a preview (list entry) has no input files and no outputs.
func jobView(j *jobs.Job, preview bool) Job {
	v := Job{
		JobStatus: statusView(j), Image: jobImageView(j.Image), InputFileCount: j.InputFileCount,
		CPUHours: j.CPUHours, CPUFactor: j.CPUFactor, MaxMemory: j.MaxMemory, OutputFileCount: j.OutputFileCount,
		Error: j.Error, LogPath: j.LogPath,
	}
	if preview {
		v.JobInput = j.Input.APIPreview()
	} else {
		v.JobInput = j.Input.APIView()
		v.Outputs = j.Outputs
	}
	return v
}

func adminJobView(j *jobs.Job) AdminJobDetails {
	v := AdminJobDetails{Job: jobView(j, false), Cleaned: j.Cleaned, AdminError: j.AdminError, Traceback: j.Traceback, Launch: j.Launch}
	v.TransitionTimes = transitionsView(j.Transitions, true)
	return v
}

func subJobView(sj *jobs.SubJob) SubJob {
	v := SubJob{
		ID: sj.JobID, SubID: sj.SubID, State: sj.State, TransitionTimes: transitionsView(sj.Transitions, false),
		ExitCode: sj.ExitCode, Outputs: sj.Outputs,
	}
	if sj.AdminError != "" {
		v.AdminError = &sj.AdminError
	}
	if sj.Traceback != "" {
		v.Traceback = &sj.Traceback
	}
	return v
}
