package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/test/demo"
)

// bins holds the binaries a dev site needs, built once for the package.
var bins struct {
	agent, launcher, tool string
	err                   error
}

func TestMain(m *testing.M) {
	devstack.Main()
	code := func() int {
		dir, err := os.MkdirTemp("", "cts-app-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bins.agent, bins.launcher, bins.tool = filepath.Join(dir, "cts-agent"), filepath.Join(dir, "cts-launcher-local"), filepath.Join(dir, "tool")
		for _, b := range []struct {
			out, pkg string
			static   bool
		}{
			{bins.agent, "./agent/cmd/cts-agent", true},
			{bins.launcher, "./plugins/local/cmd/cts-launcher-local", false},
			{filepath.Join(dir, "cts-local-supervisor"), "./plugins/local/cmd/cts-local-supervisor", false},
			{bins.tool, "./test/demo/tool", true},
		} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", b.out, b.pkg)
			cmd.Dir = "../.."
			cmd.Env = os.Environ()
			if b.static {
				cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				break
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startSite starts a dev site whose coordinator counts every second and serves the agent.
func startSite(t *testing.T) *devmode.Env {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	env, err := devmode.Start(ctx, devmode.Options{Dir: t.TempDir(), AgentPath: bins.agent, LauncherPath: bins.launcher,
		Configure: func(c *app.Config) {
			c.Observability.CountInterval = time.Second
			c.AgentBinary = bins.agent
		}})
	if err != nil {
		t.Fatalf("start dev site: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("close dev site: %v", err)
		}
	})
	return env
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// sample returns the value of series in a /metrics text, and whether it is there.
func sample(text, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// waitMetric scrapes /metrics until series has value want.
func waitMetric(t *testing.T, url, series string, want float64) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, b := get(t, url+"/metrics")
		if v, ok := sample(string(b), series); ok && v == want {
			return string(b)
		}
		if time.Now().After(deadline) {
			v, ok := sample(string(b), series)
			t.Fatalf("%s = %v (present: %v), want %v", series, v, ok, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// objectBytes sums the S3 sizes of files ("bucket/key").
func objectBytes(t *testing.T, c *s3.Client, files []demo.Output) float64 {
	t.Helper()
	var n int64
	for _, f := range files {
		bucket, key, _ := strings.Cut(f.File, "/")
		h, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		n += aws.ToInt64(h.ContentLength)
	}
	return float64(n)
}

// TestMetricsAfterJob runs the demo job on a dev site and reads /metrics: the job state counts
// (from MongoDB, so right after a restart too), the submit latency histogram, the HTTP
// counters, the bytes transferred and the Kafka backlog. It also fetches the agent binary the
// coordinator serves.
func TestMetricsAfterJob(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo job runs a container with runc and needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (scripts/install-deps.sh installs it)")
	}
	env := startSite(t)
	var out bytes.Buffer
	cfg := demo.Config{
		URL: env.URL, UserToken: env.UserToken, AdminToken: env.AdminToken,
		S3Endpoint: env.Stack.S3.Endpoint, S3Access: env.Stack.S3.AccessKey, S3Secret: env.Stack.S3.SecretKey,
		S3Region: env.Stack.S3.Region, Registry: env.Stack.Registry.Host(), Bucket: devmode.DataBucket,
		Site: devmode.SiteName, ToolBinary: bins.tool, Containers: 2, Prefix: "metrics", Timeout: 2 * time.Minute, Out: &out,
	}
	res, err := demo.Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("demo job: %v\n%s", err, out.String())
	}
	text := waitMetric(t, env.URL, `cts_jobs{state="complete"}`, 1)
	s3c := cfg.S3Client()
	for series, want := range map[string]float64{
		`cts_jobs{state="created"}`:                                            0,
		`cts_jobs{state="error"}`:                                              0,
		`cts_job_transitions_total{state="complete"}`:                          1,
		`cts_job_submit_duration_seconds_count{status="200"}`:                  1,
		`cts_http_requests_total{method="POST",route="/jobs",status="200"}`:    1,
		`cts_http_request_duration_seconds_count{method="POST",route="/jobs"}`: 1,
		`cts_transfer_bytes_total{direction="input"}`:                          objectBytes(t, s3c, res.Inputs),
		`cts_transfer_bytes_total{direction="output"}`:                         objectBytes(t, s3c, res.Outputs),
		`cts_transfer_files_total{direction="output"}`:                         float64(len(res.Outputs)),
	} {
		if got, ok := sample(text, series); !ok || got != want {
			t.Errorf("%s = %v (present: %v), want %v", series, got, ok, want)
		}
	}
	for _, series := range []string{`cts_http_requests_total{method="GET",route="/jobs/{job_id}/status",status="200"}`,
		`cts_agents_connected`, `cts_kafka_unsent_transitions`, `cts_metrics_count_timestamp_seconds`} {
		if _, ok := sample(text, series); !ok {
			t.Errorf("no %s", series)
		}
	}
	// Every transition reaches Kafka: the backlog drains to zero.
	waitMetric(t, env.URL, `cts_kafka_unsent_transitions`, 0)

	// The agent the coordinator serves is the configured binary.
	code, b := get(t, env.URL+"/external_exec/files/cts-agent")
	want, err := os.ReadFile(bins.agent)
	if err != nil {
		t.Fatal(err)
	}
	if code != 200 || sha256.Sum256(b) != sha256.Sum256(want) {
		t.Fatalf("agent binary = %d, %d bytes, want the %d bytes of %s", code, len(b), len(want), bins.agent)
	}

	// A new coordinator counts the jobs again from MongoDB.
	if err := env.RestartCoordinator(t.Context(), 0, nil); err != nil {
		t.Fatal(err)
	}
	text = waitMetric(t, env.URL, `cts_jobs{state="complete"}`, 1)
	if v, ok := sample(text, `cts_job_transitions_total{state="complete"}`); ok && v != 0 {
		t.Errorf("the restarted coordinator's own transition counter is %v", v)
	}
}

// TestProbes checks /healthz and /readyz with the whole stack up, then with the Kafka broker
// closed: /readyz then answers 503 naming kafka, while /healthz stays 200.
func TestProbes(t *testing.T) {
	env := startSite(t)
	type ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
		Failed []string          `json:"failed"`
	}
	readyz := func() (int, ready) {
		t.Helper()
		// The details are for admins; anyone else learns only the status.
		req, _ := http.NewRequestWithContext(t.Context(), "GET", env.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+env.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		code := resp.StatusCode
		if anon, ab := get(t, env.URL+"/readyz"); anon != code || !strings.Contains(`{"status":"ready"} {"status":"unavailable"}`, strings.TrimSpace(string(ab))) {
			t.Fatalf("anonymous readyz = %d %s (admin: %d %s)", anon, ab, code, b)
		}
		var r ready
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return code, r
	}
	if code, b := get(t, env.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz = %d %s", code, b)
	}
	code, r := readyz()
	if code != 200 || r.Status != "ready" || r.Checks["mongodb"] != "ok" || r.Checks["s3"] != "ok" || r.Checks["kafka"] != "ok" {
		t.Fatalf("readyz = %d %+v", code, r)
	}
	// A token is not needed, and an invalid one is not even looked at.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", env.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer not-a-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metrics with a bad token = %d", resp.StatusCode)
	}

	// Made-up methods, unauthenticated, do not each add metric series.
	for i := range 50 {
		req, _ := http.NewRequestWithContext(t.Context(), fmt.Sprintf("MADEUP%d", i), env.URL+"/jobs", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if _, b := get(t, env.URL+"/metrics"); strings.Contains(string(b), "MADEUP") || !strings.Contains(string(b), `method="other"`) {
		t.Fatalf("made-up methods in the metrics:\n%s", b)
	}

	if err := env.Stack.Kafka.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, r = readyz()
	if code != 503 || r.Status != "unavailable" || strings.Join(r.Failed, ",") != "kafka" || r.Checks["kafka"] == "ok" ||
		r.Checks["mongodb"] != "ok" || r.Checks["s3"] != "ok" {
		t.Fatalf("readyz without Kafka = %d %+v", code, r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("readyz took %s", d)
	}
	if code, _ := get(t, env.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz without Kafka = %d", code)
	}
}

// TestNewOwnsTheGivenListener: New takes over the listener of WithListener, closing it when
// it fails, so a caller that handed it over has nothing left to clean up.
func TestNewOwnsTheGivenListener(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_ = ln.SetDeadline(time.Now().Add(5 * time.Second)) // an open listener fails, not hangs
	if _, err := app.New(t.Context(), app.Config{}, slog.New(slog.DiscardHandler), app.WithListener(ln)); err == nil {
		t.Fatal("New with an empty configuration succeeded")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the listener after a failed New = %v, want net.ErrClosed", err)
	}
}

// TestProfiles: with observability.pprof on (dev mode), /debug/pprof/ serves the runtime's
// profiles to an admin only; off, the path is not served.
func TestProfiles(t *testing.T) {
	env := startSite(t)
	fetch := func(url, token string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	for _, c := range []struct {
		token  string
		code   int
		detail string
	}{
		{"", 401, `"appcode":10010`},
		{env.UserToken, 403, `"appcode":20000`},
		{env.AdminToken, 200, "goroutine"},
	} {
		if code, b := fetch(env.URL+"/debug/pprof/", c.token); code != c.code || !strings.Contains(string(b), c.detail) {
			t.Errorf("/debug/pprof/ with token %q = %d %.300s, want %d with %q", c.token, code, b, c.code, c.detail)
		}
	}
	if code, b := fetch(env.URL+"/debug/pprof/heap?debug=1", env.AdminToken); code != 200 || !strings.Contains(string(b), "heap profile") {
		t.Errorf("heap profile = %d %.200s", code, b)
	}
	if code, _ := fetch(env.URL+"/debug/pprof/goroutine?debug=1", env.UserToken); code != 403 {
		t.Errorf("a user read the goroutine profile: %d", code)
	}

	off := env.Config
	off.Observability.Pprof = false
	off.Listen = "127.0.0.1:0"
	a, err := app.New(t.Context(), off, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if code, b := fetch("http://"+a.Addr()+"/debug/pprof/", env.AdminToken); code == 200 || strings.Contains(string(b), "goroutine") {
		t.Errorf("profiles served with observability.pprof off: %d %.200s", code, b)
	}
}
