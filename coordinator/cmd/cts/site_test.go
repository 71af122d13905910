package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) {
	// Poll faster than a user's CLI does, so the tests wait less.
	pollBackoff = client.Backoff{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond}
	testsite.Main(m)
}

// site is a running dev site with a demo image, a sleeping image and four inputs.
type site struct {
	*testsite.Site
	demoImage string // cts-demo-tool: summarises its inputs (fast)
	sleepImg  string // testtool: `sleep N` prints "sleeping" and sleeps
	inputs    []string
}

// startSite starts the dev site; it skips when this machine cannot run containers.
func startSite(t *testing.T) *site {
	t.Helper()
	s := &site{Site: testsite.Start(t, testsite.Options{})}
	s.Demo.Prefix = "cli"
	s.demoImage = s.RegisterDemo(t)

	// The sleeping image is registered through the CLI itself.
	var digest string
	s.sleepImg, digest = s.PushTool(t, testsite.Binary(t, testsite.TestToolPkg), "cli")
	r := s.cts(t, s.Env.AdminToken, "images", "register", s.sleepImg, "--usage-notes", "sleeps", "--info-url", "https://example.org/testtool")
	r.want(t, exitOK)
	var reg client.Image
	if err := json.Unmarshal([]byte(r.stdout), &reg); err != nil || reg.Digest != digest || reg.UsageNotes != "sleeps" ||
		len(reg.URLs) != 1 || reg.RegisteredBy != devmode.AdminName {
		t.Fatalf("registered %+v (%v), pushed %s", reg, err, digest)
	}

	for i := range 4 {
		key := fmt.Sprintf("cli/in/genome_%d.fna", i)
		s.inputs = append(s.inputs, s.PutInput(t, key, fmt.Appendf(nil, ">genome_%d\nACGTACGTGGCC\nGGCCAATT\n", i)))
	}
	return s
}

// result is one run of the CLI.
type result struct {
	args           []string
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r result) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("cts %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, code, r.stdout, r.stderr)
	}
}

// runCLI runs the CLI in-process with exactly the environment env (HOME is a fresh folder, so
// no config file of the machine is read).
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = t.TempDir()
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(args, &stdout, &stderr, func(k string) string { return env[k] })
	return result{args: args, code: code, stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
}

// cts runs the CLI against the site with token.
func (s *site) cts(t *testing.T, token string, args ...string) result {
	t.Helper()
	return runCLI(t, map[string]string{"CTS_URL": s.Env.URL, "CTS_TOKEN": token}, args...)
}

