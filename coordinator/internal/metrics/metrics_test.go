package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/metrics"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/shared/job"
)

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}

// scrape returns the text exposition of m.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	return rec.Body.String()
}

// value returns the value of the sample whose line starts with series, or fails.
func value(t *testing.T, text, series string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no sample %s in\n%s", series, text)
	}
	return m[1]
}

func TestRequestsAndSubmitLatency(t *testing.T) {
	m := metrics.New(metrics.Options{Version: "1.2.3", GitHash: "abc", Agents: func() int { return 3 }})
	m.ObserveRequest("/jobs", "POST", 200, 40*time.Millisecond, false)
	m.ObserveRequest("/jobs", "POST", 400, 2*time.Millisecond, false)
	m.ObserveRequest("/jobs/{job_id}", "GET", 200, time.Millisecond, false)
	m.ObserveRequest("/jobs/{job_id}/log/{container_num}/stdout/live", "GET", 200, time.Hour, true)
	text := scrape(t, m)
	for series, want := range map[string]string{
		`cts_http_requests_total{method="POST",route="/jobs",status="200"}`:                                         "1",
		`cts_http_requests_total{method="POST",route="/jobs",status="400"}`:                                         "1",
		`cts_http_requests_total{method="GET",route="/jobs/{job_id}",status="200"}`:                                 "1",
		`cts_http_requests_total{method="GET",route="/jobs/{job_id}/log/{container_num}/stdout/live",status="200"}`: "1",
		`cts_job_submit_duration_seconds_count{status="200"}`:                                                       "1",
		`cts_job_submit_duration_seconds_bucket{status="200",le="0.025"}`:                                           "0",
		`cts_job_submit_duration_seconds_bucket{status="200",le="0.05"}`:                                            "1",
		`cts_job_submit_duration_seconds_count{status="400"}`:                                                       "1",
		`cts_http_request_duration_seconds_count{method="GET",route="/jobs/{job_id}"}`:                              "1",
		`cts_agents_connected`:                                                 "3",
		`cts_build_info{git_hash="abc",version="1.2.3"}`:                       "1",
		`cts_transfer_bytes_total{direction="input"}`:                          "0",
		`cts_http_request_duration_seconds_count{method="POST",route="/jobs"}`: "2",
	} {
		if got := value(t, text, series); got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}
	if strings.Contains(text, `route="/jobs/{job_id}/log/{container_num}/stdout/live"}`) &&
		strings.Contains(text, `cts_http_request_duration_seconds_count{method="GET",route="/jobs/{job_id}/log/{container_num}/stdout/live"}`) {
		t.Error("a stream is in the duration histogram")
	}
	if !strings.Contains(text, "go_goroutines ") || !strings.Contains(text, "process_") {
		t.Error("the Go runtime and process collectors are missing")
	}
}

// TestMethodLabelBounded performs the attack of unauthenticated requests with made-up methods:
// they must not add a series each.
func TestMethodLabelBounded(t *testing.T) {
	m := metrics.New(metrics.Options{})
	before := strings.Count(scrape(t, m), "\n")
	for i := range 3000 {
		m.ObserveRequest("unmatched", fmt.Sprintf("M%dX", i), 405, time.Millisecond, false)
	}
	m.ObserveRequest("unmatched", "get", 404, time.Millisecond, false) // methods are case-sensitive
	m.ObserveRequest("/", "GET", 999, time.Millisecond, false)
	text := scrape(t, m)
	if got := value(t, text, `cts_http_requests_total{method="other",route="unmatched",status="405"}`); got != "3000" {
		t.Errorf("made-up methods counted %s", got)
	}
	if got := value(t, text, `cts_http_requests_total{method="other",route="unmatched",status="404"}`); got != "1" {
		t.Errorf("lower-case get counted %s", got)
	}
	if got := value(t, text, `cts_http_requests_total{method="GET",route="/",status="other"}`); got != "1" {
		t.Errorf("odd status counted %s", got)
	}
	// Two counter series and two histograms (of 14 lines each) more, whatever was sent.
	if after := strings.Count(text, "\n"); after-before > 40 {
		t.Errorf("the exposition grew by %d lines", after-before)
	}
}

