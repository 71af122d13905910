package api_test

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// fakeNotifications records the admin notification calls (api.Notifications is this
// package's interface).
type fakeNotifications struct {
	mu      sync.Mutex
	sent    []jobs.Transition
	checked []time.Time
}

func (n *fakeNotifications) Send(_ context.Context, _ string, t jobs.Transition) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, t)
	return nil
}

func (n *fakeNotifications) CheckUnsent(_ context.Context, olderThan time.Time) (int, int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.checked = append(n.checked, olderThan)
	return 2, 3, nil
}

// submitBody is a valid job input for the fixture.
func (f *fixture) submitBody() string {
	return `{"cluster": "kbase", "image": "` + f.imgID + `:1", "params": {}, "runtime": 60, "output_dir": "outputs/x", "input_files": ["inputs/in/a.txt"]}`
}

func (f *fixture) submit(t *testing.T, authz string) string {
	t.Helper()
	return f.getJSON(t, "POST", "/jobs", authz, f.submitBody(), 200)["job_id"].(string)
}

// TestRouteAuthMatrix sends every route of the CTS API at every auth level: no token, an
// invalid token, a malformed header, a user, the job's owner, another user, an admin and an
// executor; each gets the route's success or the documented error.
func TestRouteAuthMatrix(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, alice)       // alice's job, left in created
	cancelID := f.submit(t, alice) // for the owner cancel
	adminCancelID := f.submit(t, alice)
	endedID := f.submit(t, alice) // ended: its live log streams end at once
	if _, err := f.st.TransitionJob(t.Context(), endedID, []job.State{job.Created}, jobs.Transition{State: job.Error, Time: time.Now()},
		jobs.JobUpdate{Error: "e", AdminError: "ae"}); err != nil {
		t.Fatal(err)
	}

	type level struct{ name, authz string }
	levels := []level{
		{"no token", ""}, {"invalid token", "Bearer nope"}, {"bad header", "Basic x"},
		{"other user", bob}, {"owner", alice}, {"admin", root}, {"executor", exec},
	}
	// ok is the answer of an authorised caller: a status and, for errors, the app code.
	type ok struct {
		status int
		code   float64
	}
	type tc struct {
		method, path, body, auth string
		ok                       ok
	}
	j := "/jobs/" + id
	aj := "/admin/jobs/" + id
	img := f.imgID + ":1"
	cases := []tc{
		{"GET", "/", "", "none", ok{200, 0}},
		{"GET", "/whoami", "", "user", ok{200, 0}},
		{"GET", "/sites", "", "none", ok{200, 0}},
		{"GET", "/jobs", "", "user", ok{200, 0}},
		{"POST", "/jobs", "{", "user", ok{400, 30010}},
		{"GET", j, "", "owner", ok{200, 0}},
		{"GET", j + "/status", "", "owner", ok{200, 0}},
		{"GET", j + "/exit_codes", "", "owner", ok{200, 0}},
		{"GET", j + "/containers", "", "owner", ok{200, 0}},
		{"GET", j + "/log/0/stdout", "", "owner", ok{404, 40070}},
		{"GET", j + "/log/0/stderr", "", "owner", ok{404, 40070}},
		{"GET", "/jobs/" + endedID + "/log/0/stdout/live", "", "owner or admin", ok{200, 0}},
		{"GET", "/jobs/" + endedID + "/log/0/stderr/live", "", "owner or admin", ok{200, 0}},
		{"PUT", "/jobs/" + cancelID + "/cancel", "", "owner", ok{204, 0}},
		{"GET", "/images", "", "none", ok{200, 0}},
		{"GET", "/images/" + img, "", "none", ok{200, 0}},
		{"POST", "/admin/images/" + img, "", "admin", ok{400, 50010}},
		{"DELETE", "/admin/images/" + f.imgID + ":none", "", "admin", ok{404, 40030}},
		{"GET", "/admin/jobs", "", "admin", ok{200, 0}},
		{"GET", aj, "", "admin or executor", ok{200, 0}},
		{"GET", aj + "/exit_codes", "", "admin", ok{200, 0}},
		{"GET", aj + "/container", "", "admin", ok{200, 0}},
		{"GET", aj + "/container/0", "", "admin", ok{200, 0}},
		{"GET", aj + "/runner_status", "", "admin", ok{200, 0}},
		{"PUT", "/admin/jobs/" + adminCancelID + "/cancel", "", "admin", ok{204, 0}},
		{"PUT", aj + "/meta", `{"set_fields": {"k": 1}}`, "admin", ok{204, 0}},
		{"PUT", aj + "/notify?state=created", "", "admin", ok{204, 0}},
		{"DELETE", aj + "/clean", "", "admin", ok{400, 30300}},
		{"DELETE", "/admin/sites/kbase/active", "", "admin", ok{204, 0}},
		{"PUT", "/admin/sites/kbase/active", "", "admin", ok{204, 0}},
		{"POST", "/admin/unsent_notifications", "", "admin", ok{200, 0}},
		{"GET", "/admin/clients/nersc", "", "admin", ok{400, 100000}},
		{"GET", "/callback/download/" + id, "", "none", ok{400, 100000}},
		{"GET", "/callback/refdata_download/r1/kbase", "", "none", ok{400, 100000}},
		{"GET", "/callback/job/" + id, "", "none", ok{400, 100000}},
		{"GET", "/callback/upload/" + id, "", "none", ok{400, 100000}},
		{"GET", "/callback/errlogs/" + id, "", "none", ok{400, 100000}},
		{"PUT", "/external_exec/jobs/" + id + "/container/0/update/complete", "{}", "executor", ok{400, 100000}},
		{"GET", "/external_exec/files/condor/executable.sh", "", "none", ok{400, 100000}},
		{"GET", "/external_exec/files/code_archive.tgz", "", "none", ok{400, 100000}},
		{"GET", "/external_exec/files/cts-agent", "", "none", ok{404, 40000}},
	}
	allowed := func(auth, lvl string) bool {
		switch auth {
		case "none":
			return true
		case "user":
			return lvl == "other user" || lvl == "owner" || lvl == "admin" || lvl == "executor"
		case "owner":
			return lvl == "owner"
		case "owner or admin":
			return lvl == "owner" || lvl == "admin"
		case "admin":
			return lvl == "admin"
		case "admin or executor":
			return lvl == "admin" || lvl == "executor"
		case "executor":
			return lvl == "executor"
		}
		panic(auth)
	}
	for _, c := range cases {
		for _, l := range levels {
			t.Run(c.method+" "+c.path+" as "+l.name, func(t *testing.T) {
				switch {
				case l.name == "invalid token":
					f.wantError(t, c.method, c.path, l.authz, c.body, 401, 10020, "")
				case l.name == "bad header":
					f.wantError(t, c.method, c.path, l.authz, c.body, 401, 10030, "Authorization header requires Bearer scheme")
				case l.name == "no token" && c.auth != "none":
					f.wantError(t, c.method, c.path, "", c.body, 401, 10010, "Authorization header required")
				case !allowed(c.auth, l.name):
					f.wantError(t, c.method, c.path, l.authz, c.body, 403, 20000, "")
				case c.ok.code != 0:
					f.wantError(t, c.method, c.path, l.authz, c.body, c.ok.status, c.ok.code, "")
				default:
					code, _, b := f.do(t, c.method, c.path, l.authz, c.body)
					if code != c.ok.status {
						t.Fatalf("%s %s = %d %s, want %d", c.method, c.path, code, b, c.ok.status)
					}
					if code == 204 && len(b) != 0 {
						t.Fatalf("204 with a body %q", b)
					}
				}
			})
		}
	}
}

