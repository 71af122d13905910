// Package compat checks that the CTS Python client (kbase/cdm-task-service-client,
// src/cdmtaskserviceclient/client.py) works unmodified against this coordinator. The Go tests
// make exactly the HTTP requests the client makes (the same paths, methods, headers and body
// shapes, including the nulls it sends) against a dev site running real jobs, and assert the
// fields the client reads and the app codes it maps to its exceptions. TestPythonClient runs
// the real client when CTS_PY_CLIENT_DIR points at its source (the client's code is not part
// of this repository).
package compat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// site is a running dev site with the demo image registered and two inputs uploaded.
type site struct {
	*testsite.Site
	image  string
	inputs []string
}

func startSite(t *testing.T) *site {
	t.Helper()
	s := &site{Site: testsite.Start(t, testsite.Options{})}
	s.Demo.Prefix = "compat"
	s.image = s.RegisterDemo(t)
	for i, seq := range []string{">a\nACGTACGT\n", ">b\nGGCC\n"} {
		s.inputs = append(s.inputs, s.PutInput(t, fmt.Sprintf("compat/in/%d.fna", i), []byte(seq)))
	}
	return s
}

// client makes the requests cdmtaskserviceclient.CTSClient makes: the URL is the service URL
// plus "/" plus the path; a body means POST, no body GET; the token is sent as
// "Bearer <token>" on every request.
type client struct {
	url, token string
}

type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (c *client) request(t *testing.T, method, path string, body any) response {
	t.Helper()
	var rb io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rb = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, c.url+"/"+path, rb)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
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
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.json); err != nil {
			t.Fatalf("%s %s: unparseable JSON %q: %v", method, path, b, err)
		}
	}
	return r
}

// ok is the client's success path: a 2xx whose JSON it parses.
func (c *client) ok(t *testing.T, method, path string, body any) map[string]any {
	t.Helper()
	r := c.request(t, method, path, body)
	if r.status < 200 || r.status >= 300 {
		t.Fatalf("%s %s = %d %s", method, path, r.status, r.body)
	}
	return r.json
}

// clientError is what the client's _raise_err sees: for a 4xx, a JSON object with "error"
// holding "appcode" and "message" (and "request_validation_detail" for 30010). It returns
// the name of the exception class the client raises.
func (c *client) clientError(t *testing.T, method, path string, body any) (string, map[string]any) {
	t.Helper()
	r := c.request(t, method, path, body)
	if r.status < 400 || r.status >= 500 {
		t.Fatalf("%s %s = %d %s, want a 4xx", method, path, r.status, r.body)
	}
	e, ok := r.json["error"].(map[string]any)
	if !ok {
		t.Fatalf("%s %s: no error object: %s", method, path, r.body)
	}
	code, _ := e["appcode"].(float64)
	switch int(code) {
	case 10020:
		return "InvalidTokenError", e
	case 20000:
		return "UnauthorizedError", e
	case 30001:
		return "IllegalParameterError", e
	case 30010:
		if _, ok := e["request_validation_detail"].([]any); !ok {
			t.Fatalf("30010 without request_validation_detail: %s", r.body)
		}
		return "SubmissionStructureError", e
	case 40040:
		return "NoSuchJobError", e
	case 40070:
		return "NoJobLogsError", e
	case 60000, 60010, 60020:
		return "JobFlowError", e
	case 20010, 20020, 30040, 40010, 40030:
		return "SubmissionError", e
	}
	return "UnexpectedServerResponseError", e
}

// insertFiles and insertContainerNumber are the client's helper dictionaries, nulls included.
func insertFiles(mode string) map[string]any {
	return map[string]any{"type": "input_files", "input_files_format": mode + "_separated_list"}
}

func insertContainerNumber(prefix, suffix any) map[string]any {
	return map[string]any{"type": "container_number", "container_num_prefix": prefix, "container_num_suffix": suffix}
}

// submitBody is submit_job's body: params always carries "args" (null when none) and
// "declobber"; the mount points only when given.
func submitBody(image string, inputs []string, outputDir, cluster string, args []any, containers int) map[string]any {
	var a any
	if args != nil {
		a = args
	}
	return map[string]any{
		"cluster": cluster, "image": image,
		"params":         map[string]any{"args": a, "declobber": false},
		"num_containers": containers, "cpus": 1, "memory": "10MB", "runtime": "PT5M",
		"output_dir": outputDir, "input_files": inputs,
	}
}

