package refdata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/s3path"
)

// Environment variables the Manager adds to a staging task's environment (beside the site's
// worker environment); the agent's refdata mode reads them.
const (
	EnvAgentMode = "CTS_AGENT_MODE"
	// ModeRefdata is the value of EnvAgentMode for a staging task.
	ModeRefdata    = "refdata"
	EnvID          = "REFDATA_ID"
	EnvS3Path      = "REFDATA_S3_PATH"
	EnvCRC64NVME   = "REFDATA_CRC64NVME"
	EnvUnpack      = "REFDATA_UNPACK"
	EnvCluster     = "REFDATA_CLUSTER"
	jobIDPrefix    = "refdata-"
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

// Launcher is the part of a site's launcher the Manager uses (shared/launcher semantics:
// Submit idempotent per (JobID, Attempt), Cancel idempotent).
type Launcher interface {
	Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error)
	Cancel(ctx context.Context, ref launcher.JobRef) error
}

// Site is a compute site that can stage reference data.
type Site struct {
	Name     string
	Launcher Launcher
	// Env is the worker environment of the site's agents (SERVICE_ROOT_URL, S3_URL,
	// S3_ACCESS_KEY, TOKEN_PATH, S3_SECRET_PATH, REFDATA_HOST_PATH, ...): file paths, never
	// secrets.
	Env map[string]string
}

// Config configures a Manager.
type Config struct {
	Sites []Site
	// Active reports which sites are active; nil means all are.
	Active ActiveFunc
	// StageInterval is how often Run looks for sites waiting to be staged without a poke
	// (default 10 s).
	StageInterval time.Duration
	// CanRead, when set, decides whether a user may register the S3 object p as reference
	// data (the site's access rules: never the log folder); its refusal is a *ctserr.Error.
	CanRead func(user string, p s3path.Path) error
}

// Manager registers reference data and drives its staging. It is safe for concurrent use.
type Manager struct {
	cfg   Config
	store Store
	head  HeadFunc
	log   *slog.Logger
	sites map[string]Site
	now   func() time.Time
	wake  chan struct{}
}

// NewManager returns a Manager.
func NewManager(cfg Config, store Store, head HeadFunc, log *slog.Logger) *Manager {
	if cfg.StageInterval <= 0 {
		cfg.StageInterval = 10 * time.Second
	}
	m := &Manager{cfg: cfg, store: store, head: head, log: log, sites: map[string]Site{},
		now:  func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
		wake: make(chan struct{}, 1)}
	for _, s := range cfg.Sites {
		m.sites[s.Name] = s
	}
	return m
}

