package refdata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/s3path"
	"github.com/kbase/cts/shared/staging"
)

const (
	listLimit      = 1000
	updateAttempts = 20
)

// UnpackExtensions are the file name endings (any case) accepted with unpack=true.
var UnpackExtensions = []string{".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar", ".gz", ".zst"}

// Object is what the Manager needs to know of an S3 object.
type Object struct {
	Size      int64
	CRC64NVME string // "" when the object has no CRC64/NVME
}

// HeadFunc returns an S3 object's size and CRC64/NVME (HeadObject with ChecksumMode
// enabled); failures that are the caller's fault are *ctserr.Error. The coordinator adapts
// objects.Objects.Head to it.
type HeadFunc func(ctx context.Context, s3path string) (Object, error)

// ActiveFunc returns the active flag of the sites recorded as such; a site it does not name is
// active.
type ActiveFunc func(ctx context.Context) (map[string]bool, error)

// Config configures a Manager.
type Config struct {
	// Sites are the configured sites, in configuration order.
	Sites []string
	// Active reports which sites are active; nil means all are.
	Active ActiveFunc
	// CanRead, when set, decides whether a user may register the S3 object p as reference
	// data (the site's access rules: never the log folder); its refusal is a *ctserr.Error.
	CanRead func(user string, p s3path.Path) error
	// Poke is called when stagings wait to be launched (the launch package's submitter);
	// nil: they are found on its next pass.
	Poke func()
}

// Manager registers reference data and keeps its staging records. It is safe for concurrent
// use.
type Manager struct {
	cfg   Config
	store Store
	head  HeadFunc
	log   *slog.Logger
	sites map[string]bool
	now   func() time.Time
}

// NewManager returns a Manager.
func NewManager(cfg Config, store Store, head HeadFunc, log *slog.Logger) *Manager {
	m := &Manager{cfg: cfg, store: store, head: head, log: log, sites: map[string]bool{},
		now: func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }}
	for _, s := range cfg.Sites {
		m.sites[s] = true
	}
	return m
}

// Update carries a stager's report details (shared/staging).
type Update = staging.Update

// UnpackSupported reports whether a file name has an extension the stager can unpack.
func UnpackSupported(file string) bool {
	l := strings.ToLower(file)
	for _, ext := range UnpackExtensions {
		if strings.HasSuffix(l, ext) {
			return true
		}
	}
	return false
}