func TestTransfersCountedWhenJobsComplete(t *testing.T) {
	m := metrics.New(metrics.Options{})
	// Submit HEADs the inputs, the output verification HEADs the outputs.
	m.ObjectSize("in/a", 100)
	m.ObjectSize("out/x", 7)
	m.ObjectSize("out/y", 5)
	outs := []jobs.Output{{File: "out/x"}, {File: "out/y"}, {File: "out/unknown"}}
	m.JobTransition(&jobs.Job{State: job.UploadSubmitted, InputSizes: []int64{100, 20}}, nil)
	m.JobTransition(&jobs.Job{State: job.Complete, InputSizes: []int64{100, 20}}, outs)
	// A second transition with the same outputs (another job writing the same files) does not
	// count the sizes again: they were taken.
	m.JobTransition(&jobs.Job{State: job.Error}, outs)
	text := scrape(t, m)
	for series, want := range map[string]string{
		`cts_transfer_bytes_total{direction="input"}`:         "120",
		`cts_transfer_bytes_total{direction="output"}`:        "12",
		`cts_transfer_files_total{direction="input"}`:         "2",
		`cts_transfer_files_total{direction="output"}`:        "2",
		`cts_job_transitions_total{state="complete"}`:         "1",
		`cts_job_transitions_total{state="upload_submitted"}`: "1",
		`cts_job_transitions_total{state="error"}`:            "1",
	} {
		if got := value(t, text, series); got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}
}

func TestSizeCacheIsBounded(t *testing.T) {
	m := metrics.New(metrics.Options{})
	// Far more HEADs than the cache holds (submits of big jobs): the oldest are dropped, the
	// most recent kept.
	for i := range 200000 {
		m.ObjectSize("in/"+strings.Repeat("x", i%7)+time.Duration(i).String(), 1)
	}
	m.ObjectSize("out/recent", 9)
	m.JobTransition(&jobs.Job{State: job.Complete}, []jobs.Output{{File: "out/recent"}, {File: "in/" + time.Duration(0).String()}})
	if got := value(t, scrape(t, m), `cts_transfer_bytes_total{direction="output"}`); got != "9" {
		t.Fatalf("output bytes %s, want 9 (the recent size kept, the oldest dropped)", got)
	}
}

// fakeCounter is a metrics.Counter.
type fakeCounter struct {
	states map[job.State]int64
	unsent int64
	err    error
}

func (f *fakeCounter) CountJobsByState(context.Context) (map[job.State]int64, error) {
	return f.states, f.err
}

func (f *fakeCounter) CountUnsentTransitions(context.Context) (int64, error) { return f.unsent, f.err }

