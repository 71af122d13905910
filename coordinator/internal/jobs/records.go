package jobs

// Records: reading job records (with ownership), listing, sub-job inspection and the admin
// metadata of a job.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/job"
)

// Limits of admin metadata. The Python service had none; these keep a job document far below
// MongoDB's 16 MiB.
const (
	MaxMetaKeyLength   = 256
	MaxMetaValueLength = 4096
	MaxMetaKeys        = 100
)

// Records reads job records and edits their admin metadata. It is safe for concurrent use.
type Records struct {
	store RecordStore
}

// NewRecords returns Records over store.
func NewRecords(store RecordStore) *Records { return &Records{store: store} }

// GetFor returns job id if u may see it (its owner, or any admin): a *ctserr.Error 10xxx for
// an unknown job, 20000 for another user's.
func GetFor(ctx context.Context, g Getter, u User, id string) (*Job, error) {
	j, err := g.GetJob(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", id)
	}
	if err != nil {
		return nil, err
	}
	if j.User != u.Name && !u.Admin {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "User %s may not access job %s", u.Name, id)
	}
	return j, nil
}

// Get returns a job the user may see: its owner's, or any for an admin.
func (s *Records) Get(ctx context.Context, u User, id string) (*Job, error) {
	return GetFor(ctx, s.store, u, id)
}

// SubJobs returns a job's containers.
func (s *Records) SubJobs(ctx context.Context, id string) ([]SubJob, error) {
	return s.store.GetSubJobs(ctx, id)
}

// List returns the jobs matching f, newest first: the caller sets f.User for a user's own
// jobs.
func (s *Records) List(ctx context.Context, f ListFilter) ([]*Job, error) {
	js, err := s.store.ListJobs(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return js, nil
}

// SubJob returns container n of job id, or a *ctserr.Error 40050.
func (s *Records) SubJob(ctx context.Context, id string, n int) (*SubJob, error) {
	subs, err := s.store.GetSubJobs(ctx, id)
	if err != nil {
		return nil, err
	}
	for i := range subs {
		if subs[i].SubID == n {
			return &subs[i], nil
		}
	}
	return nil, ctserr.New(ctserr.CodeNoSuchSubJob, "No job with ID '%s' and subjob ID %d exists", id, n)
}

// ValidateMetaKey reports why key cannot be an admin_meta key, or nil. MongoDB reads '.' as
// nesting and a leading '$' as an operator (the Python service stored such keys wrongly or
// failed with a 500).
func ValidateMetaKey(key string) error {
	switch {
	case key == "":
		return errors.New("keys may not be empty")
	case utf8.RuneCountInString(key) > MaxMetaKeyLength:
		return fmt.Errorf("key '%s...' is longer than %d characters", string([]rune(key)[:20]), MaxMetaKeyLength)
	case strings.Contains(key, "."):
		return fmt.Errorf("key '%s' contains '.'", key)
	case strings.HasPrefix(key, "$"):
		return fmt.Errorf("key '%s' starts with '$'", key)
	case strings.ContainsFunc(key, unicode.IsControl):
		return fmt.Errorf("key %q contains control characters", key)
	case !utf8.ValidString(key):
		return fmt.Errorf("key %q is not valid UTF-8", key)
	}
	return nil
}

// UpdateAdminMeta sets and unsets admin_meta keys of job id (PUT /admin/jobs/{id}/meta).
// Values are strings, integers (int64) or floats. Errors that are the caller's fault are
// *ctserr.Error: nothing to do, a key both set and unset, an invalid key or value, too many
// keys, no such job.
func (s *Records) UpdateAdminMeta(ctx context.Context, id string, set map[string]any, unset []string) error {
	if len(set) == 0 && len(unset) == 0 {
		return ctserr.New(ctserr.CodeIllegalParameter, "At least one of set_fields or unset_keys must contain keys to alter")
	}
	var both []string
	for _, k := range unset {
		if _, ok := set[k]; ok && !slices.Contains(both, k) {
			both = append(both, k)
		}
	}
	if len(both) > 0 {
		slices.Sort(both)
		return ctserr.New(ctserr.CodeIllegalParameter, "Cannot set and unset the same keys in a single update: %s", pyList(both, 10))
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range append(keys, unset...) {
		if err := ValidateMetaKey(k); err != nil {
			return ctserr.New(ctserr.CodeIllegalParameter, "Illegal admin_meta key: %s", err)
		}
	}
	for _, k := range keys {
		switch v := set[k].(type) {
		case string:
			if utf8.RuneCountInString(v) > MaxMetaValueLength {
				return ctserr.New(ctserr.CodeIllegalParameter, "The value of admin_meta key '%s' is longer than %d characters", k, MaxMetaValueLength)
			}
		case int64, float64:
		default:
			return ctserr.New(ctserr.CodeIllegalParameter, "The value of admin_meta key '%s' must be a string or a number", k)
		}
	}
	j, err := s.store.GetJob(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", id)
	}
	if err != nil {
		return err
	}
	// Counted on the document read just before: two concurrent updates may together pass
	// the cap by a few keys, which only bounds the size loosely.
	n := len(j.AdminMeta)
	for _, k := range keys {
		if _, ok := j.AdminMeta[k]; !ok {
			n++
		}
	}
	for _, k := range unset {
		if _, ok := j.AdminMeta[k]; ok {
			n--
		}
	}
	if n > MaxMetaKeys {
		return ctserr.New(ctserr.CodeIllegalParameter, "A job may have at most %d admin_meta keys; this update would leave %d", MaxMetaKeys, n)
	}
	err = s.store.UpdateAdminMeta(ctx, id, set, unset)
	if errors.Is(err, ErrNotFound) {
		return ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", id)
	}
	return err
}

// pyList renders names as a Python list repr, at most max of them, then " and N more".
func pyList(names []string, limit int) string {
	shown := names
	if len(shown) > limit {
		shown = shown[:limit]
	}
	q := make([]string, len(shown))
	for i, n := range shown {
		q[i] = "'" + n + "'"
	}
	out := "[" + strings.Join(q, ", ") + "]"
	if len(names) > limit {
		out += fmt.Sprintf(" and %d more", len(names)-limit)
	}
	return out
}

// TransitionFor returns the last transition of j into state (PUT /admin/jobs/{id}/notify), or
// a *ctserr.Error 30300 if the job never passed through it.
func TransitionFor(j *Job, state job.State) (Transition, error) {
	for i := len(j.Transitions) - 1; i >= 0; i-- {
		if j.Transitions[i].State == state {
			return j.Transitions[i], nil
		}
	}
	return Transition{}, ctserr.New(ctserr.CodeInvalidJobState, "Job %s never passed through state %s", j.ID, state)
}
