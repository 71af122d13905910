package jobs

import (
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/shared/job"
)

// Transition is one entry of a job's or sub-job's transition_times.
// Main-job transitions carry a TransID and a NotifSent flag (the Kafka outbox); sub-job
// transitions carry neither.
type Transition struct {
	State     job.State `bson:"state" json:"state"`
	Time      time.Time `bson:"time" json:"time"`
	TransID   string    `bson:"trans_id,omitempty" json:"trans_id,omitempty"`
	NotifSent bool      `bson:"notif_sent" json:"notif_sent"`
}

// Output is an output file recorded with its CRC64/NVME.
type Output struct {
	File      string `bson:"file" json:"file"`
	CRC64NVME string `bson:"crc64nvme" json:"crc64nvme"`
}

// Launch records how a job was handed to its site's launcher.
type Launch struct {
	// Site is the launcher/site name (the CTS "cluster").
	Site string `bson:"site" json:"site"`
	// Handle is the launcher's opaque handle (HTCondor: the cluster ID).
	Handle string `bson:"handle" json:"handle"`
	// Attempt counts launches of the job, 0 for the first (the launcher's idempotency key).
	Attempt int `bson:"attempt" json:"attempt"`
	// LaunchedAt is when the current attempt was handed to the launcher.
	LaunchedAt time.Time `bson:"launched_at,omitempty" json:"launched_at,omitzero"`
	// Retries records why earlier attempts were abandoned, oldest first.
	Retries []string `bson:"retries,omitempty" json:"retries,omitempty"`
}

// Job is a CTS job as stored. Times are UTC with millisecond precision (BSON dates).
type Job struct {
	ID        string         `bson:"id"`
	User      string         `bson:"user"`
	AdminMeta map[string]any `bson:"admin_meta"`
	State     job.State      `bson:"state"`
	// UpdateTime is the time of the last transition.
	UpdateTime     time.Time         `bson:"_update_time"`
	Transitions    []Transition      `bson:"transition_times"`
	Input          jobinput.JobInput `bson:"job_input"`
	Image          images.Image      `bson:"image"`
	InputFileCount int               `bson:"input_file_count"`
	// InputSizes are the S3 sizes of the inputs at submit, parallel to Input.InputFiles.
	InputSizes []int64 `bson:"input_sizes,omitempty"`
	Cleaned    bool    `bson:"cleaned"`
	Launch     *Launch `bson:"launch,omitempty"`

	Outputs         []Output `bson:"outputs,omitempty"`
	OutputFileCount *int     `bson:"output_file_count,omitempty"`
	// OutputsManifests are the verified manifests of the containers that wrote more outputs
	// than an event carries: the job's outputs are then the union of Outputs and these
	// manifests' entries, served sorted by file.
	OutputsManifests []Manifest `bson:"outputs_manifests,omitempty"`
	Error            string     `bson:"error,omitempty"`
	AdminError       string     `bson:"admin_error,omitempty"`
	Traceback        string     `bson:"traceback,omitempty"`
	LogPath          string     `bson:"logpath,omitempty"`
	CPUHours         *float64   `bson:"cpu_hours,omitempty"`
	CPUFactor        *float64   `bson:"cpu_factor,omitempty"`
	MaxMemory        *int64     `bson:"max_memory,omitempty"`
}

// Manifest is a container's outputs manifest in S3, sealed by its agent: the object at File
// lists Count outputs in Size bytes with CRC64NVME (see shared/manifest).
type Manifest struct {
	Container int    `bson:"container"`
	File      string `bson:"file"`
	Count     int64  `bson:"count"`
	Size      int64  `bson:"size"`
	CRC64NVME string `bson:"crc64nvme"`
}

// SubJob is one container of a job as stored.
type SubJob struct {
	JobID       string       `bson:"id"`
	SubID       int          `bson:"sub_id"`
	State       job.State    `bson:"state"`
	UpdateTime  time.Time    `bson:"_update_time"`
	Transitions []Transition `bson:"transition_times"`
	ExitCode    *int         `bson:"exit_code"`
	Outputs     []Output     `bson:"outputs"`
	// OutputsManifest replaces Outputs for a container with many outputs.
	OutputsManifest *Manifest `bson:"outputs_manifest,omitempty"`
	Error           string    `bson:"error,omitempty"`
	AdminError      string    `bson:"admin_error,omitempty"`
	Traceback       string    `bson:"traceback,omitempty"`
	// Attempt is the agent attempt currently reporting for this container; LastSeq the
	// highest event sequence number of that attempt applied so far.
	Attempt string `bson:"attempt,omitempty"`
	LastSeq int64  `bson:"last_seq"`
	// LastSeen is when the agent of this container last reported or connected.
	LastSeen time.Time `bson:"last_seen,omitempty"`
}

// JobUpdate holds the optional fields a job transition sets along with its state.
// Nil/empty fields are left untouched.
type JobUpdate struct {
	Launch           *Launch
	Outputs          []Output
	OutputsManifests []Manifest
	OutputFileCount  *int
	Error            string
	AdminError       string
	Traceback        string
	LogPath          string
	CPUHours         *float64
	CPUFactor        *float64
	MaxMemory        *int64
}

// SubJobUpdate holds the optional fields a sub-job transition sets.
type SubJobUpdate struct {
	ExitCode        *int
	Outputs         []Output
	OutputsManifest *Manifest
	Error           string
	AdminError      string
	Traceback       string
}

// Seq identifies an agent event for exactly-once application.
type Seq struct {
	Attempt string
	Seq     int64
}

// Accounting is the resource use recorded on a finished job (cpu_hours, cpu_factor,
// max_memory), from the launcher's view of its containers.
type Accounting struct {
	CPUHours  *float64
	CPUFactor *float64
	MaxMemory *int64
}

// ObjectMeta is what the coordinator needs to know of an S3 object.
type ObjectMeta struct {
	Size      int64
	CRC64NVME string // "" when the object has no CRC64/NVME
}

// User is the caller of a lifecycle or record method.
type User struct {
	Name  string
	Staff bool
	Admin bool
}

// Now is the clock of job records: UTC, truncated to the millisecond a BSON date keeps.
func Now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// ReachedAt reports whether the sub-job passed through one of the states, and the latest
// time it did.
func ReachedAt(s SubJob, states ...job.State) (time.Time, bool) {
	var t time.Time
	found := false
	for _, tr := range s.Transitions {
		if tr.State == "" {
			continue
		}
		for _, st := range states {
			if tr.State == st {
				found = true
				if tr.Time.After(t) {
					t = tr.Time
				}
			}
		}
	}
	return t, found
}

// LogPath is the folder ("bucket/prefix/<job id>", no trailing slash) below logDir where the
// containers of job id left their stdout and stderr, or "" when none of them started (logs
// exist only for containers that ran).
func LogPath(logDir, id string, subs []SubJob) string {
	for _, sj := range subs {
		if _, ran := ReachedAt(sj, job.JobSubmitted); ran {
			return strings.TrimRight(logDir, "/") + "/" + id
		}
	}
	return ""
}
