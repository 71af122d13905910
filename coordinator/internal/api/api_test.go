package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/api"
	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/internal/sites"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/test/imagebuild"
)

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}

const (
	adminRole = "CDM_TASK_SERVICE_ADMIN"
	logDir    = "cts-logs/container_logs"
)

// fixture is the API over the real lifecycle services, store (embedded MongoDB), S3, image manager
// (with an embedded registry) and auth client (against a fake auth2). No site launcher runs:
// jobs stay where the API puts them, and tests move them further through the store.
type fixture struct {
	keys   *agentcred.Keyring // signs agent credentials
	url    string
	srv    *api.Server
	live   *agentws.Handler // the agent endpoint, also the live log source
	obs    *fakeObserver
	st     *store.Store
	objs   *objects.Objects
	reg    *devstack.Registry
	launch *launch.Service
	notes  *fakeNotifications
	imgID  string // a registered image's name
	auth2  *auth2.Server
	mongo  *devstack.Mongo
}

var (
	zRE    = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$`)
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith is newFixture with a hook that may change the API configuration.
func newFixtureWith(t testing.TB, configure func(*api.Config)) *fixture {
	t.Helper()
	ctx := t.Context()
	a2 := auth2.New(
		auth2.User{Name: "alice", Token: "tok-alice", CustomRoles: []string{auth.DefaultStaffRole}},
		auth2.User{Name: "bob", Token: "tok-bob"},
		auth2.User{Name: "root", Token: "tok-root", CustomRoles: []string{adminRole, auth.DefaultStaffRole}},
		auth2.User{Name: "exec", Token: "tok-exec", CustomRoles: []string{auth.DefaultExecutorRole}},
	)
	if err := a2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a2.Close() })
	ac, err := auth.New(ctx, auth.Config{URL: a2.URL(), AdminRoles: []string{adminRole}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s3srv := devstack.TestS3(t, "inputs", "outputs", "cts-logs")
	mg := devstack.TestMongo(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.New(ctx, store.Config{URI: mg.URI(), Database: "api_test", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	objs := objects.New(objects.NewClient(objects.Config{Endpoint: s3srv.Endpoint, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey, Region: s3srv.Region}))
	// The gateway's shutdown waits for idle keep-alive connections: drop ours first.
	t.Cleanup(func() { objs.Client().Options().HTTPClient.(*http.Client).CloseIdleConnections() })
	imgs := images.NewManager(st)
	mover := jobs.NewMover(st, nopNotifier{}, log)
	ing := ingest.New(ingest.Config{LogDir: logDir}, st, mover, objs, log)
	rd := refdata.NewManager(refdata.Config{Sites: []string{"kbase"}}, st, func(ctx context.Context, p string) (refdata.Object, error) {
		m, err := objs.Head(ctx, p)
		return refdata.Object{Size: m.Size, CRC64NVME: m.CRC64NVME}, err
	}, log)
	lch := launch.New(launch.Config{ServiceURL: "http://cts.example", S3URL: s3srv.Endpoint, LogDir: logDir, SubmitInterval: time.Hour,
		Sites: []launch.Site{{Name: "kbase"}}}, launch.Deps{Store: st, Mover: mover, Fold: ing, Stagings: rd, Log: log})
	dir := sites.New([]sites.Site{{Name: "kbase", CPUsPerNode: 8, MemoryPerNodeGB: 10, MaxRuntimeMin: 100}}, st, nil, log)
	svc := api.Jobs{
		Admission: admission.New(admission.Config{LogDir: logDir, MaxCPUHours: 100},
			admission.Deps{Store: st, Sites: dir, Objects: objs, Images: imgs, Notify: nopNotifier{}, Submitter: lch, Log: log}),
		Records: jobs.NewRecords(st), Launch: lch, Sites: dir,
	}
	notes := &fakeNotifications{}
	obs := &fakeObserver{}
	var apiSrv *api.Server
	keys, err := agentcred.New([]byte(strings.Repeat("k", agentcred.MinKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	live := agentws.New(agentws.Config{Credentials: keys}, ing, lch, func(r *http.Request) error { return apiSrv.AuthorizeExecutor(r) }, log,
		func(w http.ResponseWriter, r *http.Request, err error) { apiSrv.WriteError(w, r, err) })
	cfg := api.Config{Version: "1.2.3", GitHash: "abc123", Notifier: notes, LiveLogs: live, Progress: live, Credentials: keys,
		LiveLogHeartbeat: 100 * time.Millisecond, LiveLogPoll: 50 * time.Millisecond, Observer: obs, Lister: objs,
		Refdata: rd, Staging: lch}
	if configure != nil {
		configure(&cfg)
	}
	apiSrv = api.New(cfg, ac, svc, imgs, objs, live, log)
	// Every error any test provokes must be one the OpenAPI document lists for its route
	// (reported when the test ends: a fuzz target may not fail its F from a request).
	var undocMu sync.Mutex
	var undocumented []string
	api.OnUndocumentedStatus(apiSrv, func(r *http.Request, route string, status int) {
		undocMu.Lock()
		defer undocMu.Unlock()
		undocumented = append(undocumented, fmt.Sprintf("%s %s answered %d, which the OpenAPI document does not list for %s", r.Method, r.URL, status, route))
	})
	t.Cleanup(func() {
		undocMu.Lock()
		defer undocMu.Unlock()
		for _, u := range undocumented {
			t.Error(u)
		}
	})
	srv := httptest.NewServer(apiSrv)
	t.Cleanup(func() {
		apiSrv.CloseStreams()
		srv.Close()
		live.Wait()
	})

	f := &fixture{keys: keys, url: srv.URL, srv: apiSrv, live: live, obs: obs, st: st, objs: objs, reg: devstack.TestRegistry(t), launch: lch, notes: notes,
		auth2: a2, mongo: mg}
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/marker", Data: []byte("x")}}, []string{"/bin/tool"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.imgID = f.reg.Host() + "/test/tool"
	if _, err := imagebuild.Push(ctx, img, f.imgID+":1"); err != nil {
		t.Fatal(err)
	}
	if _, err := imgs.Register(ctx, "root", f.imgID+":1", images.Registration{}); err != nil {
		t.Fatal(err)
	}
	f.put(t, "inputs/in/a.txt", []byte("aaa"))
	return f
}

type nopNotifier struct{}

func (nopNotifier) Poke() {}

func (f *fixture) put(t testing.TB, path string, body []byte) string {
	t.Helper()
	bucket, key, _ := strings.Cut(path, "/")
	crc := checksum.Encode(checksum.Sum(body))
	_, err := f.objs.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumCRC64NVME: aws.String(crc),
	})
	if err != nil {
		t.Fatal(err)
	}
	return crc
}

// do sends a request; auth is the whole Authorization header ("" for none).
func (f *fixture) do(t *testing.T, method, path, authz, body string) (int, http.Header, []byte) {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, rb)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
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
	return resp.StatusCode, resp.Header, b
}

// getJSON sends a request and decodes the JSON answer, checking the status.
func (f *fixture) getJSON(t *testing.T, method, path, authz, body string, status int) map[string]any {
	t.Helper()
	code, h, b := f.do(t, method, path, authz, body)
	if code != status {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, status)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

// wantError checks a CTS error response.
func (f *fixture) wantError(t *testing.T, method, path, authz, body string, status int, code float64, msg string) map[string]any {
	t.Helper()
	m := f.getJSON(t, method, path, authz, body, status)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", m)
	}
	if e["httpcode"] != float64(status) || e["httpstatus"] != http.StatusText(status) || !zRE.MatchString(e["time"].(string)) ||
		!uuidRE.MatchString(e["request_id"].(string)) {
		t.Fatalf("error envelope %v", e)
	}
	var wantCode any = code
	if code == 0 { // no app code at all
		wantCode = nil
	}
	if e["appcode"] != wantCode || (msg != "" && e["message"] != msg) {
		t.Fatalf("error %v, want appcode %v message %q", e, code, msg)
	}
	return e
}

const (
	alice = "Bearer tok-alice"
	bob   = "Bearer tok-bob"
	exec  = "Bearer tok-exec"
	root  = "Bearer tok-root"
)

func TestRootWhoamiSitesAndAuth(t *testing.T) {
	f := newFixture(t)
	t.Run("root", func(t *testing.T) {
		for _, authz := range []string{"", alice} {
			m := f.getJSON(t, "GET", "/", authz, "", 200)
			if m["service_name"] != "CDM Task Service" || m["version"] != "1.2.3" || m["git_hash"] != "abc123" ||
				!zRE.MatchString(m["server_time"].(string)) || m["notes"] == "" {
				t.Fatalf("root %v", m)
			}
		}
		// A token sent to a route that needs none is still checked.
		f.wantError(t, "GET", "/", "Bearer nope", "", 401, 10020, "")
		f.wantError(t, "GET", "/", "Basic x", "", 401, 10030, "Authorization header requires Bearer scheme")
	})
	t.Run("whoami", func(t *testing.T) {
		for _, tc := range []struct {
			authz, user string
			roles       []any
		}{
			{alice, "alice", []any{}},
			{root, "root", []any{"full_admin"}},
			{"bearer   tok-alice  ", "alice", []any{}}, // scheme in any case, token trimmed
		} {
			m := f.getJSON(t, "GET", "/whoami", tc.authz, "", 200)
			if m["user"] != tc.user || !reflect.DeepEqual(m["roles"], tc.roles) || !reflect.DeepEqual(m["allowed_paths"], []any{}) {
				t.Fatalf("whoami %v", m)
			}
		}
	})
	t.Run("auth header errors", func(t *testing.T) {
		for _, tc := range []struct {
			name, authz string
			status      int
			code        float64
			msg         string
		}{
			{"none", "", 401, 10010, "Authorization header required"},
			{"other scheme", "Basic dXNlcjpwdw==", 401, 10030, "Authorization header requires Bearer scheme"},
			{"scheme only", "Bearer", 401, 10030, "Authorization header requires Bearer scheme followed by token"},
			{"token only", "tok-alice", 401, 10030, "Authorization header requires Bearer scheme followed by token"},
			{"invalid token", "Bearer nope", 401, 10020, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f.wantError(t, "GET", "/whoami", tc.authz, "", tc.status, tc.code, tc.msg)
			})
		}
	})
	t.Run("sites", func(t *testing.T) {
		m := f.getJSON(t, "GET", "/sites", "", "", 200)
		sites := m["sites"].([]any)
		s := sites[0].(map[string]any)
		if len(sites) != 1 || s["cluster"] != "kbase" || s["cpus_per_node"] != 8.0 || s["nodes"] != nil || s["active"] != true {
			t.Fatalf("sites %v", m)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		f.wantError(t, "GET", "/nope", "", "", 404, 40000, "Not Found")
		f.wantError(t, "GET", "/jobs/a/b/c", alice, "", 404, 40000, "Not Found")
		f.wantError(t, "DELETE", "/nope", "", "", 404, 40000, "Not Found")
	})
	t.Run("wrong method", func(t *testing.T) {
		for _, tc := range []struct{ method, path, allow string }{
			{"DELETE", "/whoami", "GET"},
			{"POST", "/images", "GET"},
			{"PUT", "/jobs", "GET, POST"},
			{"POST", "/jobs/abc", "GET"},
			{"GET", "/admin/images/x/y:1", "POST, DELETE"},
		} {
			f.wantError(t, tc.method, tc.path, "", "", 405, 0, "Method Not Allowed")
			if _, h, _ := f.do(t, tc.method, tc.path, "", ""); h.Get("Allow") != tc.allow {
				t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, h.Get("Allow"), tc.allow)
			}
		}
	})
}

func TestJobRoutes(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	body := `{"cluster": "kbase", "image": "` + f.imgID + `:1", "params": {"input_mount_point": "/in", "output_mount_point": "/out",
	  "args": [{"type": "input_files", "input_files_format": "comma_separated_list"}]}, "runtime": 60, "output_dir": "outputs/x", "input_files": ["inputs/in/a.txt"]}`

	t.Run("submit validation", func(t *testing.T) {
		f.wantError(t, "POST", "/jobs", "", body, 401, 10010, "Authorization header required")
		e := f.wantError(t, "POST", "/jobs", alice, `{"cluster": "kbase"}`, 400, 30010, "")
		if _, ok := e["message"]; ok {
			t.Errorf("a validation error has a message: %v", e)
		}
		d, ok := e["request_validation_detail"].([]any)
		if !ok || len(d) == 0 {
			t.Fatalf("no request_validation_detail: %v", e)
		}
		first := d[0].(map[string]any)
		if first["type"] == "" || first["msg"] == "" || first["loc"].([]any)[0] != "body" {
			t.Fatalf("detail %v", first)
		}
		f.wantError(t, "POST", "/jobs", alice, "{", 400, 30010, "")
		// A check of the jobs service, mapped to its code.
		f.wantError(t, "POST", "/jobs", alice, strings.Replace(body, ":1", ":9", 1), 404, 40030,
			"No image "+f.imgID+" with tag '9' exists in the system.")
	})

	m := f.getJSON(t, "POST", "/jobs", alice, body, 200)
	id, _ := m["job_id"].(string)
	if !uuidRE.MatchString(id) || len(m) != 1 {
		t.Fatalf("submit answer %v", m)
	}

	t.Run("get job", func(t *testing.T) {
		v := f.getJSON(t, "GET", "/jobs/"+id, alice, "", 200)
		if v["id"] != id || v["user"] != "alice" || v["state"] != "created" || v["input_file_count"] != 1.0 ||
			!reflect.DeepEqual(v["admin_meta"], map[string]any{}) {
			t.Fatalf("job %v", v)
		}
		tt := v["transition_times"].([]any)
		tr := tt[0].(map[string]any)
		if len(tt) != 1 || tr["state"] != "created" || !zRE.MatchString(tr["time"].(string)) || len(tr) != 2 {
			t.Fatalf("transition_times %v (the user view has only state and time)", tt)
		}
		in := v["job_input"].(map[string]any)
		files := in["input_files"].([]any)
		if in["runtime"] != "PT1M" || in["memory"] != 10_000_000.0 || in["output_dir"] != "outputs/x/" ||
			files[0].(map[string]any)["crc64nvme"] == "" {
			t.Fatalf("job_input %v", in)
		}
		img := v["image"].(map[string]any)
		if img["name"] != f.imgID || img["tag"] != "1" || !zRE.MatchString(img["registered_on"].(string)) {
			t.Fatalf("image %v", img)
		}
		// Nulls are omitted, and admin fields are not shown to users.
		for _, k := range []string{"outputs", "error", "logpath", "cpu_hours", "cpu_factor", "max_memory", "output_file_count",
			"admin_error", "traceback", "cleaned", "launch"} {
			if _, ok := v[k]; ok {
				t.Errorf("field %s present in a new job's user view", k)
			}
		}
		for _, k := range []string{"urls", "usage_notes", "refdata_id"} {
			if _, ok := img[k]; ok {
				t.Errorf("image field %s present in the job view", k)
			}
		}
	})
	t.Run("status and exit codes", func(t *testing.T) {
		v := f.getJSON(t, "GET", "/jobs/"+id+"/status", alice, "", 200)
		keys := []string{}
		for k := range v {
			keys = append(keys, k)
		}
		if len(v) != 5 || v["state"] != "created" {
			t.Fatalf("status %v (keys %v)", v, keys)
		}
		v = f.getJSON(t, "GET", "/jobs/"+id+"/exit_codes", alice, "", 200)
		if !reflect.DeepEqual(v["exit_codes"], []any{nil}) {
			t.Fatalf("exit codes %v", v)
		}
	})
	t.Run("access", func(t *testing.T) {
		for _, p := range []string{"/jobs/" + id, "/jobs/" + id + "/status", "/jobs/" + id + "/exit_codes", "/jobs/" + id + "/log/0/stdout"} {
			f.wantError(t, "GET", p, bob, "", 403, 20000, "User bob may not access job "+id)
			// The user routes are for owners only, admins included (as in the CTS).
			f.wantError(t, "GET", p, root, "", 403, 20000, "User root may not access job "+id)
			f.wantError(t, "GET", p, "", "", 401, 10010, "Authorization header required")
		}
		f.wantError(t, "PUT", "/jobs/"+id+"/cancel", bob, "", 403, 20000, "User bob may not access job "+id)
		f.wantError(t, "GET", "/admin/jobs/"+id, alice, "", 403, 20000, "User alice is neither a service administrator nor an external executor")
		f.wantError(t, "GET", "/jobs/no-such-job", alice, "", 404, 40040, "No job with ID 'no-such-job' exists")
	})
	t.Run("job id pattern", func(t *testing.T) {
		for bad, typ := range map[string]string{"a.b": "string_pattern_mismatch", "a%20b": "string_pattern_mismatch", strings.Repeat("x", 51): "string_too_long"} {
			e := f.wantError(t, "GET", "/jobs/"+bad, alice, "", 400, 30010, "")
			d := e["request_validation_detail"].([]any)[0].(map[string]any)
			if d["type"] != typ || !reflect.DeepEqual(d["loc"], []any{"path", "job_id"}) {
				t.Fatalf("detail %v", d)
			}
		}
	})
	t.Run("admin view", func(t *testing.T) {
		v := f.getJSON(t, "GET", "/admin/jobs/"+id, root, "", 200)
		tr := v["transition_times"].([]any)[0].(map[string]any)
		if _, ok := tr["trans_id"]; !ok || tr["notif_sent"] != false || v["cleaned"] != false {
			t.Fatalf("admin view %v", v)
		}
	})

	// Move the job to error through the store, with every optional field set.
	cpu, mem := 1.5, int64(12345)
	n := 1
	_, err := f.st.TransitionJob(ctx, id, []job.State{job.Created}, jobs.Transition{State: job.Error, Time: time.Date(2026, 1, 2, 3, 4, 5, 123000000, time.UTC)},
		jobs.JobUpdate{Error: "user error", AdminError: "admin error", Traceback: "tb", LogPath: logDir + "/" + id,
			CPUHours: &cpu, MaxMemory: &mem, OutputFileCount: &n, Outputs: []jobs.Output{{File: "outputs/x/o", CRC64NVME: "AAAAAAAAAAA="}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ended job views", func(t *testing.T) {
		v := f.getJSON(t, "GET", "/jobs/"+id, alice, "", 200)
		tr := v["transition_times"].([]any)[1].(map[string]any)
		if v["state"] != "error" || v["error"] != "user error" || v["logpath"] != logDir+"/"+id || v["cpu_hours"] != 1.5 ||
			v["max_memory"] != 12345.0 || v["output_file_count"] != 1.0 || tr["time"] != "2026-01-02T03:04:05.123000Z" {
			t.Fatalf("job %v", v)
		}
		if _, ok := v["admin_error"]; ok {
			t.Fatal("the user view shows the admin error")
		}
		outs := v["outputs"].([]any)
		if !reflect.DeepEqual(outs, []any{map[string]any{"file": "outputs/x/o", "crc64nvme": "AAAAAAAAAAA="}}) {
			t.Fatalf("outputs %v", outs)
		}
		a := f.getJSON(t, "GET", "/admin/jobs/"+id, root, "", 200)
		if a["admin_error"] != "admin error" || a["traceback"] != "tb" {
			t.Fatalf("admin view %v", a)
		}
	})
	t.Run("cancel an ended job", func(t *testing.T) {
		f.wantError(t, "PUT", "/jobs/"+id+"/cancel", alice, "", 404, 40040,
			"Job "+id+" has already ended (error): only a job that has not ended can be canceled")
	})
	t.Run("cancel", func(t *testing.T) {
		m := f.getJSON(t, "POST", "/jobs", alice, body, 200)
		id2 := m["job_id"].(string)
		code, _, b := f.do(t, "PUT", "/jobs/"+id2+"/cancel", alice, "")
		if code != 204 || len(b) != 0 {
			t.Fatalf("cancel = %d %q", code, b)
		}
		if v := f.getJSON(t, "GET", "/jobs/"+id2+"/status", alice, "", 200); v["state"] != "canceling" {
			t.Fatalf("state %v", v["state"])
		}
		m = f.getJSON(t, "POST", "/jobs", alice, body, 200)
		if code, _, _ := f.do(t, "PUT", "/admin/jobs/"+m["job_id"].(string)+"/cancel", root, ""); code != 204 {
			t.Fatalf("admin cancel = %d", code)
		}
	})
	t.Run("logs", func(t *testing.T) {
		f.put(t, logDir+"/"+id+"/container-0-stdout.txt", []byte("line one\nline two\n"))
		code, h, b := f.do(t, "GET", "/jobs/"+id+"/log/0/stdout", alice, "")
		if code != 200 || string(b) != "line one\nline two\n" || h.Get("Content-Type") != "text/plain; charset=utf-8" ||
			h.Get("Content-Disposition") != "attachment; filename=container-0-stdout.txt" {
			t.Fatalf("log = %d %q %v", code, b, h)
		}
		code, _, b = f.do(t, "GET", "/jobs/"+id+"/log/0/stdout?seek=5&length=3", alice, "")
		if code != 200 || string(b) != "one" {
			t.Fatalf("log with seek = %d %q", code, b)
		}
		f.wantError(t, "GET", "/jobs/"+id+"/log/0/stdout?seek=100", alice, "", 400, 30001, "Seek parameter 100 is >= file size 18")
		f.wantError(t, "GET", "/jobs/"+id+"/log/0/stdout?seek=-1", alice, "", 400, 30010, "")
		f.wantError(t, "GET", "/jobs/"+id+"/log/0/stdout?length=0", alice, "", 400, 30010, "")
		f.wantError(t, "GET", "/jobs/"+id+"/log/0/stderr", alice, "", 404, 40070, "Job ID "+id+" has no stderr log for container 0")
		f.wantError(t, "GET", "/jobs/"+id+"/log/1/stdout", alice, "", 400, 30001, "Container number 1 is out of range for job "+id+" with 1 containers")
		f.wantError(t, "GET", "/jobs/"+id+"/log/x/stdout", alice, "", 400, 30010, "")
		f.wantError(t, "GET", "/jobs/"+id+"/log/0/other", alice, "", 404, 40000, "Not Found")
		other := f.getJSON(t, "POST", "/jobs", alice, body, 200)["job_id"].(string)
		f.wantError(t, "GET", "/jobs/"+other+"/log/0/stdout", alice, "", 404, 40070, "Job ID "+other+" has no logs available")
	})
}

func TestImageRoutes(t *testing.T) {
	f := newFixture(t)
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/marker", Data: []byte("two")}}, []string{"/bin/two"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagebuild.Push(t.Context(), img, f.imgID+":2"); err != nil {
		t.Fatal(err)
	}
	ref := f.imgID + ":2"
	f.wantError(t, "POST", "/admin/images/"+ref, "", "", 401, 10010, "Authorization header required")
	f.wantError(t, "POST", "/admin/images/"+ref, alice, "", 403, 20000, "User alice is not a service administrator")
	f.wantError(t, "POST", "/admin/images/"+ref, root, `{"nope": 1}`, 400, 30010, "")
	v := f.getJSON(t, "POST", "/admin/images/"+ref, root, `{"urls": ["https://example.org/two"], "usage_notes": "see the docs"}`, 200)
	if v["name"] != f.imgID || v["tag"] != "2" || v["registered_by"] != "root" || !zRE.MatchString(v["registered_on"].(string)) ||
		!reflect.DeepEqual(v["entrypoint"], []any{"/bin/two"}) || !reflect.DeepEqual(v["urls"], []any{"https://example.org/two"}) ||
		v["usage_notes"] != "see the docs" {
		t.Fatalf("registered %v", v)
	}
	if _, ok := v["refdata_id"]; ok {
		t.Fatal("null refdata_id shown")
	}
	f.wantError(t, "POST", "/admin/images/"+ref, root, "", 400, 50010, "The digest "+v["digest"].(string)+" for image "+f.imgID+" already exists in the system")
	f.wantError(t, "POST", "/admin/images/Bad", root, "", 400, 30040, "")

	got := f.getJSON(t, "GET", "/images/"+ref, "", "", 200)
	if got["digest"] != v["digest"] {
		t.Fatalf("GET image %v", got)
	}
	list := f.getJSON(t, "GET", "/images", "", "", 200)
	if n := len(list["data"].([]any)); n != 2 {
		t.Fatalf("%d images listed, want 2", n)
	}
	f.wantError(t, "DELETE", "/admin/images/"+ref, alice, "", 403, 20000, "User alice is not a service administrator")
	if code, _, b := f.do(t, "DELETE", "/admin/images/"+ref, root, ""); code != 204 || len(b) != 0 {
		t.Fatalf("delete = %d %q", code, b)
	}
	f.wantError(t, "GET", "/images/"+ref, "", "", 404, 40030, "No image "+f.imgID+" with tag '2' exists in the system.")
}

// TestTrailingSlashRedirect: as Starlette does, a path that is a route only without its
// trailing slash answers 307 to that path (the CTS docs POST to /jobs/); unknown paths stay 404.
func TestTrailingSlashRedirect(t *testing.T) {
	srv := newFixture(t).srv
	for _, tc := range []struct {
		method, path, want string
		code               int
	}{
		{"POST", "/jobs/", "/jobs", 307},
		{"GET", "/whoami/?x=1", "/whoami?x=1", 307},
		{"GET", "/nope/", "", 404},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || rec.Header().Get("Location") != tc.want {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, rec.Code, rec.Header().Get("Location"), tc.code, tc.want)
		}
	}
}
