// Package metrics is the coordinator's observability: the Prometheus metrics served at
// GET /metrics (jobs by state, submit latency, HTTP requests, connected agents, bytes
// transferred, the Kafka backlog, reconciler actions, the sites' launcher plugins), the periodic MongoDB counts behind the
// gauges that must be right after a restart, and the /healthz and /readyz probes.
//
// It records what other packages report through small hooks (ObserveRequest, JobTransition,
// ObjectSize, ReconcilerAction) and reads MongoDB only to count; it must never change state,
// and a failing count or probe must never fail a request or a job.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// Namespace prefixes every metric name.
const Namespace = "cts"

// Options configures the metrics.
type Options struct {
	// Version and GitHash label cts_build_info.
	Version, GitHash string
	// Agents returns the number of agents connected to this replica (nil: the gauge is absent).
	Agents func() int
	// Log receives the failures of the periodic counts (nil: discarded).
	Log *slog.Logger
}

// Metrics holds the coordinator's collectors in their own registry. It is safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	submit       *prometheus.HistogramVec
	jobs         *prometheus.GaugeVec
	transitions  *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	files        *prometheus.CounterVec
	unsent       prometheus.Gauge
	reconcile    *prometheus.CounterVec
	countErrors  prometheus.Counter
	lastCount    prometheus.Gauge
	siteUp       *prometheus.GaugeVec
	restarts     *prometheus.CounterVec

	sizes sizeCache
}

// Transfer directions of cts_transfer_bytes_total.
const (
	DirectionInput  = "input"
	DirectionOutput = "output"
)

// New registers the collectors.
func New(o Options) *Metrics {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: log, sizes: sizeCache{max: 50000}}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "http_requests_total",
		Help: "HTTP requests served, by route pattern, method and status code."}, []string{"route", "method", "status"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "Time to serve an HTTP request, by route pattern and method (streams and websockets excluded).",
		Buckets: prometheus.DefBuckets}, []string{"route", "method"})
	m.submit = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "job_submit_duration_seconds",
		Help: "Time to answer POST /jobs (validation, input HEADs, MongoDB writes), by status code.",
		// Submits HEAD every input in S3: up to 10000 files, so the tail reaches minutes.
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}}, []string{"status"})
	m.jobs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "jobs",
		Help: "Jobs in each state, counted in MongoDB (the same on every replica: aggregate with max, not sum)."}, []string{"state"})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "job_transitions_total",
		Help: "Job state transitions made by this replica, by the state entered."}, []string{"state"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "transfer_bytes_total",
		Help: "Bytes moved between S3 and the workers by completed jobs: input (downloaded) and output (uploaded, verified)."},
		[]string{"direction"})
	m.files = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "transfer_files_total",
		Help: "Files moved between S3 and the workers by completed jobs, by direction."}, []string{"direction"})
	m.unsent = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "kafka_unsent_transitions",
		Help: "Job transitions not yet acknowledged by Kafka (the notification backlog), counted in MongoDB."})
	m.reconcile = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "reconciler_actions_total",
		Help: "Actions of this replica's reconciler: jobs failed, jobs relaunched, accounting recorded."}, []string{"action"})
	m.countErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "metrics_count_errors_total",
		Help: "Periodic MongoDB counts (jobs by state, Kafka backlog) that failed."})
	m.lastCount = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "metrics_count_timestamp_seconds",
		Help: "When the MongoDB counts last succeeded (Unix time)."})
	m.siteUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "site_available",
		Help: "1 while a site's launcher plugin runs on this replica, 0 while it is down (restarting)."}, []string{"site"})
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "launcher_plugin_restarts_total",
		Help: "Launcher plugin processes this replica restarted after they exited, by site."}, []string{"site"})
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpDuration, m.submit, m.jobs, m.transitions, m.bytes,
		m.files, m.unsent, m.reconcile, m.countErrors, m.lastCount, m.siteUp, m.restarts} {
		f(c)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help: "The coordinator's version; always 1.", ConstLabels: prometheus.Labels{"version": o.Version, "git_hash": o.GitHash}})
	build.Set(1)
	f(build)
	if o.Agents != nil {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "agents_connected",
			Help: "Agent websocket sessions open on this replica (sum over replicas for the total)."},
			func() float64 { return float64(o.Agents()) }))
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that exist from the start read 0 rather than "no data".
	for _, d := range []string{DirectionInput, DirectionOutput} {
		m.bytes.WithLabelValues(d)
		m.files.WithLabelValues(d)
	}
	for _, a := range []string{ActionFailJob, ActionRetryLaunch, ActionRecordAccounting} {
		m.reconcile.WithLabelValues(a)
	}
	return m
}

// SiteAvailable records whether a site's launcher plugin runs.
func (m *Metrics) SiteAvailable(site string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.siteUp.WithLabelValues(site).Set(v)
}

// PluginRestarted counts a restart of a site's launcher plugin.
func (m *Metrics) PluginRestarted(site string) { m.restarts.WithLabelValues(site).Inc() }

