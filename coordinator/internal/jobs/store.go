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

// Store is what the jobs service needs from persistence. Implementations must make every
// transition a single atomic conditional update on one document.
type Store interface {
	// CreateJob inserts the job and its sub-jobs. The job must not exist.
	CreateJob(ctx context.Context, j *Job, subs []SubJob) error
	// GetJob returns the job, or ErrNotFound.
	GetJob(ctx context.Context, id string) (*Job, error)
	// GetSubJobs returns the job's sub-jobs sorted by SubID (empty if none).
	GetSubJobs(ctx context.Context, id string) ([]SubJob, error)
	// TransitionJob moves job id to t.State if its current state is one of from, appending t
	// to its transitions, setting UpdateTime = t.Time and the fields of u. It returns the job
	// as it is after the update, ErrNotFound if no such job, or ErrConflict if the job is not
	// in one of the from states.
	TransitionJob(ctx context.Context, id string, from []job.State, t Transition, u JobUpdate) (*Job, error)
	// TransitionSubJob moves a sub-job to t.State if its current state is one of from, and, when
	// seq.Attempt is set, only if the event is new for that attempt (seq.Seq > LastSeq of the
	// same attempt, or a new attempt); it then records Attempt/LastSeq/LastSeen. Returns the
	// sub-job after the update, ErrNotFound, or ErrConflict.
	TransitionSubJob(ctx context.Context, id string, sub int, from []job.State, t Transition, u SubJobUpdate, seq Seq) (*SubJob, error)
	// TouchSubJob records that the agent of a sub-job was seen at t (heartbeat).
	TouchSubJob(ctx context.Context, id string, sub int, attempt string, t time.Time) error
	// JobsInState returns up to limit jobs in the given state, oldest UpdateTime first.
	JobsInState(ctx context.Context, state job.State, limit int) ([]*Job, error)
	// ListJobs returns jobs matching f, newest UpdateTime first, without outputs and input
	// files.
	ListJobs(ctx context.Context, f ListFilter) ([]*Job, error)
	// MarkNotified sets notif_sent on the transition transID of job id.
	MarkNotified(ctx context.Context, id, transID string) error
	// UnsentTransitions returns up to limit jobs having transitions with notif_sent false and
	// time before olderThan, each with only those transitions in Transitions.
	UnsentTransitions(ctx context.Context, olderThan time.Time, limit int) ([]*Job, error)
	// UpdateAdminMeta sets the keys of set and removes the keys of unset in the job's
	// admin_meta, in one update; ErrNotFound if no such job. Keys are valid (ValidateMetaKey).
	UpdateAdminMeta(ctx context.Context, id string, set map[string]any, unset []string) error
	// SetCleaned marks a terminal job cleaned; ErrConflict if it is not terminal, ErrNotFound
	// if no such job.
	SetCleaned(ctx context.Context, id string) error
	// DirtyJobs returns up to limit terminal jobs not yet cleaned whose UpdateTime is before
	// olderThan, oldest first, without outputs and input files.
	DirtyJobs(ctx context.Context, olderThan time.Time, limit int) ([]*Job, error)
	// InitSites records each named site as active unless it is recorded already.
	InitSites(ctx context.Context, names []string) error
	// SiteStates returns the recorded active flag of every recorded site.
	SiteStates(ctx context.Context) (map[string]bool, error)
	// SetSiteActive records the site's active flag (upsert).
	SetSiteActive(ctx context.Context, name string, active bool) error
}

// ListFilter selects jobs for ListJobs. Zero fields do not filter.
type ListFilter struct {
	User    string
	Cluster string
	State   job.State
	After   time.Time // inclusive, on UpdateTime
	Before  time.Time // exclusive, on UpdateTime
	Limit   int
}
