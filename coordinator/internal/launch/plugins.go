package launch

// The supervised registry of launcher plugins: one plugin process per site, started and
// configured at boot, watched, and restarted with backoff when it exits. While a site's plugin
// is down the site is unavailable (with the reason), every call to its launcher fails fast with
// launcher.ErrUnavailable (so the submitter, the cancels and the reconciler simply try again on
// their next pass), and once it is back the Restarted event lets the submitter and the
// reconciler look at the site's work in flight at once. A plugin's launched containers do not
// depend on the plugin process (the local plugin's supervisors and HTCondor keep them), and
// Submit is idempotent per (job, attempt), so a launch whose answer was lost with the process
// is found again, not repeated.
//
//	         start+configure ok
//	  down ───────────────────────► up ──── process exited (polled, or a call saw it) ───┐
//	   ▲  start or configure failed: wait backoff (doubling up to the max), try again      │
//	   └───────────────────────────────────────────────────────────────────────────────────┘

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// PluginSpec says how to start one site's launcher plugin.
type PluginSpec struct {
	Site string
	// Host is how the process is started (path, arguments, its whole environment, logger).
	Host launcher.HostConfig
	// Config is the plugin's opaque configuration, sent with Configure after every start.
	Config []byte
}

// SuperviseConfig tunes the supervision. Zero fields take the defaults.
type SuperviseConfig struct {
	// RestartBackoff is the wait before restarting a plugin that exited (default 1 s). Each
	// failed restart doubles it, up to RestartBackoffMax (default 1 min); a plugin that stayed
	// up for RestartBackoffMax starts again from RestartBackoff.
	RestartBackoff    time.Duration
	RestartBackoffMax time.Duration
	// CheckInterval is how often the plugin processes are checked (default 1 s); a call that
	// finds its plugin gone wakes the supervisor at once.
	CheckInterval time.Duration
	// StartTimeout bounds one start and configure (default 30 s).
	StartTimeout time.Duration
}

func (c SuperviseConfig) withDefaults() SuperviseConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RestartBackoff, time.Second)
	def(&c.RestartBackoffMax, time.Minute)
	def(&c.CheckInterval, time.Second)
	def(&c.StartTimeout, 30*time.Second)
	c.RestartBackoffMax = max(c.RestartBackoffMax, c.RestartBackoff)
	return c
}

// PluginEvents receives the registry's changes. Nil fields are skipped. They are called from
// the supervisor's goroutine and must not block.
type PluginEvents struct {
	// Availability is called when a site's plugin goes down (with the reason) or is back.
	Availability func(site string, available bool, reason string)
	// Restarted is called once a site's plugin was restarted and configured: the site's work
	// in flight should be looked at again.
	Restarted func(site string)
}

// Plugins is the supervised registry of the sites' launcher plugins. It is safe for
// concurrent use.
type Plugins struct {
	cfg   SuperviseConfig
	log   *slog.Logger
	order []string
	sites map[string]*Plugin
	wake  chan struct{}
}

// Plugin is one site's supervised plugin: a Launcher (with the Status and Cleanup
// capabilities) whose calls go to the current plugin process, or fail with an error wrapping
// launcher.ErrUnavailable while there is none.
type Plugin struct {
	spec PluginSpec
	reg  *Plugins

	mu       sync.Mutex
	client   *launcher.Client // nil while down
	reason   string           // why the plugin is down
	upSince  time.Time
	backoff  time.Duration // the wait before the next restart attempt
	nextTry  time.Time
	restarts int
}

var (
	_ Launcher         = (*Plugin)(nil)
	_ StatusLauncher   = (*Plugin)(nil)
	_ launcher.Cleaner = (*Plugin)(nil)
)

// StartPlugins starts and configures every site's plugin. A plugin that cannot start or
// refuses its configuration at boot is a configuration error: every plugin started so far is
// stopped and the error returned. Call Run to supervise them and Close to stop them.
func StartPlugins(ctx context.Context, specs []PluginSpec, cfg SuperviseConfig, log *slog.Logger) (*Plugins, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Plugins{cfg: cfg.withDefaults(), log: log, sites: map[string]*Plugin{}, wake: make(chan struct{}, 1)}
	for _, sp := range specs {
		if _, dup := r.sites[sp.Site]; dup {
			r.Close()
			return nil, fmt.Errorf("start plugins: site %s twice", sp.Site)
		}
		p := &Plugin{spec: sp, reg: r, backoff: r.cfg.RestartBackoff}
		c, err := r.start(ctx, sp)
		if err != nil {
			r.Close()
			return nil, err
		}
		p.client, p.upSince = c, time.Now()
		r.sites[sp.Site], r.order = p, append(r.order, sp.Site)
	}
	return r, nil
}

// start starts one plugin process and configures it.
func (r *Plugins) start(ctx context.Context, sp PluginSpec) (*launcher.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StartTimeout)
	defer cancel()
	c, err := launcher.Start(ctx, sp.Host)
	if err != nil {
		return nil, fmt.Errorf("site %s: start launcher plugin: %w", sp.Site, err)
	}
	if err := c.Configure(ctx, sp.Config); err != nil {
		c.Close()
		return nil, fmt.Errorf("site %s: configure launcher plugin: %w", sp.Site, err)
	}
	return c, nil
}

// Plugin returns the supervised plugin of a site.
func (r *Plugins) Plugin(site string) (*Plugin, bool) {
	p, ok := r.sites[site]
	return p, ok
}