// waitForCompletion polls /status as wait_for_completion does (faster here) and returns the
// last status; it stops on error or complete.
func (c *client) waitForCompletion(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := c.ok(t, "GET", "jobs/"+id+"/status", nil)
		state, _ := st["state"].(string)
		if _, ok := st["admin_meta"].(map[string]any); !ok {
			t.Fatalf("status without an admin_meta object: %v", st)
		}
		if state == "error" || state == "complete" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", id, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClientFlow replays the Python client's calls: the connection check, whoami, images,
// submit, status polling, get_job, exit codes, logs, cancel, and the error mapping.
func TestClientFlow(t *testing.T) {
	s := startSite(t)
	c := &client{url: s.Env.URL, token: s.Env.UserToken}

	// CTSClient.__init__: GET / must name the service, then GET /whoami gives the user.
	if root := c.ok(t, "GET", "", nil); root["service_name"] != "CDM Task Service" {
		t.Fatalf("root %v", root)
	}
	if who := c.ok(t, "GET", "whoami", nil); who["user"] != devmode.UserName {
		t.Fatalf("whoami %v", who)
	}
	// get_images sorts by (name, tag) and reads these keys of every image.
	imgs := c.ok(t, "GET", "images", nil)["data"].([]any)
	for _, im := range imgs {
		m := im.(map[string]any)
		for _, k := range []string{"name", "tag", "digest", "entrypoint", "registered_by", "registered_on"} {
			if _, ok := m[k]; !ok {
				t.Errorf("image %v lacks %s", m, k)
			}
		}
	}
	// get_sites reads the site list.
	sites := c.ok(t, "GET", "sites", nil)["sites"].([]any)
	if len(sites) != 1 || sites[0].(map[string]any)["cluster"] != devmode.SiteName {
		t.Fatalf("sites %v", sites)
	}

	// submit_job with the helpers (their null prefix and suffix included), then
	// wait_for_completion, get_job, get_exit_codes and print_logs.
	args := []any{"--container", insertContainerNumber(nil, nil), insertFiles("space")}
	sub := c.ok(t, "POST", "jobs", submitBody(s.image, s.inputs, devmode.DataBucket+"/compat/out1", devmode.SiteName, args, 2))
	id, _ := sub["job_id"].(string)
	if id == "" {
		t.Fatalf("submit %v", sub)
	}
	st := c.waitForCompletion(t, id)
	if st["state"] != "complete" {
		t.Fatalf("job ended %v", st)
	}
	j := c.ok(t, "GET", "jobs/"+id, nil)
	if j["id"] != id || j["state"] != "complete" || len(j["outputs"].([]any)) == 0 {
		t.Fatalf("job %v", j)
	}
	ec := c.ok(t, "GET", "jobs/"+id+"/exit_codes", nil)
	if !slices.Equal(ec["exit_codes"].([]any), []any{0.0, 0.0}) {
		t.Fatalf("exit codes %v", ec)
	}
	for n := range 2 {
		for _, stream := range []string{"stdout", "stderr"} {
			r := c.request(t, "GET", fmt.Sprintf("jobs/%s/log/%d/%s", id, n, stream), nil)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Fatalf("log %d %s = %d %s", n, stream, r.status, r.body)
			}
		}
	}

	// submit_job without args sends "args": null; cancel it (PUT, 204, empty body).
	sub = c.ok(t, "POST", "jobs", submitBody(s.image, s.inputs[:1], devmode.DataBucket+"/compat/out2", devmode.SiteName, nil, 1))
	id2 := sub["job_id"].(string)
	if r := c.request(t, "PUT", "jobs/"+id2+"/cancel", nil); r.status != 204 || len(r.body) != 0 {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}

	// list_jobs.
	list := c.ok(t, "GET", "jobs?cluster="+devmode.SiteName+"&limit=10", nil)["jobs"].([]any)
	var listed []string
	for _, x := range list {
		listed = append(listed, x.(map[string]any)["id"].(string))
	}
	sort.Strings(listed)
	want := []string{id, id2}
	sort.Strings(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("listed %v, want %v", listed, want)
	}

	// The client's error mapping, one case per exception class it raises.
	bad := &client{url: s.Env.URL, token: "not-a-token"}
	admin := &client{url: s.Env.URL, token: s.Env.AdminToken}
	for _, tc := range []struct {
		name   string
		c      *client
		method string
		path   string
		body   any
		want   string
	}{
		{"invalid token", bad, "GET", "whoami", nil, "InvalidTokenError"},
		{"another user's job", admin, "GET", "jobs/" + id + "/status", nil, "UnauthorizedError"},
		{"too many cpus", c, "POST", "jobs", func() any {
			b := submitBody(s.image, s.inputs, devmode.DataBucket+"/compat/o", devmode.SiteName, nil, 1)
			b["cpus"] = 256
			return b
		}(), "IllegalParameterError"},
		{"bad structure", c, "POST", "jobs", map[string]any{"cluster": devmode.SiteName}, "SubmissionStructureError"},
		{"no such job", c, "GET", "jobs/nope/status", nil, "NoSuchJobError"},
		{"no logs", c, "GET", "jobs/" + id2 + "/log/0/stdout", nil, "NoJobLogsError"},
		{"no such image", c, "POST", "jobs", submitBody(s.image+"x", s.inputs, devmode.DataBucket+"/compat/o", devmode.SiteName, nil, 1), "SubmissionError"},
		{"missing input", c, "POST", "jobs", submitBody(s.image, []string{devmode.DataBucket + "/compat/none"}, devmode.DataBucket+"/compat/o", devmode.SiteName, nil, 1), "SubmissionError"},
		{"unknown site", c, "POST", "jobs", submitBody(s.image, s.inputs, devmode.DataBucket+"/compat/o", "perlmutter-jaws", nil, 1), "SubmissionStructureError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, e := tc.c.clientError(t, tc.method, tc.path, tc.body); got != tc.want {
				t.Fatalf("the client would raise %s (%v), want %s", got, e, tc.want)
			}
		})
	}
	// An inactive site is a JobFlowError.
	if r := admin.request(t, "DELETE", "admin/sites/"+devmode.SiteName+"/active", nil); r.status != 204 {
		t.Fatalf("deactivate = %d %s", r.status, r.body)
	}
	if got, e := c.clientError(t, "POST", "jobs", submitBody(s.image, s.inputs, devmode.DataBucket+"/compat/o", devmode.SiteName, nil, 1)); got != "JobFlowError" {
		t.Fatalf("the client would raise %s (%v), want JobFlowError", got, e)
	}
}