// JobID is the launcher job ID of the staging task of refdata id.
func JobID(id string) string { return jobIDPrefix + id }

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
	m.Poke()
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
		if active, ok := flags[s.Name]; !ok || active {
			out = append(out, s.Name)
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

// Update carries the stager's details of a state change.
type Update struct {
	AdminError string `json:"admin_error,omitempty"`
	Traceback  string `json:"traceback,omitempty"`
}

// UpdateState applies a stager's report for refdata id at site (PUT
// /external_exec/refdata/{id}/{site}/update/{state}). Accepted: download_submitted (from
// created), complete (from download_submitted, or from created, recording both), and error
// (from any state; the user sees "An unexpected error occurred", admins the details). A
// repeated complete is accepted as a resend. Other states are 100000; a state the site cannot
// move to is 30400.
func (m *Manager) UpdateState(ctx context.Context, id, site string, to State, u Update) error {
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
	err := m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		st := rd.Status(site)
		if st == nil {
			return false, ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' for cluster %s exists", id, site)
		}
		if to == Complete && st.State == Complete {
			return false, nil // a resend of a report that was applied
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
	m.log.InfoContext(ctx, "refdata state reported", "refdata_id", id, "site", site, "state", to, "admin_error", u.AdminError)
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

// Stage submits the staging task of refdata id at site through the site's launcher and records
// download_submitted. The site must be created (30400 otherwise). Submit is idempotent per
// attempt, so a crash between the launcher accepting the task and the record is harmless.
func (m *Manager) Stage(ctx context.Context, id, site string) error {
	s, ok := m.sites[site]
	if !ok {
		return ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", site)
	}
	rd, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	st := rd.Status(site)
	if st == nil {
		return ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' for cluster %s exists", id, site)
	}
	if st.State != Created {
		return ctserr.New(ctserr.CodeInvalidRefdataState, "Reference data %s at site %s is in state %s, not %s", id, site, st.State, Created)
	}
	env := maps.Clone(s.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[EnvAgentMode] = ModeRefdata
	env[EnvID] = rd.ID
	env[EnvS3Path] = rd.File
	env[EnvCRC64NVME] = rd.CRC64NVME
	env[EnvUnpack] = strconv.FormatBool(rd.Unpack)
	env[EnvCluster] = site
	resp, err := s.Launcher.Submit(ctx, launcher.SubmitRequest{
		JobID: JobID(rd.ID), Attempt: st.Attempt, Containers: 1, CPUs: 1, User: rd.RegisteredBy,
		BatchName: JobID(rd.ID), Env: env,
	})
	if err != nil {
		return fmt.Errorf("stage refdata %s at %s: launcher submit: %w", id, site, err)
	}
	attempt := st.Attempt
	err = m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		st := rd.Status(site)
		if st == nil || st.Attempt != attempt {
			return false, nil // recovered or removed meanwhile: the new attempt is staged anew
		}
		if st.Handle == "" {
			st.Handle = resp.Handle
		}
		if st.State != Created {
			// The stager already reported (complete or error): keep the handle only.
			return true, nil
		}
		move(st, DownloadSubmitted, now)
		return true, nil
	})
	if err != nil {
		return err
	}
	m.log.InfoContext(ctx, "refdata staging submitted", "refdata_id", id, "site", site, "handle", resp.Handle, "existing", resp.Existing)
	return nil
}

// Recover restages refdata id at site: when the site has no status (added after
// registration, or inactive then) it gets one; when its staging ended in error, a new attempt
// starts (the Python service could not restage an error). The S3 object must still have the
// registered CRC (30030). Other states are 40060, as in the Python service.
func (m *Manager) Recover(ctx context.Context, id, site string) error {
	if _, ok := m.sites[site]; !ok {
		return ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", site)
	}
	active, err := m.activeSites(ctx)
	if err != nil {
		return err
	}
	isActive := false
	for _, a := range active {
		isActive = isActive || a == site
	}
	if !isActive {
		return ctserr.New(ctserr.CodeJobFlowInactive, "Job flow for cluster %s is disabled", site)
	}
	rd, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := m.checkObject(ctx, rd.File, rd.CRC64NVME); err != nil {
		return err
	}
	err = m.update(ctx, id, func(rd *Refdata, now time.Time) (bool, error) {
		st := rd.Status(site)
		switch {
		case st == nil:
			rd.Statuses = append(rd.Statuses, newStatus(site, now, 0))
		case st.State == Error:
			attempt := st.Attempt + 1
			move(st, Created, now)
			st.Attempt, st.Handle, st.Cleaned = attempt, "", false
			st.Error, st.AdminError, st.Traceback = "", "", ""
		default:
			return false, ctserr.New(ctserr.CodeNoSuchRefdata,
				"No reference data with ID '%s' without cluster %s or in state %s there exists", id, site, Error)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	m.log.InfoContext(ctx, "refdata recovery queued", "refdata_id", id, "site", site)
	m.Poke()
	return nil
}

// Clean removes what the site's launcher keeps of the staging task of refdata id (its queue
// entry, work directory) and marks the status cleaned. A staging still running is refused
// (30400) unless force, which cancels it. The staged data itself stays: jobs use it.
func (m *Manager) Clean(ctx context.Context, id, site string, force bool) error {
	s, ok := m.sites[site]
	if !ok {
		return ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is not registered", site)
	}
	rd, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	st := rd.Status(site)
	if st == nil {
		return ctserr.New(ctserr.CodeNoSuchRefdata, "No reference data with ID '%s' for cluster %s exists", id, site)
	}
	if !st.State.Terminal() && !force {
		return ctserr.New(ctserr.CodeInvalidRefdataState,
			"Reference data %s at site %s is in state %s; staging has not ended (use force)", id, site, st.State)
	}
	if st.Handle != "" {
		ref := launcher.JobRef{JobID: JobID(id), Handle: st.Handle}
		if err := s.Launcher.Cancel(ctx, ref); err != nil {
			return fmt.Errorf("clean refdata %s at %s: cancel staging task: %w", id, site, err)
		}
		if c, ok := s.Launcher.(launcher.Cleaner); ok && st.State.Terminal() {
			if err := c.Cleanup(ctx, ref); err != nil && !errors.Is(err, launcher.ErrNotFound) && !errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("clean refdata %s at %s: launcher cleanup: %w", id, site, err)
			}
		}
	}
	return m.update(ctx, id, func(rd *Refdata, _ time.Time) (bool, error) {
		st := rd.Status(site)
		if st == nil || st.Cleaned {
			return false, nil
		}
		st.Cleaned = true
		return true, nil
	})
}

// Poke makes Run look for sites waiting to be staged now.
func (m *Manager) Poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run stages every site in created, at once after a Poke and every StageInterval otherwise,
// until ctx ends. It is a loop over the store, not a goroutine per request, so a registration
// saved just before a crash is staged after the restart. A launcher that fails leaves the site
// created for the next pass. It returns nil when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.StageInterval)
	defer t.Stop()
	for {
		m.StagePending(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.wake:
		}
	}
}

// StagePending stages, once, every site in created that is configured and active. Failures
// are logged: the next pass retries.
func (m *Manager) StagePending(ctx context.Context) {
	rds, err := m.store.RefdataWithState(ctx, Created, listLimit)
	if err != nil {
		if ctx.Err() == nil {
			m.log.ErrorContext(ctx, "list refdata to stage", "error", err)
		}
		return
	}
	active, err := m.activeSites(ctx)
	if err != nil {
		m.log.ErrorContext(ctx, "list refdata to stage", "error", err)
		return
	}
	for _, rd := range rds {
		for _, st := range rd.Statuses {
			if st.State != Created || !contains(active, st.Cluster) {
				continue
			}
			if err := m.Stage(ctx, rd.ID, st.Cluster); err != nil && ctx.Err() == nil {
				m.log.WarnContext(ctx, "stage refdata (retried on the next pass)", "refdata_id", rd.ID, "site", st.Cluster, "error", err)
			}
		}
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
