// Package staging is the contract of reference data staging between the coordinator and the
// agent's refdata mode: the states of a staging at one site, the environment a launcher
// passes to the staging task, and how the task reports (its path, its body, how often it
// reports while it works). Both sides import it, so the names exist once.
//
// The states of one site's staging (the coordinator keeps the transition table here):
//
//	         launcher accepted the        stager reported
//	         staging task                 "complete"
//	created ───────────────────► download_submitted ───────────► complete
//	   ▲  │                               │  ▲ │                       │
//	   │  │                               │  └─┘ the stager's          │
//	   │  │                               │      heartbeat             │
//	   │  └──────────────┬────────────────┴────────────────────────────┘
//	   │                 ▼ the stager, the reconciler or an admin: from any state
//	   └─ recover ─── error        (recover also restarts a staging stuck in created
//	                               or download_submitted, as a new attempt)
//
// It must not depend on anything but the standard library.
package staging

import (
	"net/url"
	"time"
)

// State is the staging state of reference data at one site.
type State string

// The states of a site's staging.
const (
	Created           State = "created"
	DownloadSubmitted State = "download_submitted"
	Complete          State = "complete"
	Error             State = "error"
)

// States lists every state.
var States = []State{Created, DownloadSubmitted, Complete, Error}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether s ends a staging.
func (s State) Terminal() bool { return s == Complete || s == Error }

// transitions is the state machine: to ← allowed from. Error is allowed from every state (as
// the Python service's refdata_error); Created only from Error (recover: a stuck staging is
// first ended in error, then recovered, in one update). DownloadSubmitted from itself is the
// stager's heartbeat.
var transitions = map[State][]State{
	Created:           {Error},
	DownloadSubmitted: {Created, DownloadSubmitted},
	Complete:          {DownloadSubmitted},
	Error:             {Created, DownloadSubmitted, Complete, Error},
}

// CanTransition reports whether a site's staging may move from one state to another.
func CanTransition(from, to State) bool {
	for _, f := range transitions[to] {
		if f == from {
			return true
		}
	}
	return false
}

// The environment of a staging task, beside the site's worker environment (SERVICE_ROOT_URL,
// S3_URL, S3_ACCESS_KEY, TOKEN_PATH, S3_SECRET_PATH, REFDATA_HOST_PATH, ...).
const (
	// EnvAgentMode selects the agent's mode; ModeRefdata is the staging task's.
	EnvAgentMode = "CTS_AGENT_MODE"
	ModeRefdata  = "refdata"
	// EnvID is the refdata ID, EnvS3Path ("bucket/key") and EnvCRC64NVME the object,
	// EnvUnpack "true" or "false", EnvCluster the site the task reports for, EnvAttempt the
	// coordinator's attempt number of the task (a decimal integer), which every report
	// carries back.
	EnvID        = "REFDATA_ID"
	EnvS3Path    = "REFDATA_S3_PATH"
	EnvCRC64NVME = "REFDATA_CRC64NVME"
	EnvUnpack    = "REFDATA_UNPACK"
	EnvCluster   = "REFDATA_CLUSTER"
	EnvAttempt   = "REFDATA_ATTEMPT"
)

// JobIDPrefix prefixes the launcher job ID of a staging task: JobID(id).
const JobIDPrefix = "refdata-"

// JobID is the launcher job ID of the staging tasks of refdata id.
func JobID(id string) string { return JobIDPrefix + id }

// HeartbeatInterval is how often a stager reports download_submitted while it works; the
// coordinator's reconciler ends a staging whose stager stayed silent much longer (its
// heartbeat deadline, minutes).
const HeartbeatInterval = 30 * time.Second

// UpdatePath is the path (below the service root URL) a stager PUTs its state to, with an
// Update body (the Python service's PUT /external_exec/refdata/{id}/{cluster}/update/{state}).
func UpdatePath(id, cluster string, s State) string {
	return "/external_exec/refdata/" + url.PathEscape(id) + "/" + url.PathEscape(cluster) + "/update/" +
		url.PathEscape(string(s))
}

// Update is the body of a report (the Python service's RefdataUpdate, plus the attempt).
type Update struct {
	AdminError string `json:"admin_error,omitempty"`
	Traceback  string `json:"traceback,omitempty"`
	// Attempt is the task's EnvAttempt. A report of another attempt than the site's current
	// one is refused (it comes from a task the coordinator replaced). Absent: not checked (the
	// Python service's stager sends none).
	Attempt *int `json:"attempt,omitempty"`
}