// api returns a client of the site for checks made beside the CLI.
func (s *site) api(t *testing.T, token string) *client.Client {
	t.Helper()
	c, err := client.New(s.Env.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var happyStates = []string{"created", "download_submitted", "job_submitting", "job_submitted",
	"upload_submitting", "upload_submitted", "complete"}

// withoutProgress drops the progress lines of cts wait --json output.
func withoutProgress(out string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(out, "\n") {
		if !strings.Contains(line, `"progress":`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// jsonEvents decodes cts wait --json output: the state changes (progress lines, best effort,
// are checked and skipped).
func jsonEvents(t *testing.T, out string) (job []string, containers map[int][]string) {
	t.Helper()
	containers = map[int][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, `"progress":`) {
			var p progressEvent
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil || p.JobID == "" || p.Time.IsZero() || p.Progress.Phase == "" {
				t.Fatalf("wait --json progress line %q: %v", line, err)
			}
			continue
		}
		var e client.Event
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || e.JobID == "" || e.Time.IsZero() {
			t.Fatalf("wait --json line %q: %v", line, err)
		}
		if e.Container != nil {
			containers[*e.Container] = append(containers[*e.Container], string(e.State))
		} else {
			job = append(job, string(e.State))
		}
	}
	return job, containers
}

// TestCLIOnDevSite runs the CLI against a whole dev site: jobs in real containers.
func TestCLIOnDevSite(t *testing.T) {
	s := startSite(t)
	user, admin := s.Env.UserToken, s.Env.AdminToken
	args := []any{"--container", map[string]any{"type": "container_number"},
		map[string]any{"type": "input_files", "input_files_format": "space_separated_list"}}

	t.Run("json file, wait --json, logs, exit codes", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "job.json")
		b, _ := json.Marshal(map[string]any{
			"cluster": devmode.SiteName, "image": s.demoImage, "input_files": s.inputs,
			"output_dir": devmode.DataBucket + "/cli/out-json", "num_containers": 2,
			"cpus": 1, "memory": "100MB", "runtime": "PT5M", "params": map[string]any{"args": args},
		})
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r := s.cts(t, user, "submit", path)
		r.want(t, exitOK)
		id := strings.TrimSpace(r.stdout)
		if id == "" || strings.ContainsAny(id, " \n") {
			t.Fatalf("submit printed %q, want a job ID", r.stdout)
		}
		r = s.cts(t, user, "wait", id, "--json", "--timeout", "2m")
		r.want(t, exitOK)
		states, containers := jsonEvents(t, r.stdout)
		if strings.Join(states, ",") != strings.Join(happyStates, ",") {
			t.Errorf("wait --json job states %v, want %v", states, happyStates)
		}
		// The owner follows each container through GET /jobs/{id}/containers.
		if len(containers) != 2 || strings.Join(containers[0], ",") != strings.Join(happyStates, ",") ||
			strings.Join(containers[1], ",") != strings.Join(happyStates, ",") {
			t.Errorf("container states %v, want both through %v", containers, happyStates)
		}
		// Waiting again on the ended job prints the same history and exits 0 at once.
		// (Without progress lines: the job has ended, its transfers are over.)
		// Live, a poll can reveal a container transition older than one already printed, so the
		// two histories hold the same lines, not necessarily in the same order.
		if r2 := s.cts(t, user, "wait", id, "--json"); r2.code != exitOK || sortedLines(r2.stdout) != sortedLines(withoutProgress(r.stdout)) {
			t.Errorf("second wait: exit %d\n%s\nfirst:\n%s", r2.code, r2.stdout, r.stdout)
		}
		// Plain lines when stdout is not a terminal.
		r = s.cts(t, user, "wait", id)
		r.want(t, exitOK)
		if lines := jobLines(r.stdout); len(lines) != len(happyStates) ||
			!strings.HasSuffix(lines[len(lines)-1], "  complete") || !strings.Contains(r.stderr, "complete: 6 output files") {
			t.Errorf("wait lines:\n%s\nstderr: %s", r.stdout, r.stderr)
		}

		r = s.cts(t, user, "logs", id, "--container", "1")
		r.want(t, exitOK)
		if n := strings.Count(r.stdout, "container 1: /input_files/genome_"); n != 2 {
			t.Errorf("container 1 stdout has %d file lines:\n%s", n, r.stdout)
		}
		r = s.cts(t, user, "logs", "--stderr", id) // flags before the job ID work too
		r.want(t, exitOK)
		if !strings.Contains(r.stdout, "container 0 done: 2 files") {
			t.Errorf("container 0 stderr: %q", r.stdout)
		}
		r = s.cts(t, user, "exit-codes", id)
		r.want(t, exitOK)
		if r.stdout != "container 0: 0\ncontainer 1: 0\n" {
			t.Errorf("exit-codes printed %q", r.stdout)
		}
		r = s.cts(t, user, "status", id)
		r.want(t, exitOK)
		if !strings.HasPrefix(r.stdout, "job "+id+"  complete  (user "+devmode.UserName+")") {
			t.Errorf("status printed %q", r.stdout)
		}
		r = s.cts(t, user, "get", id)
		r.want(t, exitOK)
		var j map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
			t.Fatalf("get printed %q: %v", r.stdout, err)
		}
		if j["state"] != "complete" || j["output_file_count"] != float64(6) || len(j["outputs"].([]any)) != 6 {
			t.Errorf("get: %s", r.stdout)
		}
		r = s.cts(t, user, "list", "--state", "complete", "--after", "1h", "--limit", "100")
		r.want(t, exitOK)
		if !strings.HasPrefix(r.stdout, "JOB ") || !regexp.MustCompile(`(?m)^`+id+` +complete +local +\S+/cts/demo:cli +2 +20`).MatchString(r.stdout) {
			t.Errorf("list:\n%s", r.stdout)
		}
		r = s.cts(t, user, "list", "--before", "2000-01-01", "--json")
		r.want(t, exitOK)
		if strings.TrimSpace(r.stdout) != "{\n  \"jobs\": []\n}" {
			t.Errorf("list --before 2000: %s", r.stdout)
		}
		r = s.cts(t, admin, "admin", "jobs", "--user", devmode.UserName, "--json")
		r.want(t, exitOK)
		if !strings.Contains(r.stdout, `"id": "`+id+`"`) {
			t.Errorf("admin jobs --user: %s", r.stdout)
		}
		// The admin view holds the admin details.
		r = s.cts(t, admin, "admin", "job", id)
		r.want(t, exitOK)
		if !strings.Contains(r.stdout, `"trans_id"`) || !strings.Contains(r.stdout, `"notif_sent": true`) {
			t.Errorf("admin job: %s", r.stdout)
		}
	})

	t.Run("yaml file with flag overrides and --wait", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "job.yaml")
		yml := fmt.Sprintf(`# a CTS job
cluster: %s
image: %s
input_files:
%s
output_dir: %s/cli/not-this-one
num_containers: 1
memory: 100MB
runtime: PT5M
params:
  args:
    - --container
    - type: container_number
    - type: input_files
      input_files_format: space_separated_list
`, devmode.SiteName, s.demoImage, "  - "+strings.Join(s.inputs[:2], "\n  - "), devmode.DataBucket)
		if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
			t.Fatal(err)
		}
		r := s.cts(t, user, "submit", path, "--output-dir", devmode.DataBucket+"/cli/out-yaml", "--containers", "2", "--wait", "--timeout", "2m")
		r.want(t, exitOK)
		lines := jobLines(r.stdout)
		id := lines[0]
		if len(lines) != 1+len(happyStates) || !strings.HasSuffix(lines[len(lines)-1], "  complete") {
			t.Errorf("submit --wait printed:\n%s", r.stdout)
		}
		j, err := s.api(t, user).Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSuffix(j.Input.OutputDir, "/") != devmode.DataBucket+"/cli/out-yaml" || j.Input.NumContainers != 2 || len(j.Outputs) != 4 {
			t.Errorf("job input %+v, outputs %v", j.Input, j.Outputs)
		}
	})

	t.Run("flags only", func(t *testing.T) {
		t.Parallel()
		r := s.cts(t, user, "submit", "--cluster", devmode.SiteName, "--image", s.demoImage,
			"--input", s.inputs[0], "--input", s.inputs[1], "--input", s.inputs[2],
			"--output-dir", devmode.DataBucket+"/cli/out-flags", "--containers", "1", "--memory", "100MB", "--runtime", "5m",
			"--arg", "--container", "--arg-container", "--arg-files", "space", "--json", "--wait")
		r.want(t, exitOK)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		var sub struct {
			JobID string `json:"job_id"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &sub); err != nil || sub.JobID == "" {
			t.Fatalf("first line %q: %v", lines[0], err)
		}
		states, _ := jsonEvents(t, strings.Join(lines[1:], "\n"))
		if strings.Join(states, ",") != strings.Join(happyStates, ",") {
			t.Errorf("states %v", states)
		}
		j, err := s.api(t, user).Job(context.Background(), sub.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Input.Runtime != "PT5M" || j.Input.Memory != 100000000 || len(j.Outputs) != 4 {
			t.Errorf("job input %+v, outputs %v", j.Input, j.Outputs)
		}
	})

	t.Run("logs -f follows a running job to its end", func(t *testing.T) {
		t.Parallel()
		r := s.cts(t, user, "submit", "--cluster", devmode.SiteName, "--image", s.sleepImg,
			"--input", s.inputs[0], "--input", s.inputs[1], "--output-dir", devmode.DataBucket+"/cli/out-sleep",
			"--containers", "2", "--arg", "sleep", "--arg", "3")
		r.want(t, exitOK)
		id := strings.TrimSpace(r.stdout)
		api := s.api(t, user)
		st, err := api.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State.Terminal() {
			t.Fatalf("job already %s before logs -f started", st.State)
		}
		r = s.cts(t, user, "logs", "-f", id, "--container", "1")
		r.want(t, exitOK)
		if r.stdout != "sleeping\n" {
			t.Errorf("logs -f printed %q", r.stdout)
		}
		// logs -f returned because the job ended, not before. (It ends in error: the sleeping
		// containers write no outputs.)
		st, err = api.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !st.State.Terminal() {
			t.Errorf("logs -f returned with the job %s", st.State)
		}
		if r.took < 2*time.Second {
			t.Errorf("logs -f returned after %s, before the containers' 3 s sleep ended", r.took)
		}
	})

	t.Run("cancel a running job; admins see containers", func(t *testing.T) {
		t.Parallel()
		r := s.cts(t, admin, "submit", "--cluster", devmode.SiteName, "--image", s.sleepImg,
			"--input", s.inputs[3], "--output-dir", devmode.DataBucket+"/cli/out-cancel", "--arg", "sleep", "--arg", "60")
		r.want(t, exitOK)
		id := strings.TrimSpace(r.stdout)
		api := s.api(t, admin)
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := api.Status(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if st.State == "job_submitted" {
				break
			}
			if st.State.Terminal() || time.Now().After(deadline) {
				t.Fatalf("job %s never ran: %s", id, st.State)
			}
			time.Sleep(100 * time.Millisecond)
		}
		r = s.cts(t, admin, "cancel", id)
		r.want(t, exitOK)
		r = s.cts(t, admin, "wait", id, "--json", "--timeout", "1m")
		r.want(t, exitCanceled)
		if !strings.Contains(r.stderr, "was canceled") {
			t.Errorf("wait stderr: %q", r.stderr)
		}
		states, containers := jsonEvents(t, r.stdout)
		if n := len(states); n < 2 || states[n-2] != "canceling" || states[n-1] != "canceled" {
			t.Errorf("job states %v", states)
		}
		_, routeErr := api.AdminContainers(context.Background(), id)
		switch {
		case routeErr == nil:
			if c := containers[0]; len(c) < 3 || !slices.Contains(c, "job_submitted") {
				t.Errorf("admin saw container states %v", containers)
			}
		case len(containers) != 0:
			t.Errorf("containers %v shown although the route fails: %v", containers, routeErr)
		default:
			t.Logf("GET /admin/jobs/{id}/container: %v; wait showed the job state only", routeErr)
		}
		// Cancelling an ended job is the service's error: exit 2 with its message.
		r = s.cts(t, admin, "cancel", id)
		r.want(t, exitAPI)
		if !strings.Contains(r.stderr, "No such job (40040)") {
			t.Errorf("second cancel stderr: %q", r.stderr)
		}
	})

	t.Run("service errors exit 2 with the CTS message", func(t *testing.T) {
		t.Parallel()
		missing := s.Env.Stack.Registry.Host() + "/cts/no-such-image:1"
		r := s.cts(t, user, "submit", "--cluster", devmode.SiteName, "--image", missing,
			"--input", s.inputs[0], "--output-dir", devmode.DataBucket+"/cli/out-none")
		r.want(t, exitAPI)
		if !strings.Contains(r.stderr, "No such image (40030): No image "+s.Env.Stack.Registry.Host()+"/cts/no-such-image with tag '1' exists") {
			t.Errorf("stderr: %q", r.stderr)
		}
		r = s.cts(t, user, "submit", "--cluster", devmode.SiteName, "--image", s.demoImage, "--output-dir", devmode.DataBucket+"/x")
		r.want(t, exitAPI)
		if !strings.Contains(r.stderr, "Request validation failed (30010): body.input_files: Field required") {
			t.Errorf("stderr: %q", r.stderr)
		}
		r = s.cts(t, user, "status", "no-such-job")
		r.want(t, exitAPI)
		if !strings.Contains(r.stderr, "(40040)") {
			t.Errorf("stderr: %q", r.stderr)
		}
		r = s.cts(t, "WRONGTOKEN", "whoami")
		r.want(t, exitAPI)
		if !strings.Contains(r.stderr, "Invalid token (10020)") || strings.Contains(r.stderr+r.stdout, "WRONGTOKEN") {
			t.Errorf("stderr: %q", r.stderr)
		}
		r = s.cts(t, user, "images", "register", "x/y:1")
		r.want(t, exitAPI)
		if !strings.Contains(r.stderr, "Unauthorized (20000)") {
			t.Errorf("stderr: %q", r.stderr)
		}
	})

	t.Run("images, sites, whoami", func(t *testing.T) {
		t.Parallel()
		r := s.cts(t, admin, "whoami")
		r.want(t, exitOK)
		if !strings.Contains(r.stdout, "user:    "+devmode.AdminName) || !strings.Contains(r.stdout, "full_admin") || strings.Contains(r.stdout, admin) {
			t.Errorf("whoami: %q", r.stdout)
		}
		r = runCLI(t, map[string]string{"CTS_URL": s.Env.URL}, "images", "list") // no token needed
		r.want(t, exitOK)
		if !strings.Contains(r.stdout, "/cts/demo ") || !strings.Contains(r.stdout, "/cts/testtool ") {
			t.Errorf("images list:\n%s", r.stdout)
		}
		r = runCLI(t, map[string]string{"CTS_URL": s.Env.URL}, "images", "get", s.sleepImg)
		r.want(t, exitOK)
		var im client.Image
		if err := json.Unmarshal([]byte(r.stdout), &im); err != nil || im.UsageNotes != "sleeps" || im.Tag != "cli" {
			t.Errorf("images get: %s (%v)", r.stdout, err)
		}
		r = runCLI(t, map[string]string{"CTS_URL": s.Env.URL}, "sites")
		r.want(t, exitOK)
		if !strings.Contains(r.stdout, "\n"+devmode.SiteName+" ") {
			t.Errorf("sites:\n%s", r.stdout)
		}
	})
}

// jobLines are the job's own lines of a plain wait output (the containers' lines left out).
func jobLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, "container ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// sortedLines is out's lines, sorted and joined.
func sortedLines(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
