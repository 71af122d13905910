// Package refdata owns reference data on the coordinator side: the record of one S3 object
// admins provide for images (its CRC64/NVME, whether it is unpacked), its per-site staging
// state machine (the states and their table are shared/staging's, which the agent's refdata
// mode uses too), and the Manager that registers it, applies the stager's reports and
// heartbeats, hands the launch package the stagings to launch, records what launch and the
// reconciler decide (launched, failed, restaged as a new attempt), and tells jobs whether the
// data is ready at their site. Staging tasks are launched work: package launch submits,
// cancels and cleans them through the sites' launchers, and package reconcile ends the ones
// that can no longer finish (deadlines, heartbeats, the launcher's view), as for jobs.
//
// A stager that finishes before the coordinator recorded download_submitted (a fast,
// idempotent re-stage) reports complete while the site is still created: both transitions
// are then recorded at once. Every staging task runs as an attempt; a report carrying another
// attempt than the site's current one is refused.
//
// The package must not touch the file system of workers (the stager does), must not talk to
// launchers (package launch does), must not know MongoDB (Store is implemented by the store
// package) nor HTTP (the api package maps its *ctserr.Error values).
package refdata

import (
	"context"
	"errors"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/staging"
)

// State is the staging state of reference data at one site (shared/staging).
type State = staging.State

// The states of a site's staging.
const (
	Created           = staging.Created
	DownloadSubmitted = staging.DownloadSubmitted
	Complete          = staging.Complete
	Error             = staging.Error
)

// States lists every state.
var States = staging.States

// CanTransition reports whether a site may move from one state to another.
func CanTransition(from, to State) bool { return staging.CanTransition(from, to) }

// Transition is one entry of a status's history.
type Transition struct {
	State State     `bson:"state"`
	Time  time.Time `bson:"time"`
}

// Status is the staging of reference data at one site (the Python service's refdata
// document's status, plus the launch fields, which start with "_").
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
	// LaunchedAt is when the launcher accepted the current attempt; LastSeen when its stager
	// last reported (a heartbeat or a state).
	LaunchedAt time.Time `bson:"_launched_at,omitempty"`
	LastSeen   time.Time `bson:"_last_seen,omitempty"`
	// Retries records why earlier attempts were abandoned, oldest first.
	Retries []string `bson:"_retries,omitempty"`
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

// View returns the public view of r (the CTS ReferenceData model).
func (r *Refdata) View() wire.Refdata { return r.view(false) }

// AdminView returns the admin view of r (CTS AdminReferenceData).
func (r *Refdata) AdminView() wire.Refdata { return r.view(true) }

func (r *Refdata) view(admin bool) wire.Refdata {
	v := wire.Refdata{ID: r.ID, File: r.File, CRC64NVME: r.CRC64NVME, Unpack: r.Unpack, RegisteredBy: r.RegisteredBy,
		RegisteredOn: wire.At(r.RegisteredOn), Statuses: []wire.RefdataStatus{}}
	for _, s := range r.Statuses {
		sv := wire.RefdataStatus{Cluster: s.Cluster, State: s.State, Error: s.Error, Transitions: []wire.RefdataTransition{}}
		for _, t := range s.Transitions {
			sv.Transitions = append(sv.Transitions, wire.RefdataTransition{State: t.State, Time: wire.At(t.Time)})
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