func TestListJobs(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	a1 := f.submit(t, alice)
	time.Sleep(5 * time.Millisecond)
	a2 := f.submit(t, alice)
	time.Sleep(5 * time.Millisecond)
	b1 := f.submit(t, bob)
	if _, err := f.st.TransitionJob(ctx, a1, []job.State{job.Created}, jobs.Transition{State: job.Error, Time: time.Now()},
		jobs.JobUpdate{Error: "e", AdminError: "ae"}); err != nil {
		t.Fatal(err)
	}
	ids := func(m map[string]any) []string {
		var out []string
		for _, j := range m["jobs"].([]any) {
			out = append(out, j.(map[string]any)["id"].(string))
		}
		return out
	}
	list := func(authz, path string) []string {
		t.Helper()
		return ids(f.getJSON(t, "GET", path, authz, "", 200))
	}
	t.Run("own jobs, newest transition first", func(t *testing.T) {
		if got := list(alice, "/jobs"); !reflect.DeepEqual(got, []string{a1, a2}) {
			t.Fatalf("alice's jobs %v, want %v", got, []string{a1, a2})
		}
		if got := list(bob, "/jobs"); !reflect.DeepEqual(got, []string{b1}) {
			t.Fatalf("bob's jobs %v", got)
		}
		m := f.getJSON(t, "GET", "/jobs", alice, "", 200)
		first := m["jobs"].([]any)[0].(map[string]any)
		in := first["job_input"].(map[string]any)
		if _, ok := in["input_files"]; ok {
			t.Fatal("a list entry has input_files")
		}
		if first["error"] != "e" || first["input_file_count"] != 1.0 || in["runtime"] != "PT1M" {
			t.Fatalf("list entry %v", first)
		}
		if _, ok := first["admin_error"]; ok {
			t.Fatal("a list entry shows the admin error")
		}
	})
	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			path string
			want []string
		}{
			{"/jobs?state=created", []string{a2}},
			{"/jobs?state=error", []string{a1}},
			{"/jobs?cluster=kbase&limit=1", []string{a1}},
			{"/jobs?after=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), nil},
			{"/jobs?before=" + url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), []string{a1, a2}},
			{"/jobs?before=2000-01-01T00:00:00Z", nil},
			{"/jobs?after=946684800", []string{a1, a2}}, // Unix seconds, as pydantic takes them
			{"/jobs?image=" + url.QueryEscape(f.imgID), []string{a1, a2}},
			{"/jobs?image=" + url.QueryEscape(f.imgID+":1"), []string{a1, a2}},
			{"/jobs?image=" + url.QueryEscape(f.imgID+":2"), nil},
			{"/jobs?image=" + url.QueryEscape(f.imgID+"@sha256:"+strings.Repeat("0", 64)), nil},
			{"/jobs?state=error&image=" + url.QueryEscape(f.imgID), []string{a1}},
			{"/jobs?image=ubuntu", nil},
		} {
			if got := list(alice, tc.path); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %v, want %v", tc.path, got, tc.want)
			}
		}
	})
	t.Run("admin list", func(t *testing.T) {
		if got := list(root, "/admin/jobs"); len(got) != 3 {
			t.Fatalf("all jobs %v", got)
		}
		if got := list(root, "/admin/jobs?user=bob"); !reflect.DeepEqual(got, []string{b1}) {
			t.Fatalf("bob's jobs %v", got)
		}
		if got := list(root, "/admin/jobs?user=bob&image="+url.QueryEscape(f.imgID)); !reflect.DeepEqual(got, []string{b1}) {
			t.Fatalf("bob's jobs of the image %v", got)
		}
		f.wantError(t, "GET", "/admin/jobs?user=nosuchuser", root, "", 400, 10040, "No such user: nosuchuser")
		f.wantError(t, "GET", "/admin/jobs?user=Bob", root, "", 400, 30010, "")
	})
	t.Run("validation", func(t *testing.T) {
		for _, tc := range []struct{ query, param, typ string }{
			{"limit=0", "limit", "greater_than_equal"},
			{"limit=1001", "limit", "less_than_equal"},
			{"limit=x", "limit", "int_parsing"},
			{"state=running", "state", "enum"},
			{"cluster=perlmutter-jaws", "cluster", "enum"},
			{"after=2024-01-01T00:00:00", "after", "timezone_aware"},
			{"before=2024-01-01", "before", "timezone_aware"},
			{"after=yesterday", "after", "datetime_parsing"},
			{"image=a%20b", "image", "value_error"},
			{"image=" + strings.Repeat("a", 1001), "image", "string_too_long"},
		} {
			e := f.wantError(t, "GET", "/jobs?"+tc.query, alice, "", 400, 30010, "")
			d := e["request_validation_detail"].([]any)[0].(map[string]any)
			if d["type"] != tc.typ || !reflect.DeepEqual(d["loc"], []any{"query", tc.param}) {
				t.Errorf("%s: detail %v", tc.query, d)
			}
		}
		// Every problem is reported at once.
		e := f.wantError(t, "GET", "/jobs?limit=0&state=x", alice, "", 400, 30010, "")
		if n := len(e["request_validation_detail"].([]any)); n != 2 {
			t.Fatalf("%d details, want 2", n)
		}
	})
}

