// Package app is the coordinator's composition root: it builds every component from a
// config.Config (store, notifier, auth client, S3, image manager, launcher plugins, sites, the
// job lifecycle of admission, launch and ingest, REST API, agent endpoint, metrics and probes), serves HTTP, runs the background
// loops, and stops them all in order. cmd/cts-coordinator, dev mode and the end-to-end tests
// use it.
package app

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/api"
	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/config"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/coordinator/internal/lease"
	"github.com/kbase/cts/coordinator/internal/metrics"
	"github.com/kbase/cts/coordinator/internal/notify"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/coordinator/internal/reconcile"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/internal/signals"
	"github.com/kbase/cts/coordinator/internal/sites"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/coordinator/internal/ui"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// Config is the coordinator configuration (see package config).
type Config = config.Config

// Site is a compute site of the configuration.
type Site = config.Site

// LoadConfig reads the configuration file (optional) and the environment.
func LoadConfig(path string, lookup func(string) (string, bool)) (Config, error) {
	return config.Load(path, lookup)
}

// DefaultConfig returns the configuration defaults.
func DefaultConfig() Config { return config.Default() }

// Version is reported by GET /; set at build time with -ldflags.
var (
	Version = "0.1.0"
	GitHash = "unknown"
)

// App is a running coordinator.
type App struct {
	cfg      Config
	log      *slog.Logger
	ln       net.Listener
	srv      *http.Server
	store    *store.Store
	notifier *notify.Notifier
	sites    *sites.Directory
	launch   *launch.Service
	agents   *agentws.Handler
	ingest   *ingest.Service
	plugins  *launch.Plugins
	refdata  *refdata.Manager
	metrics  *metrics.Metrics
	// replica names this process among the replicas: the replica's stable name and this
	// process's incarnation of it; bus and leases are what it shares with them (stop signals
	// and pokes; the periodic loops, each run by one replica at a time).
	replica lease.Holder
	bus     *signals.Bus
	leases  *lease.Leases
	// counts is a second MongoDB client for the metrics counts and the readiness probe, so
	// that neither competes with the store's pool.
	counts *mongo.Client
}

// Option adjusts how New builds the coordinator.
type Option func(*options)

type options struct {
	ln net.Listener
}

// WithListener makes the coordinator serve on ln instead of binding cfg.Listen (which should
// name ln's address; it is what the logs show). A caller that must know the address before
// the coordinator starts (dev mode writes it into the service URL) binds it and hands it over
// here, so nothing can take the port in between. New owns ln from then on: it closes it when
// it fails, and Run closes it when it ends.
func WithListener(ln net.Listener) Option { return func(o *options) { o.ln = ln } }

