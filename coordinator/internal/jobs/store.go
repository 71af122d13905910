package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/kbase/cts/shared/job"
)

// ErrNotFound means the job or sub-job does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict means a conditional update matched nothing: the document exists but is not in
// an expected state (or the event was already applied / is stale).
var ErrConflict = errors.New("conflict")

// Getter reads a job. Every store of the lifecycle packages has it.
type Getter interface {
	// GetJob returns the job, or ErrNotFound.
	GetJob(ctx context.Context, id string) (*Job, error)
}

// SubJobGetter reads a job's sub-jobs.
type SubJobGetter interface {
	// GetSubJobs returns the job's sub-jobs sorted by SubID (empty if none).
	GetSubJobs(ctx context.Context, id string) ([]SubJob, error)
}

// TransitionStore writes job transitions. Implementations must make every transition a single
// atomic conditional update on one document.
type TransitionStore interface {
	// TransitionJob moves job id to t.State if its current state is one of from, appending t
	// to its transitions, setting UpdateTime = t.Time and the fields of u. It returns the job
	// as it is after the update, ErrNotFound if no such job, or ErrConflict if the job is not
	// in one of the from states.
	TransitionJob(ctx context.Context, id string, from []job.State, t Transition, u JobUpdate) (*Job, error)
}

// SubJobTransitioner writes sub-job transitions.
type SubJobTransitioner interface {
	// TransitionSubJob moves a sub-job to t.State if its current state is one of from, and, when
	// seq.Attempt is set, only if the event is new and the attempt's to give (seq.Seq > LastSeq
	// of the attempt that started the container, or the first event of any attempt when none
	// has reported yet); it then records Attempt/LastSeq/LastSeen. Returns the sub-job after
	// the update, ErrNotFound, or ErrConflict (also for another attempt's event).
	TransitionSubJob(ctx context.Context, id string, sub int, from []job.State, t Transition, u SubJobUpdate, seq Seq) (*SubJob, error)
}

// StateLister finds jobs by state.
type StateLister interface {
	// JobsInState returns up to limit jobs in the given state, oldest UpdateTime first.
	JobsInState(ctx context.Context, state job.State, limit int) ([]*Job, error)
	// JobsInStates returns up to limit jobs in any of the given states, oldest UpdateTime
	// first, in one query.
	JobsInStates(ctx context.Context, states []job.State, limit int) ([]*Job, error)
}

// RecordStore is what Records needs.
type RecordStore interface {
	Getter
	SubJobGetter
	// ListJobs returns jobs matching f, newest UpdateTime first, without outputs and input
	// files.
	ListJobs(ctx context.Context, f ListFilter) ([]*Job, error)
	// UpdateAdminMeta sets the keys of set and removes the keys of unset in the job's
	// admin_meta, in one update; ErrNotFound if no such job. Keys are valid (ValidateMetaKey).
	UpdateAdminMeta(ctx context.Context, id string, set map[string]any, unset []string) error
}

// ListFilter selects jobs for ListJobs. Zero fields do not filter.
type ListFilter struct {
	User    string
	Cluster string
	State   job.State
	// ImageName is the registered image's normalised name (no tag or digest); ImageTag and
	// ImageDigest, when set with it, narrow to the image registered with that tag or digest.
	ImageName   string
	ImageTag    string
	ImageDigest string
	After       time.Time // inclusive, on UpdateTime
	Before      time.Time // exclusive, on UpdateTime
	Limit       int
}
