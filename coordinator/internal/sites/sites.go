// Package sites owns the compute sites ("clusters" in the CTS API) as the coordinator knows
// them: their configured limits and worker environment, their active flags, which admins set
// (PUT/DELETE /admin/sites/{site}/active) and which are stored so that every coordinator sees
// them (cached for ActiveTTL per coordinator), and their availability, which their launcher
// reports (a site whose launcher plugin is down is unavailable, with the reason). A site takes
// new jobs only while it is active and available.
//
// It must not launch anything: a site's launcher is the launch package's.
package sites

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// ActiveTTL is how long the sites' active flags are cached per coordinator (as the Python
// service's alru_cache ttl=10).
const ActiveTTL = 10 * time.Second

// Site is a compute site and its limits, as configured.
type Site struct {
	Name            string
	CPUsPerNode     int
	MemoryPerNodeGB float64
	MaxRuntimeMin   float64
	// RequireStaff restricts the site to users with the staff role.
	RequireStaff bool
	// WorkerEnv is added to the environment of every agent of the site (TOKEN_PATH,
	// S3_SECRET_PATH, REFDATA_HOST_PATH, ...: file paths on the workers, never secrets).
	WorkerEnv map[string]string
	// Nodes and Notes are shown by GET /sites (nil nodes: variable).
	Nodes *int
	Notes []string
}

// Store persists the active flags.
type Store interface {
	// InitSites records each named site as active unless it is recorded already.
	InitSites(ctx context.Context, names []string) error
	// SiteStates returns the recorded active flag of every recorded site.
	SiteStates(ctx context.Context) (map[string]bool, error)
	// SetSiteActive records the site's active flag (upsert).
	SetSiteActive(ctx context.Context, name string, active bool) error
}

// Availability tells whether a site's launcher can take work now, and why not
// (*launch.Plugins).
type Availability interface {
	Available(site string) (bool, string)
}

// Status is a configured site with its active flag and its availability.
type Status struct {
	Site
	Active    bool
	Available bool
	// Reason says why the site is unavailable ("" when available).
	Reason string
}

// Directory is the configured sites, their active flags and their availability. It is safe
// for concurrent use.
type Directory struct {
	list   []Site
	byName map[string]*Site
	store  Store
	avail  Availability
	log    *slog.Logger

	// mu guards the cached active flags (see Active).
	mu     sync.Mutex
	active map[string]bool
	read   time.Time
}

// New returns the Directory of the configured sites, in configuration order; avail reports
// their availability (nil: always available).
func New(list []Site, store Store, avail Availability, log *slog.Logger) *Directory {
	d := &Directory{list: list, byName: map[string]*Site{}, store: store, avail: avail, log: log}
	for i := range d.list {
		d.byName[d.list[i].Name] = &d.list[i]
	}
	return d
}

// Names lists the configured sites, in configuration order.
func (d *Directory) Names() []string {
	out := make([]string, 0, len(d.list))
	for _, st := range d.list {
		out = append(out, st.Name)
	}
	return out
}

// Site returns the configured site of that name.
func (d *Directory) Site(name string) (*Site, bool) {
	s, ok := d.byName[name]
	return s, ok
}

// Init records every configured site as active unless it is recorded already (as the Python
// service's initialize_sites). Call it once at start.
func (d *Directory) Init(ctx context.Context) error {
	if err := d.store.InitSites(ctx, d.Names()); err != nil {
		return fmt.Errorf("init sites: %w", err)
	}
	return nil
}

// Active returns the active flags, cached for ActiveTTL. A site the map does not name is
// active.
func (d *Directory) Active(ctx context.Context) (map[string]bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active != nil && time.Since(d.read) < ActiveTTL {
		return d.active, nil
	}
	m, err := d.store.SiteStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("read site states: %w", err)
	}
	d.active, d.read = m, time.Now()
	return m, nil
}

// available reports the site's availability.
func (d *Directory) available(name string) (bool, string) {
	if d.avail == nil {
		return true, ""
	}
	return d.avail.Available(name)
}

// CheckUsable returns a *ctserr.Error 60010 when the site is deactivated, 60020 (with the
// reason) when it is unavailable.
func (d *Directory) CheckUsable(ctx context.Context, name string) error {
	m, err := d.Active(ctx)
	if err != nil {
		return err
	}
	if active, ok := m[name]; ok && !active {
		return ctserr.New(ctserr.CodeJobFlowInactive, "Job flow for cluster %s is disabled", name)
	}
	if ok, reason := d.available(name); !ok {
		return ctserr.New(ctserr.CodeJobFlowUnavailable, "Job flow for cluster %s is unavailable: %s", name, reason)
	}
	return nil
}

// Statuses returns the configured sites with their active flags and availability, in
// configuration order.
func (d *Directory) Statuses(ctx context.Context) ([]Status, error) {
	m, err := d.Active(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(d.list))
	for _, st := range d.list {
		active, ok := m[st.Name]
		up, reason := d.available(st.Name)
		out = append(out, Status{Site: st, Active: active || !ok, Available: up, Reason: reason})
	}
	return out, nil
}

// SetActive activates or deactivates a configured site (PUT/DELETE
// /admin/sites/{site}/active). Other coordinators see the change within ActiveTTL; this
// one at once. An unknown site is a *ctserr.Error 30001.
func (d *Directory) SetActive(ctx context.Context, name string, active bool) error {
	if _, ok := d.byName[name]; !ok {
		return ctserr.New(ctserr.CodeIllegalParameter, "No such site: %s", name)
	}
	if err := d.store.SetSiteActive(ctx, name, active); err != nil {
		return fmt.Errorf("set site %s active=%t: %w", name, active, err)
	}
	d.mu.Lock()
	d.active = nil
	d.mu.Unlock()
	d.log.InfoContext(ctx, "site active flag changed", "site", name, "active", active)
	return nil
}
