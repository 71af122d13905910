// Package refdata owns reference data on the coordinator side (reference §5): the record of
// one S3 object admins provide for images (its CRC64/NVME, whether it is unpacked), its
// per-site staging state machine, and the Manager that registers it, asks each site's
// launcher to start a staging task (the agent in its refdata mode, on a worker that mounts
// the site's REFDATA_HOST_PATH), applies the stager's reports, and tells jobs whether the
// data is ready at their site.
//
// The per-site state machine (one Status per site, transition times kept):
//
//	             launcher accepted the         stager reported
//	             staging task                  "complete"
//	created ─────────────────────► download_submitted ───────────► complete
//	   ▲  │                                 │                          │
//	   │  └─────────────────┬───────────────┴──────────────────────────┘
//	   │                    ▼ stager (or admin) reported "error": from any state
//	   └──── recover ───  error
//
// A stager that finishes before the coordinator recorded download_submitted (a fast,
// idempotent re-stage) reports complete while the site is still created: both transitions
// are then recorded at once. Recover of an errored site starts a new launcher attempt.
//
// The package must not touch the file system of workers (the stager does), must not know
// MongoDB (Store is implemented by the store package) nor HTTP (the api package maps its
// *ctserr.Error values).
package refdata

import (
	"context"
	"errors"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
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

// Terminal reports whether s ends a staging (clean is allowed without force).
func (s State) Terminal() bool { return s == Complete || s == Error }

// transitions is the table of the state machine: to ← allowed from. Error is allowed from
// every state (refdata_error in the Python service); Created only from Error (recover).
var transitions = map[State][]State{
	Created:           {Error},
	DownloadSubmitted: {Created},
	Complete:          {DownloadSubmitted},
	Error:             {Created, DownloadSubmitted, Complete, Error},
}

// CanTransition reports whether a site may move from one state to another.
func CanTransition(from, to State) bool {
	for _, f := range transitions[to] {
		if f == from {
			return true
		}
	}
	return false
}

// Transition is one entry of a status's history.
type Transition struct {
	State State     `bson:"state"`
	Time  time.Time `bson:"time"`
}

// Status is the staging of reference data at one site (reference §10.2 refdata document).
type Status struct {
	Cluster     string       `bson:"cluster"`
	State       State        `bson:"state"`
	Transitions []Transition `bson:"transition_times"`
	// Error is the message for users; AdminError and Traceback are for admins.
	Error      string `bson:"error,omitempty"`
	Cleaned    bool   `bson:"cleaned"`
	AdminError string `bson:"admin_error,omitempty"`
	Traceback  string `bson:"traceback,omitempty"`
	// NERSCDownloadTaskID is kept (always empty) for the Python service's document shape.
	NERSCDownloadTaskID []string  `bson:"nersc_download_task_id"`
	UpdateTime          time.Time `bson:"_update_time"`
	// Attempt is the launcher attempt of the current staging task; Handle is what the
	// launcher returned for it ("" before it was accepted).
	Attempt int    `bson:"_attempt"`
	Handle  string `bson:"_handle,omitempty"`
}

// Refdata is one registered reference data object.
type Refdata struct {
	ID           string    `bson:"id"`
	File         string    `bson:"file"`
	CRC64NVME    string    `bson:"crc64nvme"`
	Unpack       bool      `bson:"unpack"`
	RegisteredBy string    `bson:"registered_by"`
	RegisteredOn time.Time `bson:"registered_on"`
	Statuses     []Status  `bson:"statuses"`
	// Rev counts the updates of the document: every update is conditional on it (optimistic
	// concurrency without positional operators, which FerretDB lacks).
	Rev int64 `bson:"_rev"`
}

// Status returns the status of site, or nil.
func (r *Refdata) Status(site string) *Status {
	for i := range r.Statuses {
		if r.Statuses[i].Cluster == site {
			return &r.Statuses[i]
		}
	}
	return nil
}

// Errors of the store.
var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("refdata not found")
	// ErrExists: a record for the same S3 file exists.
	ErrExists = errors.New("refdata exists")
	// ErrConflict: the record changed since it was read (its Rev moved on).
	ErrConflict = errors.New("refdata changed concurrently")
)