// pyScript drives the real client: every call of TestClientFlow's happy path.
const pyScript = `
import io, sys
from cdmtaskserviceclient.client import CTSClient, NoSuchJobError
url, token, image, bucket, site, in1, in2 = sys.argv[1:8]
c = CTSClient(token, url=url)
assert c.user, "no user"
c.whoami()
c.get_images(fmt="dict")
job = c.submit_job(image, [in1, in2], bucket + "/compat/py", cluster=site, num_containers=2,
    args=["--container", c.insert_container_number(), c.insert_files()])
st = job.wait_for_completion(timeout_sec=300)
assert st["state"] == "complete", st
assert job.get_job()["state"] == "complete"
assert job.get_exit_codes()["exit_codes"] == [0, 0]
out = io.BytesIO()
job.print_logs(container_num=1, out=out)
try:
    c.get_job_by_id("nope").get_job_status()
    raise AssertionError("no error for a missing job")
except NoSuchJobError:
    pass
print("ok", job.id)
`

// TestPythonClient runs the real Python client against a dev site. It needs python3 with
// requests, and CTS_PY_CLIENT_DIR pointing at a checkout of kbase/cdm-task-service-client
// (its src/ is put on PYTHONPATH). wait_for_completion sleeps 10 s before its second poll.
func TestPythonClient(t *testing.T) {
	dir := os.Getenv("CTS_PY_CLIENT_DIR")
	if dir == "" {
		t.Skip("CTS_PY_CLIENT_DIR is not set: point it at a checkout of kbase/cdm-task-service-client to run the real client")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	if out, err := exec.Command(py, "-c", "import requests").CombinedOutput(); err != nil {
		t.Skipf("python3 lacks requests: %s", out)
	}
	s := startSite(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyScript, s.Env.URL, s.Env.UserToken, s.image, devmode.DataBucket, devmode.SiteName, s.inputs[0], s.inputs[1])
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(dir, "src"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "ok ") {
		t.Fatalf("python client output %q", out)
	}
	t.Logf("%s", out)
}