// Available reports whether the site's plugin runs now, and why not. A site without a plugin
// here is available (its launcher is not supervised by this registry).
func (r *Plugins) Available(site string) (bool, string) {
	p, ok := r.sites[site]
	if !ok {
		return true, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client != nil, p.reason
}

// Run supervises the plugins until ctx ends: a plugin whose process exited is marked down and
// restarted after its backoff. It does not stop the plugins when it returns (Close does).
func (r *Plugins) Run(ctx context.Context, ev PluginEvents) error {
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		var next time.Time // the earliest restart due
		for _, site := range r.order {
			if at := r.supervise(ctx, r.sites[site], ev); !at.IsZero() && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		retry.Stop()
		if !next.IsZero() {
			retry.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		case <-retry.C:
		}
	}
}

// supervise looks at one plugin once: notices an exit, and restarts a plugin that is due. It
// returns when the plugin's next restart is due (zero while it runs).
func (r *Plugins) supervise(ctx context.Context, p *Plugin, ev PluginEvents) time.Time {
	p.mu.Lock()
	if c := p.client; c != nil {
		if !c.Exited() {
			p.mu.Unlock()
			return time.Time{}
		}
		p.down(c, "the launcher plugin process exited")
		reason, next := p.reason, p.nextTry
		p.mu.Unlock()
		r.log.WarnContext(ctx, "launcher plugin exited; restarting", "site", p.spec.Site, "pid", c.Pid(),
			"restart_in", time.Until(next).Round(time.Millisecond))
		if ev.Availability != nil {
			ev.Availability(p.spec.Site, false, reason)
		}
		return next
	}
	if next := p.nextTry; time.Now().Before(next) {
		p.mu.Unlock()
		return next
	}
	p.mu.Unlock()
	if ctx.Err() != nil {
		return time.Time{}
	}
	c, err := r.start(ctx, p.spec)
	p.mu.Lock()
	if err != nil {
		wait := p.backoff
		p.nextTry = time.Now().Add(wait)
		p.backoff = min(2*p.backoff, r.cfg.RestartBackoffMax)
		p.reason = fmt.Sprintf("the launcher plugin process exited and could not be restarted (next attempt in %v): %v", wait, err)
		reason, next := p.reason, p.nextTry
		p.mu.Unlock()
		r.log.WarnContext(ctx, "launcher plugin restart failed", "site", p.spec.Site, "error", err, "retry_in", wait)
		if ev.Availability != nil {
			ev.Availability(p.spec.Site, false, reason)
		}
		return next
	}
	p.client, p.reason, p.upSince = c, "", time.Now()
	p.restarts++
	n := p.restarts
	p.mu.Unlock()
	r.log.InfoContext(ctx, "launcher plugin restarted", "site", p.spec.Site, "pid", c.Pid(), "restarts", n)
	if ev.Availability != nil {
		ev.Availability(p.spec.Site, true, "")
	}
	if ev.Restarted != nil {
		ev.Restarted(p.spec.Site)
	}
	return time.Time{}
}

// down marks the plugin down after its client c ended (c is closed), and schedules the
// restart. A plugin that had been up for RestartBackoffMax starts its backoff afresh. p.mu is
// held.
func (p *Plugin) down(c *launcher.Client, reason string) {
	c.Close()
	if time.Since(p.upSince) >= p.reg.cfg.RestartBackoffMax {
		p.backoff = p.reg.cfg.RestartBackoff
	}
	p.client, p.reason = nil, reason
	p.nextTry = time.Now().Add(p.backoff)
	p.backoff = min(2*p.backoff, p.reg.cfg.RestartBackoffMax)
}

// Close stops every plugin process. The plugins' launched containers are not affected.
func (r *Plugins) Close() {
	for _, p := range r.sites {
		p.mu.Lock()
		if p.client != nil {
			p.client.Close()
			p.client, p.reason = nil, "the coordinator is stopping"
		}
		p.mu.Unlock()
	}
}

// Restarts is how many times the plugin was restarted.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Pid is the current plugin process's ID (0 while down).
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return 0
	}
	return p.client.Pid()
}

// current returns the live client, or an error wrapping launcher.ErrUnavailable.
func (p *Plugin) current(op string) (*launcher.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return nil, fmt.Errorf("%s at site %s: %s: %w", op, p.spec.Site, p.reason, launcher.ErrUnavailable)
	}
	return p.client, nil
}

// after looks at a call's error: a call that found the process gone wakes the supervisor, so
// that the restart does not wait for its next check.
func (p *Plugin) after(err error) error {
	if err != nil && errors.Is(err, launcher.ErrPluginExited) {
		select {
		case p.reg.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// Submit forwards to the current plugin process.
func (p *Plugin) Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	c, err := p.current("submit")
	if err != nil {
		return launcher.SubmitResponse{}, err
	}
	resp, err := c.Submit(ctx, req)
	return resp, p.after(err)
}

// Cancel forwards to the current plugin process.
func (p *Plugin) Cancel(ctx context.Context, ref launcher.JobRef) error {
	c, err := p.current("cancel")
	if err != nil {
		return err
	}
	return p.after(c.Cancel(ctx, ref))
}

// Status forwards to the current plugin process.
func (p *Plugin) Status(ctx context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	c, err := p.current("status")
	if err != nil {
		return nil, err
	}
	sts, err := c.Status(ctx, refs)
	return sts, p.after(err)
}

// Cleanup forwards to the current plugin process.
func (p *Plugin) Cleanup(ctx context.Context, ref launcher.JobRef) error {
	c, err := p.current("cleanup")
	if err != nil {
		return err
	}
	return p.after(c.Cleanup(ctx, ref))
}