// Store persists reference data records. Implementations hold no rules: the Manager decides
// which changes are legal.
type Store interface {
	// SaveRefdata inserts rd (Rev 0) unless a record with the same File exists: ErrExists.
	SaveRefdata(ctx context.Context, rd *Refdata) error
	// GetRefdata returns the record with the ID; ErrNotFound if none.
	GetRefdata(ctx context.Context, id string) (*Refdata, error)
	// ListRefdata returns up to limit records (1000 when limit ≤ 0) sorted by file, only
	// those of the given file when file is not "".
	ListRefdata(ctx context.Context, file string, limit int) ([]Refdata, error)
	// UpdateRefdataStatuses replaces the statuses of record id if its Rev is still rev, and
	// moves Rev to rev+1; ErrConflict if the Rev moved on, ErrNotFound if there is no record.
	UpdateRefdataStatuses(ctx context.Context, id string, rev int64, statuses []Status) error
	// RefdataWithState returns up to limit records with at least one status in state.
	RefdataWithState(ctx context.Context, state State, limit int) ([]Refdata, error)
}

// notFound is the CTS 40060 error for a missing record.
func notFound(id string) *ctserr.Error {
	return ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' exists", id)
}

// View is the public CTS ReferenceData model; AdminView adds the admin fields. Times are
// rendered as the CTS does (ctserr.FormatTime).
type View struct {
	ID           string       `json:"id"`
	File         string       `json:"file"`
	CRC64NVME    string       `json:"crc64nvme"`
	Unpack       bool         `json:"unpack"`
	RegisteredBy string       `json:"registered_by"`
	RegisteredOn string       `json:"registered_on"`
	Statuses     []StatusView `json:"statuses"`
}

// TransitionView is a Transition as the API shows it.
type TransitionView struct {
	State State  `json:"state"`
	Time  string `json:"time"`
}

// StatusView is a Status as the API shows it; the admin fields are nil in public views.
type StatusView struct {
	Cluster             string           `json:"cluster"`
	State               State            `json:"state"`
	Transitions         []TransitionView `json:"transition_times"`
	Error               string           `json:"error,omitempty"`
	Cleaned             *bool            `json:"cleaned,omitempty"`
	NERSCDownloadTaskID *[]string        `json:"nersc_download_task_id,omitempty"`
	AdminError          string           `json:"admin_error,omitempty"`
	Traceback           string           `json:"traceback,omitempty"`
}

// RefDataList is the CTS RefData model (GET /refdata, /refdata/path/...).
type RefDataList struct {
	Data []View `json:"data"`
}

// View returns the public view of r.
func (r *Refdata) View() View { return r.view(false) }

// AdminView returns the admin view of r (CTS AdminReferenceData).
func (r *Refdata) AdminView() View { return r.view(true) }

func (r *Refdata) view(admin bool) View {
	v := View{ID: r.ID, File: r.File, CRC64NVME: r.CRC64NVME, Unpack: r.Unpack, RegisteredBy: r.RegisteredBy,
		RegisteredOn: ctserr.FormatTime(r.RegisteredOn), Statuses: []StatusView{}}
	for _, s := range r.Statuses {
		sv := StatusView{Cluster: s.Cluster, State: s.State, Error: s.Error, Transitions: []TransitionView{}}
		for _, t := range s.Transitions {
			sv.Transitions = append(sv.Transitions, TransitionView{State: t.State, Time: ctserr.FormatTime(t.Time)})
		}
		if admin {
			cleaned := s.Cleaned
			sv.Cleaned = &cleaned
			ids := append([]string{}, s.NERSCDownloadTaskID...)
			sv.NERSCDownloadTaskID = &ids
			sv.AdminError, sv.Traceback = s.AdminError, s.Traceback
		}
		v.Statuses = append(v.Statuses, sv)
	}
	return v
}