// Register records reference data at S3 path file with the CRC64/NVME the admin expects and
// queues its staging at every active site (Run submits it). The object must exist with that
// CRC. A second record for the same file is refused (50100).
func (m *Manager) Register(ctx context.Context, admin, file, crc string, unpack bool) (*Refdata, error) {
	p, err := s3path.Parse(file)
	if err != nil {
		return nil, ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	file = p.String()
	if m.cfg.CanRead != nil {
		// Registered data is readable by every job of its images: it must be something the
		// admin's own jobs could read.
		if err := m.cfg.CanRead(admin, p); err != nil {
			return nil, err
		}
	}
	if _, err := checksum.Decode(crc); err != nil {
		return nil, ctserr.New(ctserr.CodeIllegalParameter, "Illegal CRC64/NVME checksum '%s'", crc)
	}
	if unpack && !UnpackSupported(file) {
		return nil, ctserr.New(ctserr.CodeIllegalParameter,
			"Invalid file extension for unpack, only %s are supported", strings.Join(UnpackExtensions, ", "))
	}
	if err := m.checkObject(ctx, file, crc); err != nil {
		return nil, err
	}
	active, err := m.activeSites(ctx)
	if err != nil {
		return nil, err
	}
	if len(active) == 0 {
		return nil, ctserr.New(ctserr.CodeJobFlowUnavailable, "No job flows are available")
	}
	now := m.now()
	rd := &Refdata{ID: uuid.NewString(), File: file, CRC64NVME: crc, Unpack: unpack, RegisteredBy: admin,
		RegisteredOn: now, Statuses: []Status{}}
	for _, s := range active {
		rd.Statuses = append(rd.Statuses, newStatus(s, now, 0))
	}
	if err := m.store.SaveRefdata(ctx, rd); err != nil {
		if errors.Is(err, ErrExists) {
			return nil, ctserr.New(ctserr.CodeRefdataExists, "A reference data record for S3 path %s already exists", file)
		}
		return nil, fmt.Errorf("register refdata %s: %w", file, err)
	}
	m.log.InfoContext(ctx, "refdata registered", "refdata_id", rd.ID, "file", file, "unpack", unpack, "sites", active)
	m.poke()
	return rd, nil
}

func newStatus(site string, now time.Time, attempt int) Status {
	return Status{Cluster: site, State: Created, Transitions: []Transition{{State: Created, Time: now}},
		NERSCDownloadTaskID: []string{}, UpdateTime: now, Attempt: attempt}
}

// checkObject checks that the S3 object exists with the expected CRC64/NVME.
func (m *Manager) checkObject(ctx context.Context, file, crc string) error {
	meta, err := m.head(ctx, file)
	if err != nil {
		return err
	}
	if meta.CRC64NVME == "" {
		return ctserr.New(ctserr.CodeIllegalParameter, "The S3 path '%s' does not have a CRC64/NVME checksum", file)
	}
	if meta.CRC64NVME != crc {
		return ctserr.New(ctserr.CodeChecksumMismatch,
			"The expected CRC64/NVME checksum '%s' for the path '%s' does not match the actual checksum '%s'", crc, file, meta.CRC64NVME)
	}
	return nil
}

// activeSites returns the configured sites that are active, in configuration order.
func (m *Manager) activeSites(ctx context.Context) ([]string, error) {
	flags := map[string]bool{}
	if m.cfg.Active != nil {
		f, err := m.cfg.Active(ctx)
		if err != nil {
			return nil, fmt.Errorf("read site states: %w", err)
		}
		flags = f
	}
	var out []string
	for _, s := range m.cfg.Sites {
		if active, ok := flags[s]; !ok || active {
			out = append(out, s)
		}
	}
	return out, nil
}

// Get returns the public record with the ID (40060 if none).
func (m *Manager) Get(ctx context.Context, id string) (*Refdata, error) {
	rd, err := m.store.GetRefdata(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get refdata %s: %w", id, err)
	}
	return rd, nil
}

// AdminGet is Get for admins; the admin view of the record is AdminView.
func (m *Manager) AdminGet(ctx context.Context, id string) (*Refdata, error) { return m.Get(ctx, id) }

// List returns up to 1000 records sorted by file.
func (m *Manager) List(ctx context.Context) ([]Refdata, error) {
	out, err := m.store.ListRefdata(ctx, "", listLimit)
	if err != nil {
		return nil, fmt.Errorf("list refdata: %w", err)
	}
	return out, nil
}

// ByPath returns the records of one S3 file (up to 1000; there is at most one today).
func (m *Manager) ByPath(ctx context.Context, file string) ([]Refdata, error) {
	p, err := s3path.Parse(file)
	if err != nil {
		return nil, ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	out, err := m.store.ListRefdata(ctx, p.String(), listLimit)
	if err != nil {
		return nil, fmt.Errorf("list refdata of %s: %w", p, err)
	}
	return out, nil
}

// Ready returns nil when refdata id is complete at site; otherwise a *ctserr.Error: 40060 when
// the refdata does not exist, 30400 when it is not (yet) staged there.
func (m *Manager) Ready(ctx context.Context, id, site string) error {
	rd, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	st := rd.Status(site)
	state := State("none")
	if st != nil {
		state = st.State
	}
	if state != Complete {
		return ctserr.New(ctserr.CodeInvalidRefdataState, "Reference data %s is not yet ready at site %s: state %s", id, site, state)
	}
	return nil
}

// UpdateState applies a stager's report for refdata id at site (PUT
// /external_exec/refdata/{id}/{site}/update/{state}). Accepted: download_submitted (from
// created; while download_submitted it is the stager's heartbeat, recorded as LastSeen
// only), complete (from download_submitted, or from created, recording both), and error
// (from any state; the user sees "An unexpected error occurred", admins the details). A
// repeated complete is accepted as a resend. A report of another attempt than the current one
// is 30400. Other states are 100000; a state the site cannot move to is 30400.
func (m *Manager) UpdateState(ctx context.Context, id, site string, to State, u Update) error {
	return m.updateState(ctx, id, site, to, u, false)
}

// StagerUpdate applies a report made with a staging task's own credential, which binds it to
// staging attempt attempt of this refdata and site: as UpdateState with that attempt (a body
// naming another one is refused), and never a change to a staging that ended (complete or
// error; a repeated complete stays a resend), which only the reconciler and admins may move.
func (m *Manager) StagerUpdate(ctx context.Context, id, site string, attempt int, to State, u Update) error {
	if u.Attempt != nil && *u.Attempt != attempt {
		return ctserr.New(ctserr.CodeUnauthorized, "The stager's credential is for staging attempt %d, not attempt %d", attempt, *u.Attempt)
	}
	u.Attempt = &attempt
	return m.updateState(ctx, id, site, to, u, true)
}

func (m *Manager) updateState(ctx context.Context, id, site string, to State, u Update, stager bool) error {
	switch to {
	case DownloadSubmitted, Complete, Error:
	case Created:
		return ctserr.New(ctserr.CodeUnsupportedOperation, "Cannot update reference data to state %s", to)
	default:
		return ctserr.New(ctserr.CodeIllegalParameter, "Unknown reference data state '%s'", to)
	}
	if to == Error && u.AdminError == "" {
		u.AdminError = "the stager reported an error without details"
	}
	heartbeat := false
	err := m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		heartbeat = false
		st := rd.Status(site)
		if st == nil {
			return false, ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' for cluster %s exists", id, site)
		}
		if u.Attempt != nil && *u.Attempt != st.Attempt {
			return false, ctserr.New(ctserr.CodeInvalidRefdataState,
				"Reference data %s at site %s is at staging attempt %d; this report is of attempt %d, which was replaced", id, site, st.Attempt, *u.Attempt)
		}
		if to == Complete && st.State == Complete {
			return false, nil // a resend of a report that was applied
		}
		if stager && st.State.Terminal() {
			return false, ctserr.New(ctserr.CodeInvalidRefdataState,
				"Reference data %s at site %s is %s: its stager may not change it any more", id, site, st.State)
		}
		st.LastSeen = now
		if to == DownloadSubmitted && st.State == DownloadSubmitted {
			heartbeat = true
			return true, nil
		}
		if to == Complete && st.State == Created {
			move(st, DownloadSubmitted, now)
		}
		if !CanTransition(st.State, to) {
			return false, ctserr.New(ctserr.CodeInvalidRefdataState,
				"Reference data %s at site %s is in state %s and cannot move to %s", id, site, st.State, to)
		}
		move(st, to, now)
		if to == Error {
			st.Error, st.AdminError, st.Traceback = ctserr.UnexpectedMessage, u.AdminError, u.Traceback
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if !heartbeat {
		m.log.InfoContext(ctx, "refdata state reported", "refdata_id", id, "site", site, "state", to, "admin_error", u.AdminError)
	}
	return nil
}

func move(st *Status, to State, now time.Time) {
	st.State = to
	st.Transitions = append(st.Transitions, Transition{State: to, Time: now})
	st.UpdateTime = now
}

// update applies fn to record id and writes the statuses if fn reports a change, retrying on
// concurrent changes. fn must be safe to run several times.
func (m *Manager) update(ctx context.Context, id string, fn func(rd *Refdata, now time.Time) (bool, error)) error {
	for range updateAttempts {
		rd, err := m.Get(ctx, id)
		if err != nil {
			return err
		}
		changed, err := fn(rd, m.now())
		if err != nil || !changed {
			return err
		}
		err = m.store.UpdateRefdataStatuses(ctx, id, rd.Rev, rd.Statuses)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if errors.Is(err, ErrNotFound) {
			return notFound(id)
		}
		if err != nil {
			return fmt.Errorf("update refdata %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("update refdata %s: %w after %d attempts", id, ErrConflict, updateAttempts)
}

// Task is one attempt of a staging to launch.
type Task struct {
	ID, Site string
	Attempt  int
	// File, CRC64NVME and Unpack are what the stager stages; User registered it.
	File, CRC64NVME string
	Unpack          bool
	User            string
}

// Pending returns up to limit stagings waiting to be launched: sites in created that are
// configured and active.
func (m *Manager) Pending(ctx context.Context, limit int) ([]Task, error) {
	rds, err := m.store.RefdataWithState(ctx, Created, limit)
	if err != nil {
		return nil, fmt.Errorf("refdata to stage: %w", err)
	}
	active, err := m.activeSites(ctx)
	if err != nil {
		return nil, err
	}
	var out []Task
	for _, rd := range rds {
		for _, st := range rd.Statuses {
			if st.State != Created || !slices.Contains(active, st.Cluster) {
				continue
			}
			out = append(out, Task{ID: rd.ID, Site: st.Cluster, Attempt: st.Attempt, File: rd.File,
				CRC64NVME: rd.CRC64NVME, Unpack: rd.Unpack, User: rd.RegisteredBy})
		}
	}
	return out, nil
}

// Launched records that the launcher accepted the attempt of the staging of refdata id at
// site, with handle: download_submitted (unless the stager reported first), the handle and the
// launch time. It reports false, changing nothing, when the site moved on to another attempt
// meanwhile (recovered): the caller then takes the launch back.
func (m *Manager) Launched(ctx context.Context, id, site string, attempt int, handle string) (bool, error) {
	current := false
	err := m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		st := rd.Status(site)
		current = st != nil && st.Attempt == attempt
		if !current {
			return false, nil
		}
		if st.Handle == "" {
			st.Handle, st.LaunchedAt = handle, now
		}
		if st.State == Created {
			move(st, DownloadSubmitted, now)
		}
		return true, nil
	})
	if err != nil {
		return false, err
	}
	if !current {
		m.log.InfoContext(ctx, "refdata staging launched for an attempt that was replaced meanwhile: nothing recorded, the caller takes it back",
			"refdata_id", id, "site", site, "attempt", attempt, "handle", handle)
		return false, nil
	}
	m.log.InfoContext(ctx, "refdata staging launched", "refdata_id", id, "site", site, "attempt", attempt, "handle", handle)
	return true, nil
}

// Staging is one site's staging that has not ended, for the reconciler.
type Staging struct {
	ID     string
	File   string
	Status Status
}

// InFlight returns up to limit stagings per state that have not ended (created,
// download_submitted).
func (m *Manager) InFlight(ctx context.Context, limit int) ([]Staging, error) {
	var out []Staging
	for _, state := range []State{Created, DownloadSubmitted} {
		rds, err := m.store.RefdataWithState(ctx, state, limit)
		if err != nil {
			return nil, fmt.Errorf("refdata in flight: %w", err)
		}
		for _, rd := range rds {
			for _, st := range rd.Statuses {
				if st.State == state {
					out = append(out, Staging{ID: rd.ID, File: rd.File, Status: st})
				}
			}
		}
	}
	return out, nil
}

// Fail ends the attempt of the staging of refdata id at site in error with adminErr (the
// reconciler's verdict), if that attempt is still current and has not ended. It reports
// whether it ended it.
func (m *Manager) Fail(ctx context.Context, id, site string, attempt int, adminErr string) (bool, error) {
	ended := false
	err := m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		st := rd.Status(site)
		ended = st != nil && st.Attempt == attempt && !st.State.Terminal()
		if !ended {
			return false, nil
		}
		move(st, Error, now)
		st.Error, st.AdminError, st.Traceback = ctserr.UnexpectedMessage, adminErr, ""
		return true, nil
	})
	if err != nil {
		return false, err
	}
	if ended {
		m.log.WarnContext(ctx, "refdata staging failed by the reconciler", "refdata_id", id, "site", site, "attempt", attempt, "admin_error", adminErr)
	}
	return ended, nil
}

// Restage starts a new attempt of the staging of refdata id at site after an infrastructure
// failure of attempt (the reconciler's retry): the site goes back to created with the reason
// recorded in Retries, as long as attempt is still current and has not ended and fewer than
// maxRetries retries were made. Staging is idempotent (a stager that finds the data published
// is done), so nothing has to be undone. It reports whether it restaged.
func (m *Manager) Restage(ctx context.Context, id, site string, attempt int, reason string, maxRetries int) (bool, error) {
	restaged := false
	err := m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		st := rd.Status(site)
		restaged = st != nil && st.Attempt == attempt && !st.State.Terminal() && len(st.Retries) < maxRetries
		if !restaged {
			return false, nil
		}
		retries := append(slices.Clone(st.Retries), fmt.Sprintf("attempt %d (%s): %s", st.Attempt, st.Handle, reason))
		restart(st, now)
		st.Retries = retries
		return true, nil
	})
	if err != nil {
		return false, err
	}
	if restaged {
		m.log.WarnContext(ctx, "refdata staging restaged after an infrastructure failure", "refdata_id", id, "site", site,
			"attempt", attempt+1, "reason", reason)
		m.poke()
	}
	return restaged, nil
}