// New builds the coordinator and binds its listener (or takes the one of WithListener);
// nothing runs until Run. It first checks that MongoDB, S3 and Kafka answer (each within
// StartTimeout), so a wrong address or a service that is down ends the start with an error
// naming it. When New fails, what it started is stopped again.
func New(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) (_ *App, err error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := cfg.Validate(); err != nil {
		if o.ln != nil {
			_ = o.ln.Close()
		}
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	// Every line logged while serving a request carries its request_id.
	log = slog.New(api.LogHandler(log.Handler()))
	// a is not the named result: every failure returns nil, and the cleanup below must still
	// see what was built.
	a := &App{cfg: cfg, log: log, ln: o.ln}
	defer func() {
		if err != nil {
			a.close(context.Background())
		}
	}()
	a.store, err = connectStore(ctx, cfg, log.With("component", "store"))
	if err != nil {
		return nil, err
	}
	if err := a.store.InitRefdata(ctx); err != nil {
		return nil, fmt.Errorf("reference data collection: %w", err)
	}
	if err := a.store.InitReplicas(ctx); err != nil {
		return nil, fmt.Errorf("replica collections: %w", err)
	}
	a.replica = lease.Holder{Name: replicaName(cfg, a.ln), Incarnation: time.Now().UnixNano()}
	log.Info("replica", "replica", a.replica.Name, "incarnation", a.replica.Incarnation)
	a.bus = signals.New(signals.Config{Interval: cfg.Replicas.PollInterval}, a.store, a.replica.String(), log.With("component", "signals"))
	a.leases = lease.New(lease.Config{TTL: cfg.Replicas.LeaseTTL}, a.store, a.replica, log.With("component", "lease"))
	a.notifier, err = notify.New(notify.Config{Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.Topic, SendTimeout: cfg.Kafka.Timeout},
		a.store, log.With("component", "notify"))
	if err != nil {
		return nil, fmt.Errorf("kafka notifier: %w", err)
	}
	authc, err := auth.New(ctx, auth.Config{
		URL: cfg.Auth.URL, AdminRoles: cfg.Auth.AdminRoles, StaffRole: cfg.Auth.StaffRole,
		ExecutorRole: cfg.Auth.ExecutorRole, RefdataRole: cfg.Auth.RefdataRole, Timeout: cfg.Auth.Timeout,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("auth2 client: %w", err)
	}
	objs := objects.Open(objects.Config{
		Endpoint: cfg.S3.Endpoint, AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey,
		Region: cfg.S3.Region, Insecure: cfg.S3.Insecure, Timeout: cfg.S3.Timeout,
	})
	if err := checkS3(ctx, objs.Client(), cfg); err != nil {
		return nil, err
	}
	if err := checkKafka(ctx, cfg.Kafka.Brokers); err != nil {
		return nil, err
	}
	rules, err := access.New(cfg.AccessConfig())
	if err != nil {
		return nil, fmt.Errorf("access rules: %w", err)
	}
	imgs := images.NewManager(a.store)
	a.metrics = metrics.New(metrics.Options{Version: Version, GitHash: GitHash, Agents: func() int { return a.agents.Connected() },
		Log: log.With("component", "metrics")})
	a.counts, err = mongo.Connect(store.ClientOptions(cfg.Mongo.URI, cfg.Mongo.Timeout))
	if err != nil {
		return nil, fmt.Errorf("connect to MongoDB for metrics: %w", err)
	}

	var siteList []sites.Site
	var specs []launch.PluginSpec
	for _, sc := range cfg.Sites {
		pc, _ := json.Marshal(sc.PluginConfig)
		// A plugin gets only PATH and HOME of our environment: never the coordinator's secrets.
		specs = append(specs, launch.PluginSpec{Site: sc.Name, Config: pc, Host: launcher.HostConfig{
			Path: sc.Plugin, Logger: log.With("plugin", sc.Name),
			Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")},
		}})
		siteList = append(siteList, sites.Site{
			Name: sc.Name, CPUsPerNode: sc.CPUsPerNode, MemoryPerNodeGB: sc.MemoryPerNodeGB,
			MaxRuntimeMin: sc.MaxRuntimeMin, RequireStaff: sc.RequireStaff, WorkerEnv: sc.WorkerEnv,
			Nodes: sc.Nodes, Notes: sc.Notes,
		})
	}
	a.plugins, err = launch.StartPlugins(ctx, specs, launch.SuperviseConfig{
		RestartBackoff: cfg.Launchers.RestartBackoff, RestartBackoffMax: cfg.Launchers.RestartBackoffMax,
		CheckInterval: cfg.Launchers.CheckInterval,
	}, log.With("component", "launch"))
	if err != nil {
		return nil, err
	}
	var launchSites []launch.Site
	for _, sc := range cfg.Sites {
		p, _ := a.plugins.Plugin(sc.Name)
		launchSites = append(launchSites, launch.Site{Name: sc.Name, Launcher: p, WorkerEnv: sc.WorkerEnv})
		a.metrics.SiteAvailable(sc.Name, true)
	}
	a.sites = sites.New(siteList, a.store, a.plugins, log.With("component", "sites"))
	if err := a.sites.Init(ctx); err != nil {
		return nil, err
	}
	s3url := cfg.S3.WorkerEndpoint
	if s3url == "" {
		s3url = cfg.S3.Endpoint
	}
	// Reference data: the records here; its staging tasks are launched work (package launch).
	a.refdata = refdata.NewManager(refdata.Config{Sites: a.sites.Names(), CanRead: rules.CanRead, Active: a.sites.Active,
		Poke: func() { a.launch.Poke() }}, a.store,
		func(ctx context.Context, p string) (refdata.Object, error) {
			m, err := objs.Head(ctx, p)
			return refdata.Object{Size: m.Size, CRC64NVME: m.CRC64NVME}, err
		}, log.With("component", "refdata"))
	imgs.SetRefdata(func(ctx context.Context, id string) error {
		_, err := a.refdata.Get(ctx, id)
		return err
	})

	// Agent credentials: signed with a key every replica reads from MongoDB (made by the
	// first replica to start), so an agent may reconnect to any replica.
	key, err := a.store.AgentCredentialKey(ctx, agentcred.MinKeyBytes)
	if err != nil {
		return nil, err
	}
	creds, err := agentcred.New(key)
	if err != nil {
		return nil, err
	}

	// The job lifecycle: admission creates jobs, launch hands them to the sites' launchers,
	// ingest applies the agents' reports. Every job transition goes through the one Mover.
	// Transitions poke the Kafka sender, wherever it runs (the replica holding its lease).
	notifyPoke := &crossPoke{local: a.notifier.Poke, bus: a.bus, name: pokeNotifier}
	a.bus.OnPoke(pokeNotifier, a.notifier.Poke)
	mover := jobs.NewMover(&meteredTransitions{a.store, a.metrics}, notifyPoke, log.With("component", "jobs"))
	ing := ingest.New(ingest.Config{LogDir: cfg.Jobs.LogDir}, a.store, mover, &meteredObjects{objs, a.metrics},
		log.With("component", "ingest"))
	a.ingest = ing
	a.launch = launch.New(launch.Config{
		ServiceURL: cfg.ServiceURL, S3URL: s3url, S3AccessKey: cfg.S3.AccessKey, S3Insecure: cfg.S3.Insecure,
		LogDir: cfg.Jobs.LogDir, SubmitInterval: cfg.Jobs.SubmitInterval, Sites: launchSites, Credentials: creds,
	}, launch.Deps{Store: a.store, Mover: mover, Fold: ing, Stagings: a.refdata, Signals: a.bus,
		Log: log.With("component", "launch")})
	a.bus.OnPoke(launch.PokeSubmitter, a.launch.Wake)
	adm := admission.New(admission.Config{
		LogDir: cfg.Jobs.LogDir, Access: rules, MaxCPUHours: cfg.Jobs.MaxCPUHours, Refdata: a.refdata,
	}, admission.Deps{Store: a.store, Sites: a.sites, Objects: objs, Images: imgs, Notify: notifyPoke, Submitter: a.launch,
		Log: log.With("component", "admission")})

	var apiSrv *api.Server
	a.agents = agentws.New(agentws.Config{
		Credentials: creds, Shared: a.store, Replica: a.replica.String(), SharedInterval: cfg.Replicas.PollInterval,
		StoreWork: cfg.Agents.StoreWork, HeartbeatInterval: cfg.Agents.HeartbeatInterval, Presence: a.store,
	}, ing, a.launch, func(r *http.Request) error { return apiSrv.AuthorizeExecutor(r) },
		log.With("component", "agentws"), func(w http.ResponseWriter, r *http.Request, err error) { apiSrv.WriteError(w, r, err) })
	dashboard, err := ui.New()
	if err != nil {
		return nil, err
	}
	apiSrv = api.New(api.Config{Version: Version, GitHash: GitHash, Access: rules, Notifier: a.notifier,
		LiveLogs: a.agents, Progress: a.agents, AgentBinary: cfg.AgentBinary, Observer: a.metrics, Refdata: a.refdata, Staging: a.launch,
		Lister: objs, UI: dashboard, Unavailable: store.Unavailable, Credentials: creds},
		authc, api.Jobs{Admission: adm, Records: jobs.NewRecords(a.store), Launch: a.launch, Sites: a.sites},
		imgs, objs, a.agents, log.With("component", "api"))

	// The probes and the metrics sit beside the API, outside its token handling: they need no
	// auth, and a probe must not depend on auth2.
	logBucket, _, _ := strings.Cut(strings.Trim(cfg.Jobs.LogDir, "/"), "/")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.Handle("GET /healthz", metrics.Healthy())
	checks := []metrics.Check{
		metrics.MongoCheck(a.counts), metrics.S3Check(objs.Client(), logBucket), metrics.KafkaCheck(cfg.Kafka.Brokers),
	}
	for _, sc := range cfg.Sites {
		checks = append(checks, metrics.SiteCheck(sc.Name, a.plugins.Available))
	}
	mux.Handle("GET /readyz", metrics.Ready(checks, cfg.Observability.ReadyTimeout, apiSrv.IsAdmin))
	if cfg.Observability.Pprof {
		mux.Handle(metrics.ProfilesPath, metrics.Profiles(apiSrv.AuthorizeAdmin, apiSrv.WriteError))
	}
	mux.Handle("/", apiSrv)

	if a.ln == nil {
		if a.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, listenError(cfg.Listen, err)
		}
	}
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Live log streams never go idle: end them, or Shutdown would wait for its timeout.
	a.srv.RegisterOnShutdown(apiSrv.CloseStreams)
	return a, nil
}

// Addr is the address the server listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully.
func (a *App) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.bus.Run(gctx) })
	g.Go(func() error { return a.agents.Run(gctx) })
	// Each periodic loop runs on one replica at a time: the one holding its lease.
	g.Go(func() error { return a.leases.Run(gctx, leaseSubmitter, a.launch.RunSubmitter) })
	g.Go(func() error { return a.leases.Run(gctx, leaseNotifier, a.notifier.Run) })
	g.Go(func() error {
		return a.metrics.RunCounter(gctx, store.NewCounter(a.counts.Database(a.cfg.Mongo.Database)), a.cfg.Observability.CountInterval)
	})
	g.Go(func() error {
		return a.leases.Run(gctx, leaseCleaner, func(ctx context.Context) error {
			return a.launch.RunCleaner(ctx, launch.CleanerConfig{
				Interval: a.cfg.Jobs.CleanInterval, Jitter: a.cfg.Jobs.CleanJitter, Age: a.cfg.Jobs.CleanAge,
			})
		})
	})
	rc := a.cfg.Reconcile
	rec := reconcile.New(reconcile.Config{
		Interval: rc.Interval, HeartbeatDeadline: rc.HeartbeatDeadline, ConnectDeadline: rc.ConnectDeadline,
		SubmitDeadline: rc.SubmitDeadline, CancelDeadline: rc.CancelDeadline, IdleDeadline: rc.IdleDeadline,
		RuntimeGrace: rc.RuntimeGrace, MaxLaunchRetries: rc.MaxLaunchRetries, StagingDeadline: rc.StagingDeadline,
		Connected: a.agents.AgentConnected, Presence: a.store.Presence, Ended: a.ingest.Ended,
	}, &meteredAccounting{a.store, a.metrics}, &meteredLaunch{a.launch, a.metrics}, a.refdata, a.log.With("component", "reconcile"), nil)
	g.Go(func() error { return a.leases.Run(gctx, leaseReconciler, rec.Run) })
	g.Go(func() error {
		return a.plugins.Run(gctx, launch.PluginEvents{
			Availability: func(site string, up bool, _ string) { a.metrics.SiteAvailable(site, up) },
			Restarted: func(site string) {
				// Work at the site may have moved while its plugin was down: submit what waits
				// and reconcile what runs now rather than at the next tick.
				a.metrics.PluginRestarted(site)
				a.launch.Poke()
				rec.Poke()
			},
		})
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := a.srv.Shutdown(sctx)
		a.agents.Wait()
		return err
	})
	a.log.Info("coordinator running", "addr", a.Addr(), "service_url", a.cfg.ServiceURL)
	err := g.Wait()
	a.close(context.Background())
	return err
}