func TestAdminJobRoutes(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	id := f.submit(t, alice)
	aj := "/admin/jobs/" + id
	t.Run("meta", func(t *testing.T) {
		put := func(body string) (int, []byte) {
			code, _, b := f.do(t, "PUT", aj+"/meta", root, body)
			return code, b
		}
		if code, b := put(`{"set_fields": {"a": "x", "n": 2, "f": 1.5, "gone": "y"}}`); code != 204 {
			t.Fatalf("set = %d %s", code, b)
		}
		if code, b := put(`{"unset_keys": ["gone", "never"]}`); code != 204 {
			t.Fatalf("unset = %d %s", code, b)
		}
		st := f.getJSON(t, "GET", "/jobs/"+id+"/status", alice, "", 200)
		if want := map[string]any{"a": "x", "n": 2.0, "f": 1.5}; !reflect.DeepEqual(st["admin_meta"], want) {
			t.Fatalf("admin_meta %v, want %v (the owner sees it)", st["admin_meta"], want)
		}
		for _, tc := range []struct {
			name, body string
			code       float64
			msg        string
		}{
			{"nothing", `{}`, 30001, "At least one of set_fields or unset_keys must contain keys to alter"},
			{"both", `{"set_fields": {"b": 1, "a": 2}, "unset_keys": ["a", "b"]}`, 30001, "Cannot set and unset the same keys in a single update: ['a', 'b']"},
			{"dot", `{"set_fields": {"a.b": 1}}`, 30001, "Illegal admin_meta key: key 'a.b' contains '.'"},
			{"dollar", `{"unset_keys": ["$x"]}`, 30001, "Illegal admin_meta key: key '$x' starts with '$'"},
			{"empty key", `{"set_fields": {"": 1}}`, 30001, "Illegal admin_meta key: keys may not be empty"},
			{"long key", `{"set_fields": {"` + strings.Repeat("k", 257) + `": 1}}`, 30001, ""},
			{"long value", `{"set_fields": {"k": "` + strings.Repeat("v", 4097) + `"}}`, 30001, "The value of admin_meta key 'k' is longer than 4096 characters"},
			{"bool value", `{"set_fields": {"k": true}}`, 30010, ""},
			{"object value", `{"set_fields": {"k": {}}}`, 30010, ""},
			{"unknown field", `{"set": {}}`, 30010, ""},
			{"not json", `{`, 30010, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f.wantError(t, "PUT", aj+"/meta", root, tc.body, 400, tc.code, tc.msg)
			})
		}
		var many []string
		for i := range jobs.MaxMetaKeys {
			many = append(many, `"k`+strings.Repeat("x", i)+`": 1`)
		}
		f.wantError(t, "PUT", aj+"/meta", root, `{"set_fields": {`+strings.Join(many, ",")+`}}`, 400, 30001,
			"A job may have at most 100 admin_meta keys; this update would leave 103")
		f.wantError(t, "PUT", "/admin/jobs/nope/meta", root, `{"set_fields": {"a": 1}}`, 404, 40040, "No job with ID 'nope' exists")
	})
	t.Run("notify", func(t *testing.T) {
		code, _, b := f.do(t, "PUT", aj+"/notify?state=created", root, "")
		if code != 204 {
			t.Fatalf("notify = %d %s", code, b)
		}
		a := f.getJSON(t, "GET", aj, root, "", 200)
		tr := a["transition_times"].([]any)[0].(map[string]any)
		f.notes.mu.Lock()
		last := f.notes.sent[len(f.notes.sent)-1]
		f.notes.mu.Unlock()
		if last.TransID != tr["trans_id"] || last.State != job.Created {
			t.Fatalf("sent %+v, want the created transition %v", last, tr)
		}
		f.wantError(t, "PUT", aj+"/notify?state=complete", root, "", 400, 30300, "Job "+id+" never passed through state complete")
		e := f.wantError(t, "PUT", aj+"/notify", root, "", 400, 30010, "")
		if d := e["request_validation_detail"].([]any)[0].(map[string]any); d["type"] != "missing" {
			t.Fatalf("detail %v", d)
		}
		f.wantError(t, "PUT", aj+"/notify?state=nope", root, "", 400, 30010, "")
	})
	t.Run("unsent notifications", func(t *testing.T) {
		before := time.Now()
		v := f.getJSON(t, "POST", "/admin/unsent_notifications?notification_age=PT2M", root, "", 200)
		if v["jobs"] != 2.0 || v["transitions"] != 3.0 {
			t.Fatalf("unsent %v", v)
		}
		f.notes.mu.Lock()
		older := f.notes.checked[len(f.notes.checked)-1]
		f.notes.mu.Unlock()
		if d := before.Sub(older); d < 2*time.Minute-time.Second || d > 2*time.Minute+time.Second {
			t.Fatalf("checked transitions older than %s ago, want 2m", d)
		}
		f.wantError(t, "POST", "/admin/unsent_notifications?notification_age=30", root, "", 400, 30010, "")
		f.wantError(t, "POST", "/admin/unsent_notifications?notification_age=soon", root, "", 400, 30010, "")
	})
	t.Run("containers and runner status", func(t *testing.T) {
		v := f.getJSON(t, "GET", aj+"/container", root, "", 200)
		subs := v["subjobs"].([]any)
		sj := subs[0].(map[string]any)
		if len(subs) != 1 || sj["id"] != id || sj["sub_id"] != 0.0 || sj["state"] != "download_submitted" {
			t.Fatalf("subjobs %v", v)
		}
		for _, k := range []string{"exit_code", "outputs", "admin_error", "traceback"} {
			if val, ok := sj[k]; !ok || val != nil {
				t.Errorf("sub-job field %s = %v, want a null (SubJob shows nulls)", k, val)
			}
		}
		one := f.getJSON(t, "GET", aj+"/container/0", root, "", 200)
		if !reflect.DeepEqual(one, sj) {
			t.Fatalf("container 0 %v, want %v", one, sj)
		}
		f.wantError(t, "GET", aj+"/container/1", root, "", 404, 40050, "No job with ID '"+id+"' and subjob ID 1 exists")
		f.wantError(t, "GET", aj+"/container/-1", root, "", 400, 30010, "")
		f.wantError(t, "GET", aj+"/container/x", root, "", 400, 30010, "")
		if v := f.getJSON(t, "GET", aj+"/runner_status?container_number=0", root, "", 200); len(v) != 0 {
			t.Fatalf("runner status of an unlaunched job %v, want {}", v)
		}
		f.wantError(t, "GET", aj+"/runner_status?container_number=3", root, "", 404, 40050, "Job "+id+" has no container 3")
		f.wantError(t, "GET", aj+"/runner_status?container_number=-3", root, "", 400, 30010, "")
		f.wantError(t, "GET", "/admin/jobs/nope/runner_status", root, "", 404, 40040, "No job with ID 'nope' exists")
		if v := f.getJSON(t, "GET", aj+"/exit_codes", root, "", 200); !reflect.DeepEqual(v["exit_codes"], []any{nil}) {
			t.Fatalf("exit codes %v", v)
		}
	})
	t.Run("clean", func(t *testing.T) {
		f.wantError(t, "DELETE", aj+"/clean", root, "", 400, 30300, "Job is not in a terminal state and cannot be cleaned")
		f.wantError(t, "DELETE", aj+"/clean?force=maybe", root, "", 400, 30010, "")
		if code, _, b := f.do(t, "DELETE", aj+"/clean?force=true", root, ""); code != 204 {
			t.Fatalf("forced clean = %d %s", code, b)
		}
		if a := f.getJSON(t, "GET", aj, root, "", 200); a["cleaned"] != false {
			t.Fatal("a forced clean of a live job marked it cleaned")
		}
		if _, err := f.st.TransitionJob(ctx, id, []job.State{job.Created}, jobs.Transition{State: job.Canceling, Time: time.Now()}, jobs.JobUpdate{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.TransitionJob(ctx, id, []job.State{job.Canceling}, jobs.Transition{State: job.Canceled, Time: time.Now()}, jobs.JobUpdate{}); err != nil {
			t.Fatal(err)
		}
		if code, _, b := f.do(t, "DELETE", aj+"/clean", root, ""); code != 204 {
			t.Fatalf("clean = %d %s", code, b)
		}
		if a := f.getJSON(t, "GET", aj, root, "", 200); a["cleaned"] != true {
			t.Fatalf("cleaned = %v", a["cleaned"])
		}
		// The periodic cleaner takes ended jobs older than its age.
		other := f.submit(t, alice)
		if _, err := f.st.TransitionJob(ctx, other, []job.State{job.Created}, jobs.Transition{State: job.Error, Time: time.Now().Add(-time.Hour)},
			jobs.JobUpdate{Error: "e", AdminError: "ae"}); err != nil {
			t.Fatal(err)
		}
		if n, err := f.launch.CleanPass(ctx, 2*time.Hour); err != nil || n != 0 {
			t.Fatalf("clean pass (too young) = %d, %v", n, err)
		}
		if n, err := f.launch.CleanPass(ctx, 30*time.Minute); err != nil || n != 1 {
			t.Fatalf("clean pass = %d, %v; want 1 job cleaned", n, err)
		}
		if a := f.getJSON(t, "GET", "/admin/jobs/"+other, root, "", 200); a["cleaned"] != true {
			t.Fatal("the cleaner did not mark the job cleaned")
		}
	})
}

func TestSiteActive(t *testing.T) {
	f := newFixture(t)
	if code, _, b := f.do(t, "DELETE", "/admin/sites/kbase/active", root, ""); code != 204 {
		t.Fatalf("deactivate = %d %s", code, b)
	}
	s := f.getJSON(t, "GET", "/sites", "", "", 200)["sites"].([]any)[0].(map[string]any)
	if s["active"] != false || s["available"] != true {
		t.Fatalf("site %v", s)
	}
	f.wantError(t, "POST", "/jobs", alice, f.submitBody(), 400, 60010, "Job flow for cluster kbase is disabled")
	if code, _, b := f.do(t, "PUT", "/admin/sites/kbase/active", root, ""); code != 204 {
		t.Fatalf("activate = %d %s", code, b)
	}
	f.submit(t, alice)
	e := f.wantError(t, "PUT", "/admin/sites/perlmutter-jaws/active", root, "", 400, 30010, "")
	d := e["request_validation_detail"].([]any)[0].(map[string]any)
	if d["type"] != "enum" || d["msg"] != "Input should be 'kbase'" {
		t.Fatalf("detail %v", d)
	}
}

// TestTimestamps checks the time and duration formats of every view.
func TestTimestamps(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, alice)
	_, _, b := f.do(t, "GET", "/admin/jobs/"+id, root, "")
	var v struct {
		TransitionTimes []struct {
			Time string `json:"time"`
		} `json:"transition_times"`
		JobInput struct {
			Runtime string `json:"runtime"`
		} `json:"job_input"`
		Image struct {
			RegisteredOn string `json:"registered_on"`
		} `json:"image"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if !zRE.MatchString(v.TransitionTimes[0].Time) || !zRE.MatchString(v.Image.RegisteredOn) || v.JobInput.Runtime != "PT1M" {
		t.Fatalf("formats in %s", b)
	}
}