// restart moves a status to created as a new attempt: through error first when it had not
// ended (the state machine has no other way back), keeping the history.
func restart(st *Status, now time.Time) {
	if !st.State.Terminal() {
		move(st, Error, now)
	}
	attempt := st.Attempt + 1
	move(st, Created, now)
	st.Attempt, st.Handle, st.Cleaned = attempt, "", false
	st.LaunchedAt, st.LastSeen = time.Time{}, time.Time{}
	st.Error, st.AdminError, st.Traceback = "", "", ""
}

// Recover restages refdata id at site (PUT /admin/refdata/{id}/{site}/recover): when the site
// has no status (added after registration, or inactive then) it gets one; when its staging
// ended in error, or is stuck in created or download_submitted, a new attempt starts (the
// Python service could only add a missing site). The S3 object must still have the registered
// CRC (30030); a complete staging is 40060, as in the Python service. It returns the status
// as it was before (nil when the site had none), whose launched task the caller stops.
func (m *Manager) Recover(ctx context.Context, id, site string) (*Status, error) {
	if !m.sites[site] {
		return nil, ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", site)
	}
	active, err := m.activeSites(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(active, site) {
		return nil, ctserr.New(ctserr.CodeJobFlowInactive, "Job flow for cluster %s is disabled", site)
	}
	rd, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := m.checkObject(ctx, rd.File, rd.CRC64NVME); err != nil {
		return nil, err
	}
	var before *Status
	err = m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		before = nil
		st := rd.Status(site)
		switch {
		case st == nil:
			rd.Statuses = append(rd.Statuses, newStatus(site, now, 0))
		case st.State == Complete:
			return false, ctserr.New(ctserr.CodeNoSuchRefdata,
				"No reference data with ID '%s' without cluster %s or not %s there exists", id, site, Complete)
		default:
			b := *st
			before = &b
			restart(st, now)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	m.log.InfoContext(ctx, "refdata recovery queued", "refdata_id", id, "site", site)
	m.poke()
	return before, nil
}

// Cleanable returns the status of the staging of refdata id at site if it may be cleaned: it
// ended, or force. A staging still running without force is 30400.
func (m *Manager) Cleanable(ctx context.Context, id, site string, force bool) (*Status, error) {
	if !m.sites[site] {
		return nil, ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", site)
	}
	rd, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	st := rd.Status(site)
	if st == nil {
		return nil, ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' for cluster %s exists", id, site)
	}
	if !st.State.Terminal() && !force {
		return nil, ctserr.New(ctserr.CodeInvalidRefdataState,
			"Reference data %s at site %s is in state %s; staging has not ended (use force)", id, site, st.State)
	}
	return st, nil
}

// MarkCleaned records that the staging task of refdata id at site was cleaned up.
func (m *Manager) MarkCleaned(ctx context.Context, id, site string) error {
	return m.update(ctx, id, func(rd *Refdata, _ time.Time) (bool, error) {
		st := rd.Status(site)
		if st == nil || st.Cleaned {
			return false, nil
		}
		st.Cleaned = true
		return true, nil
	})
}

func (m *Manager) poke() {
	if m.cfg.Poke != nil {
		m.cfg.Poke()
	}
}
