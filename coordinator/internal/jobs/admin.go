package jobs

// The admin side of the service (reference §1.7, §2.7): listing, admin metadata, sub-job
// inspection, job clean and the periodic cleaner, and the sites' active flags.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// Limits of admin metadata. The Python service had none (reference §16.8); these keep a job
// document far below MongoDB's 16 MiB.
const (
	MaxMetaKeyLength   = 256
	MaxMetaValueLength = 4096
	MaxMetaKeys        = 100
)

// SiteActiveTTL is how long the sites' active flags are cached per coordinator (as the Python
// service's alru_cache ttl=10).
const SiteActiveTTL = 10 * time.Second

// List returns the jobs matching f, newest first (reference §1.7): the caller sets f.User for
// a user's own jobs.
func (s *Service) List(ctx context.Context, f ListFilter) ([]*Job, error) {
	js, err := s.store.ListJobs(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return js, nil
}

// SubJob returns container n of job id, or a *ctserr.Error 40050.
func (s *Service) SubJob(ctx context.Context, id string, n int) (*SubJob, error) {
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
func (s *Service) UpdateAdminMeta(ctx context.Context, id string, set map[string]any, unset []string) error {
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

// cleaner is the optional Cleanup capability of a site's launcher.
type cleaner interface {
	Cleanup(ctx context.Context, ref launcher.JobRef) error
}

// Clean removes what the job left at its site (the launcher's Cleanup capability, when it has
// one) and marks a terminal job cleaned (DELETE /admin/jobs/{id}/clean). A cleaned job is left
// alone. A job that has not ended is refused with 30300 unless force; a forced clean of a live
// job does not mark it cleaned.
func (s *Service) Clean(ctx context.Context, id string, force bool) error {
	j, err := s.store.GetJob(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", id)
	}
	if err != nil {
		return err
	}
	if j.Cleaned {
		return nil
	}
	if !j.State.Terminal() && !force {
		return ctserr.New(ctserr.CodeInvalidJobState, "Job is not in a terminal state and cannot be cleaned")
	}
	if j.Launch != nil {
		if l, ok := s.SiteLauncher(j.Launch.Site); ok {
			if c, ok := l.(cleaner); ok {
				err := c.Cleanup(ctx, launcher.JobRef{JobID: j.ID, Handle: j.Launch.Handle})
				switch {
				case err == nil, errors.Is(err, launcher.ErrNotFound), errors.Is(err, errors.ErrUnsupported):
				case errors.Is(err, launcher.ErrConflict):
					return ctserr.New(ctserr.CodeInvalidJobState, "The site still runs containers of job %s: %s", j.ID, err)
				default:
					return fmt.Errorf("clean job %s: %w", j.ID, err)
				}
			}
		}
	}
	if !j.State.Terminal() {
		return nil
	}
	err = s.store.SetCleaned(ctx, j.ID)
	if errors.Is(err, ErrConflict) {
		return nil // raced with another cleaner
	}
	return err
}

// CleanerConfig configures RunCleaner.
type CleanerConfig struct {
	// Interval is the time between passes; Jitter a random extra delay up to it, so that
	// several coordinators do not clean in step.
	Interval time.Duration
	Jitter   time.Duration
	// Age is how long after its last transition a terminal job is cleaned.
	Age time.Duration
}

// RunCleaner cleans terminal jobs older than cfg.Age every cfg.Interval (+ jitter) until ctx
// ends. A failing job is logged and retried on the next pass.
func (s *Service) RunCleaner(ctx context.Context, cfg CleanerConfig) error {
	if cfg.Interval <= 0 {
		return errors.New("run cleaner: interval must be positive")
	}
	for {
		d := cfg.Interval
		if cfg.Jitter > 0 {
			d += rand.N(cfg.Jitter)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		n, err := s.CleanPass(ctx, cfg.Age)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "cleaner pass failed", "error", err, "cleaned", n)
		} else if n > 0 {
			s.log.InfoContext(ctx, "cleaner pass", "cleaned", n)
		}
	}
}

// CleanPass cleans up to 1000 terminal jobs whose last transition is older than age, and
// returns how many it cleaned.
func (s *Service) CleanPass(ctx context.Context, age time.Duration) (int, error) {
	js, err := s.store.DirtyJobs(ctx, s.now().Add(-age), 1000)
	if err != nil {
		return 0, fmt.Errorf("find jobs to clean: %w", err)
	}
	var errs []error
	n := 0
	for _, j := range js {
		if err := s.Clean(ctx, j.ID, false); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// SiteStatus is a configured site with its active flag.
type SiteStatus struct {
	Site
	Active bool
}

// InitSites records every configured site as active unless it is recorded already
// (reference §10.1 initialize_sites). Call it once at start.
func (s *Service) InitSites(ctx context.Context) error {
	if err := s.store.InitSites(ctx, s.SiteNames()); err != nil {
		return fmt.Errorf("init sites: %w", err)
	}
	return nil
}

// siteStates returns the active flags, cached for SiteActiveTTL. A site not recorded is
// active.
func (s *Service) siteStates(ctx context.Context) (map[string]bool, error) {
	s.siteMu.Lock()
	defer s.siteMu.Unlock()
	if s.siteActive != nil && time.Since(s.siteRead) < SiteActiveTTL {
		return s.siteActive, nil
	}
	m, err := s.store.SiteStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("read site states: %w", err)
	}
	s.siteActive, s.siteRead = m, time.Now()
	return m, nil
}

func (s *Service) checkSiteActive(ctx context.Context, name string) error {
	m, err := s.siteStates(ctx)
	if err != nil {
		return err
	}
	if active, ok := m[name]; ok && !active {
		return ctserr.New(ctserr.CodeJobFlowInactive, "Job flow for cluster %s is disabled", name)
	}
	return nil
}

// Sites returns the configured sites with their active flags, in configuration order.
func (s *Service) Sites(ctx context.Context) ([]SiteStatus, error) {
	m, err := s.siteStates(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SiteStatus, 0, len(s.cfg.Sites))
	for _, st := range s.cfg.Sites {
		active, ok := m[st.Name]
		out = append(out, SiteStatus{Site: st, Active: active || !ok})
	}
	return out, nil
}

// SetSiteActive activates or deactivates a configured site (PUT/DELETE
// /admin/sites/{site}/active). Other coordinators see the change within SiteActiveTTL; this
// one at once. An unknown site is a *ctserr.Error 30001.
func (s *Service) SetSiteActive(ctx context.Context, name string, active bool) error {
	if _, ok := s.sites[name]; !ok {
		return ctserr.New(ctserr.CodeIllegalParameter, "No such site: %s", name)
	}
	if err := s.store.SetSiteActive(ctx, name, active); err != nil {
		return fmt.Errorf("set site %s active=%t: %w", name, active, err)
	}
	s.siteMu.Lock()
	s.siteActive = nil
	s.siteMu.Unlock()
	s.log.InfoContext(ctx, "site active flag changed", "site", name, "active", active)
	return nil
}