func TestCountGauges(t *testing.T) {
	m := metrics.New(metrics.Options{})
	c := &fakeCounter{states: map[job.State]int64{job.Complete: 4, job.Created: 1}, unsent: 6}
	if err := m.Count(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	c.err = errors.New("mongo down")
	if err := m.Count(t.Context(), c); err == nil {
		t.Fatal("a failed count returned nil")
	}
	text := scrape(t, m)
	for series, want := range map[string]string{
		`cts_jobs{state="complete"}`:     "4",
		`cts_jobs{state="created"}`:      "1",
		`cts_jobs{state="error"}`:        "0", // every state has a series
		`cts_kafka_unsent_transitions`:   "6", // the last good count stays
		`cts_metrics_count_errors_total`: "1",
	} {
		if got := value(t, text, series); got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- m.RunCounter(ctx, c, time.Millisecond) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunCounter did not stop")
	}
}

func TestReconcilerActions(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ReconcilerAction(metrics.ActionFailJob)
	m.ReconcilerAction(metrics.ActionFailJob)
	m.ReconcilerAction(metrics.ActionRecordAccounting)
	text := scrape(t, m)
	if got := value(t, text, `cts_reconciler_actions_total{action="fail_job"}`); got != "2" {
		t.Errorf("fail_job = %s", got)
	}
	if got := value(t, text, `cts_reconciler_actions_total{action="record_accounting"}`); got != "1" {
		t.Errorf("record_accounting = %s", got)
	}
}

// isAdmin stands in for the API's admin check: the token "admin-token" is an admin's.
func isAdmin(_ context.Context, r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer admin-token"
}

// TestReadyHidesDetails performs the attack of an unauthenticated /readyz that told internal
// hosts and ports: without an admin's token only the status is shown.
func TestReadyHidesDetails(t *testing.T) {
	broken := metrics.Check{Name: "mongodb", Probe: func(context.Context) error {
		return errors.New("server selection error: mongo-internal.example:27017: connection refused")
	}}
	for _, authz := range []string{"", "Bearer user-token", "Bearer admin-tokenX"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/readyz", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		metrics.Ready([]metrics.Check{broken}, time.Second, isAdmin).ServeHTTP(rec, req)
		if body := strings.TrimSpace(rec.Body.String()); rec.Code != 503 || body != `{"status":"unavailable"}` {
			t.Errorf("authorization %q: readyz = %d %s", authz, rec.Code, body)
		}
	}
	// The admin check is bounded by the probe timeout: a hung auth2 does not hang the probe.
	hung := func(ctx context.Context, _ *http.Request) bool { <-ctx.Done(); return false }
	start := time.Now()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/readyz", nil)
	req.Header.Set("Authorization", "Bearer x")
	metrics.Ready(nil, 100*time.Millisecond, hung).ServeHTTP(rec, req)
	if rec.Code != 200 || time.Since(start) > 5*time.Second {
		t.Fatalf("readyz with a hung admin check = %d after %s", rec.Code, time.Since(start))
	}
}

func TestReadyAndHealthy(t *testing.T) {
	ok := metrics.Check{Name: "mongodb", Probe: func(context.Context) error { return nil }}
	broken := metrics.Check{Name: "kafka", Probe: func(context.Context) error { return errors.New("dial: refused") }}
	slow := metrics.Check{Name: "s3", Probe: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	sites := map[string]string{"down": "the launcher plugin process exited"}
	avail := func(site string) (bool, string) { r, down := sites[site]; return !down, r }
	siteDown, siteUp := metrics.SiteCheck("down", avail), metrics.SiteCheck("up", avail)
	for _, tc := range []struct {
		name   string
		checks []metrics.Check
		code   int
		status string
		failed []string
	}{
		{"all pass", []metrics.Check{ok, siteUp}, 200, "ready", nil},
		{"one fails", []metrics.Check{ok, broken}, 503, "unavailable", []string{"kafka"}},
		{"one hangs past the timeout", []metrics.Check{slow, broken, ok}, 503, "unavailable", []string{"kafka", "s3"}},
		{"a site is down", []metrics.Check{ok, siteDown, siteUp}, 200, "degraded", []string{"site:down"}},
		{"a site and a dependency are down", []metrics.Check{ok, siteDown, broken}, 503, "unavailable", []string{"kafka", "site:down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/readyz", nil)
			req.Header.Set("Authorization", "Bearer admin-token")
			metrics.Ready(tc.checks, 100*time.Millisecond, isAdmin).ServeHTTP(rec, req)
			if time.Since(start) > 2*time.Second {
				t.Fatalf("readyz took %s", time.Since(start))
			}
			var r metrics.Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || strings.Join(r.Failed, ",") != strings.Join(tc.failed, ",") || len(r.Checks) != len(tc.checks) {
				t.Fatalf("readyz = %d %+v, want %d failing %v", rec.Code, r, tc.code, tc.failed)
			}
			if r.Checks["mongodb"] != "ok" || r.Status != tc.status {
				t.Fatalf("body %+v, want status %s", r, tc.status)
			}
			if _, down := r.Checks["site:down"]; down && r.Checks["site:down"] != sites["down"] {
				t.Fatalf("site check %q, want the reason", r.Checks["site:down"])
			}
		})
	}
	rec := httptest.NewRecorder()
	metrics.Healthy().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	b, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 || !strings.Contains(string(b), `"ok"`) {
		t.Fatalf("healthz = %d %s", rec.Code, b)
	}
}

// TestChecksAgainstTheEmbeddedStack probes a real S3 and Kafka, then the same after they
// stopped.
func TestChecksAgainstTheEmbeddedStack(t *testing.T) {
	s3srv := devstack.TestS3(t, "cts-logs")
	kf := devstack.TestKafka(t, "cts-jobs")
	s3c := objects.NewClient(objects.Config{Endpoint: s3srv.Endpoint, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey, Region: s3srv.Region})
	// The gateway's shutdown waits for idle keep-alive connections: drop ours first.
	t.Cleanup(func() { s3c.Options().HTTPClient.(*http.Client).CloseIdleConnections() })
	probe := func(c metrics.Check) error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		return c.Probe(ctx)
	}
	if err := probe(metrics.S3Check(s3c, "cts-logs")); err != nil {
		t.Errorf("s3: %v", err)
	}
	if err := probe(metrics.S3Check(s3c, "no-such-bucket")); err == nil {
		t.Error("s3 probe of a missing bucket passed")
	}
	if err := probe(metrics.KafkaCheck(kf.Brokers())); err != nil {
		t.Errorf("kafka: %v", err)
	}
	brokers := kf.Brokers()
	_ = kf.Close()
	if err := probe(metrics.KafkaCheck(brokers)); err == nil {
		t.Error("kafka probe passed with the broker closed")
	}
	if err := probe(metrics.KafkaCheck(nil)); err == nil {
		t.Error("kafka probe passed without brokers")
	}
}