// Handler serves the metrics in the Prometheus text (or OpenMetrics) exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry the collectors are in (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// submitRoute is the route label of POST /jobs.
const submitRoute = "/jobs"

// ObserveRequest records one HTTP request. route is the matched route pattern without its
// method ("/jobs/{job_id}"; "unmatched" for none: raw paths would make the label unbounded);
// streaming requests (websockets, live logs) are counted but kept out of the duration
// histogram, where their hours would drown the rest.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration, streaming bool) {
	method = MethodLabel(method)
	code := strconv.Itoa(status)
	if status < 100 || status > 599 {
		code = "other"
	}
	m.httpRequests.WithLabelValues(route, method, code).Inc()
	if streaming {
		return
	}
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
	if route == submitRoute && method == http.MethodPost {
		m.submit.WithLabelValues(code).Observe(d.Seconds())
	}
}

// MethodOther is the method label of every request whose method is not a standard one.
const MethodOther = "other"

// MethodLabel returns the method label of a request: one of the HTTP methods of RFC 9110
// (and PATCH), or MethodOther. Anyone can send any method token: taken raw, made-up methods
// would add series without bound.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return MethodOther
}

// ObjectSize records the size of an S3 object the coordinator looked at (HeadObject). Output
// sizes are only known this way: when a job completes, JobTransition takes the sizes its
// output verification just recorded.
func (m *Metrics) ObjectSize(path string, size int64) { m.sizes.put(path, size) }

// JobTransition records a job transition made by this replica: j is the job after the
// update, outputs the files the transition recorded. A completed job adds its inputs (sizes
// recorded at submit) and its verified outputs to the transfer counters.
func (m *Metrics) JobTransition(j *jobs.Job, outputs []jobs.Output) {
	m.transitions.WithLabelValues(string(j.State)).Inc()
	if j.State != job.Complete {
		return
	}
	var in int64
	for _, s := range j.InputSizes {
		in += s
	}
	m.bytes.WithLabelValues(DirectionInput).Add(float64(in))
	m.files.WithLabelValues(DirectionInput).Add(float64(len(j.InputSizes)))
	var out int64
	n := 0
	for _, o := range outputs {
		if s, ok := m.sizes.take(o.File); ok {
			out += s
			n++
		}
	}
	m.bytes.WithLabelValues(DirectionOutput).Add(float64(out))
	m.files.WithLabelValues(DirectionOutput).Add(float64(n))
}

// Reconciler actions.
const (
	ActionFailJob          = "fail_job"
	ActionRetryLaunch      = "retry_launch"
	ActionRecordAccounting = "record_accounting"
)

// ReconcilerAction counts one action of the reconciler.
func (m *Metrics) ReconcilerAction(action string) { m.reconcile.WithLabelValues(action).Inc() }

// Counter counts in the store what the gauges show. Implementations must answer from the
// shared store (never from replica memory), so every replica shows the same, right numbers,
// also just after a restart.
type Counter interface {
	// CountJobsByState returns the number of jobs in each state (absent: none).
	CountJobsByState(ctx context.Context) (map[job.State]int64, error)
	// CountUnsentTransitions returns the number of job transitions not yet acknowledged by
	// Kafka.
	CountUnsentTransitions(ctx context.Context) (int64, error)
}

// Count updates the gauges from c once.
func (m *Metrics) Count(ctx context.Context, c Counter) error {
	byState, err := c.CountJobsByState(ctx)
	if err != nil {
		m.countErrors.Inc()
		return err
	}
	unsent, err := c.CountUnsentTransitions(ctx)
	if err != nil {
		m.countErrors.Inc()
		return err
	}
	for _, s := range job.States {
		m.jobs.WithLabelValues(string(s)).Set(float64(byState[s]))
	}
	m.unsent.Set(float64(unsent))
	m.lastCount.SetToCurrentTime()
	return nil
}

// RunCounter counts now and then every interval until ctx ends. A failed count is logged
// and counted (cts_metrics_count_errors_total); the gauges keep their last values.
func (m *Metrics) RunCounter(ctx context.Context, c Counter, interval time.Duration) error {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, interval)
		if err := m.Count(cctx, c); err != nil && ctx.Err() == nil {
			m.log.WarnContext(ctx, "metrics count failed", "error", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sizeCache remembers recent object sizes by path in two generations: when the current one
// is full it becomes the previous one, so memory stays bounded (2 × max entries) while the
// sizes just recorded by an output verification survive until the transition takes them.
type sizeCache struct {
	mu        sync.Mutex
	max       int
	cur, prev map[string]int64
}

func (c *sizeCache) put(path string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= c.max {
		c.prev, c.cur = c.cur, make(map[string]int64)
	}
	c.cur[path] = size
}

func (c *sizeCache) take(path string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cur[path]; ok {
		delete(c.cur, path)
		return s, true
	}
	if s, ok := c.prev[path]; ok {
		delete(c.prev, path)
		return s, true
	}
	return 0, false
}