// The leases of the periodic loops, and the names of the pokes that wake them on the replica
// holding their lease.
const (
	leaseSubmitter  = "submitter"
	leaseNotifier   = "notifier"
	leaseReconciler = "reconciler"
	leaseCleaner    = "cleaner"
	pokeNotifier    = "notifier"
)

// replicaName is this replica's name: replicas.name, or "<host>:<port>" from the host name and
// the port it listens on, so that the process restarted on that host gets it again and no
// other process alive on the host has it (two cannot listen on one port). When the port is
// not known before the listener is bound (port 0), the name is made unique to this process
// instead: its restart then waits for the leases to expire.
func replicaName(cfg Config, ln net.Listener) string {
	if cfg.Replicas.Name != "" {
		return cfg.Replicas.Name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	listen := cfg.Listen
	if ln != nil {
		listen = ln.Addr().String()
	}
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "" && port != "0" {
		return host + ":" + port
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%x", host, os.Getpid(), b)
}

// crossPoke wakes a loop here and, through the signals bus, on the replica holding its lease.
type crossPoke struct {
	local func()
	bus   *signals.Bus
	name  string
}

func (p *crossPoke) Poke() {
	p.local()
	p.bus.Poke(p.name)
}

func (a *App) close(ctx context.Context) {
	if a.plugins != nil {
		a.plugins.Close()
	}
	if a.notifier != nil {
		_ = a.notifier.Close()
	}
	if a.store != nil {
		_ = a.store.Close(ctx)
	}
	if a.counts != nil {
		_ = a.counts.Disconnect(ctx)
	}
	if a.ln != nil {
		_ = a.ln.Close()
	}
}

// The decorators below feed the metrics from the lifecycle's dependencies (STYLE: add
// behaviour by decorating an interface, not by flags inside implementations). Each wraps
// exactly the interface its consumer takes.

// meteredTransitions counts job transitions and, when a job completes, its bytes transferred.
type meteredTransitions struct {
	jobs.TransitionStore
	m *metrics.Metrics
}

func (s *meteredTransitions) TransitionJob(ctx context.Context, id string, from []job.State, t jobs.Transition, u jobs.JobUpdate) (*jobs.Job, error) {
	j, err := s.TransitionStore.TransitionJob(ctx, id, from, t, u)
	if err == nil {
		s.m.JobTransition(j, u.Outputs)
	}
	return j, err
}

// meteredObjects records the sizes the output verification reads, for the transfer counters.
type meteredObjects struct {
	ingest.Objects
	m *metrics.Metrics
}

func (o *meteredObjects) Head(ctx context.Context, p string) (jobs.ObjectMeta, error) {
	meta, err := o.Objects.Head(ctx, p)
	if err == nil {
		o.m.ObjectSize(p, meta.Size)
	}
	return meta, err
}

// meteredLaunch counts the reconciler's fail and relaunch actions.
type meteredLaunch struct {
	reconcile.Launch
	m *metrics.Metrics
}

func (l *meteredLaunch) FailJob(ctx context.Context, id, adminErr, userErr string) (bool, error) {
	ended, err := l.Launch.FailJob(ctx, id, adminErr, userErr)
	if ended {
		l.m.ReconcilerAction(metrics.ActionFailJob)
	}
	return ended, err
}

func (l *meteredLaunch) RetryLaunch(ctx context.Context, id, reason string, maxRetries int) (bool, error) {
	retried, err := l.Launch.RetryLaunch(ctx, id, reason, maxRetries)
	if retried {
		l.m.ReconcilerAction(metrics.ActionRetryLaunch)
	}
	return retried, err
}

// meteredAccounting counts the accounting the reconciler records.
type meteredAccounting struct {
	reconcile.Store
	m *metrics.Metrics
}

func (s *meteredAccounting) SetAccounting(ctx context.Context, id string, acc jobs.Accounting) error {
	err := s.Store.SetAccounting(ctx, id, acc)
	if err == nil {
		s.m.ReconcilerAction(metrics.ActionRecordAccounting)
	}
	return err
}
