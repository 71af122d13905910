package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/api"
)

// docOperation is what TestEveryErrorStatusIsDocumented reads of one operation of the
// document.
type docOperation struct {
	method, path string
	params       []docParam
	body         bool
	statuses     map[int]bool
}

type docParam struct {
	In       string `json:"in"`
	Name     string `json:"name"`
	Required bool   `json:"required"`
	Schema   struct {
		Enum []string `json:"enum"`
	} `json:"schema"`
}

// readOperations returns every operation of the document served at /openapi.json.
func readOperations(t *testing.T, f *fixture) []docOperation {
	t.Helper()
	code, _, b := f.do(t, "GET", "/openapi.json", "", "")
	if code != 200 {
		t.Fatalf("openapi.json = %d", code)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters  []docParam                 `json:"parameters"`
			RequestBody json.RawMessage            `json:"requestBody"`
			Responses   map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []docOperation
	for path, methods := range doc.Paths {
		for method, op := range methods {
			o := docOperation{method: strings.ToUpper(method), path: path, params: op.Parameters, body: op.RequestBody != nil,
				statuses: map[int]bool{}}
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Fatalf("%s %s: response %q is not a status", method, path, code)
				}
				o.statuses[n] = true
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops
}

// TestEveryErrorStatusIsDocumented drives every operation of the OpenAPI document through its
// failure modes, against the real services behind the API: every way of (not) authenticating
// and every role; each path parameter valid, unknown and malformed; each query parameter
// malformed, out of range or empty; bodies missing, malformed, of the wrong shape, too large,
// and (for job submissions) naming an unknown image, a missing file or bucket, an unknown
// site, or sent by a user who may not submit; a Range no file satisfies; and auth2 down.
// Every answer must be a status the document lists for the operation. The server checks the
// same for every request of every test of this package (the fixture fails the test), so a
// handler that gains a status its document lacks fails here or in the test of that failure.
func TestEveryErrorStatusIsDocumented(t *testing.T) {
	f := newFixtureWith(t, func(c *api.Config) { c.MaxBodyBytes = 64 << 10 })
	job := f.submit(t, alice)
	ops := readOperations(t, f)
	if len(ops) < 40 {
		t.Fatalf("the document has %d operations", len(ops))
	}

	// The values of each path parameter: a valid one first (the baseline), then unknown and
	// malformed ones.
	pathValues := map[string][]string{
		"job_id":        {job, "nosuchjob", "bad$id", strings.Repeat("j", 51)},
		"image_id":      {f.imgID + ":1", "docker.io/nosuch/image:1", "Bad Image!", f.imgID + "@sha256:" + strings.Repeat("0", 64)},
		"container_num": {"0", "7", "x", "-1"},
		"site":          {"kbase", "nosuchsite"},
		"cluster":       {"kbase", "nosuchsite"},
		"refdata_id":    {"nosuchrefdata", "bad$id"},
		"s3_path":       {"inputs/in/a.txt", "inputs/missing.txt", "x", "nosuchbucket/a.txt"},
		"new_state":     {"complete", "nosuchstate"},
	}
	// Query values: the baseline of a required parameter, then what each one is tried with.
	required := map[string]string{"state": "created", "crc64nvme": "AAAAAAAAAAA="}
	queryValues := []string{"x", "-1", "0", "", "1000001", "true", "2024-13-45", "PT1S"}
	bodies := []string{"", "{", "[]", "{}", `{"x": ` + strings.Repeat(" ", 1<<20) + `1}`, `{"set": {"a": 1}, "unset": ["b"]}`}
	jobBodies := []string{
		f.submitBody(),
		strings.Replace(f.submitBody(), f.imgID+":1", "docker.io/nosuch/image:1", 1),
		strings.Replace(f.submitBody(), "inputs/in/a.txt", "inputs/missing.txt", 1),
		strings.Replace(f.submitBody(), "inputs/in/a.txt", "nosuchbucket/a.txt", 1),
		strings.Replace(f.submitBody(), `"kbase"`, `"nosuchsite"`, 1),
		strings.Replace(f.submitBody(), `"outputs/x"`, `"cts-logs/x"`, 1),
		strings.Replace(f.submitBody(), "inputs/in/a.txt", logDir+"/a.txt", 1),
		strings.Replace(f.submitBody(), `"outputs/x"`, `"`+logDir+`/x"`, 1),
	}
	// Every way of authenticating; the admin comes last, as its requests change things (an
	// image deleted, a site deactivated) that would hide other failures.
	auths := []string{"", "Bearer bogus-token", "Basic abc", bob, alice, exec, root}

	type request struct{ path, authz, body, rangeHdr string }
	seen := map[string]map[int]bool{}
	send := func(t *testing.T, op docOperation, rq request) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), op.method, f.url+rq.path, strings.NewReader(rq.body))
		if err != nil {
			t.Fatal(err)
		}
		if rq.body == "" {
			req.Body = nil
		}
		if rq.authz != "" {
			req.Header.Set("Authorization", rq.authz)
		}
		if rq.rangeHdr != "" {
			req.Header.Set("Range", rq.rangeHdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", op.method, rq.path, err)
		}
		// Streams (live logs) are not read to their end: the status is what counts.
		_ = resp.Body.Close()
		key := op.method + " " + op.path
		if seen[key] == nil {
			seen[key] = map[int]bool{}
		}
		seen[key][resp.StatusCode] = true
		if resp.StatusCode >= 300 && !op.statuses[resp.StatusCode] {
			t.Errorf("%s %s (authorization %q, body %.40q, range %q) answered %d, which the document does not list for %s %s",
				op.method, rq.path, rq.authz, rq.body, rq.rangeHdr, resp.StatusCode, op.method, op.path)
		}
	}

	for _, authz := range auths {
		for _, op := range ops {
			// The paths: the baseline, then each path parameter varied alone.
			var paths []string
			fill := func(vary string, alt string) string {
				p := op.path
				for _, prm := range op.params {
					if prm.In != "path" {
						continue
					}
					v := pathValues[prm.Name]
					if len(v) == 0 {
						t.Fatalf("%s %s: no test values for path parameter %s", op.method, op.path, prm.Name)
					}
					val := v[0]
					if prm.Name == vary {
						val = alt
					}
					p = strings.Replace(p, "{"+prm.Name+"}", val, 1)
				}
				return p
			}
			paths = append(paths, fill("", ""))
			for _, prm := range op.params {
				if prm.In == "path" {
					for _, alt := range pathValues[prm.Name][1:] {
						paths = append(paths, fill(prm.Name, alt))
					}
				}
			}
			// The query strings: required parameters at their baseline, then each parameter
			// varied alone.
			base := map[string]string{}
			for _, prm := range op.params {
				if prm.In == "query" && prm.Required {
					base[prm.Name] = required[prm.Name]
				}
			}
			query := func(name, val string) string {
				var kv []string
				for k, v := range base {
					if k != name {
						kv = append(kv, k+"="+v)
					}
				}
				if name != "" {
					kv = append(kv, name+"="+val)
				}
				slices.Sort(kv)
				if len(kv) == 0 {
					return ""
				}
				return "?" + strings.Join(kv, "&")
			}
			queries := []string{query("", "")}
			for _, prm := range op.params {
				if prm.In != "query" {
					continue
				}
				for _, v := range append(slices.Clone(queryValues), prm.Schema.Enum...) {
					queries = append(queries, query(prm.Name, v))
				}
			}
			bs := []string{""}
			if op.body {
				bs = bodies
				if op.path == "/jobs" || op.path == "/jobs/preview" {
					bs = append(slices.Clone(bodies), jobBodies...)
				}
			}
			for _, p := range paths {
				send(t, op, request{path: p + queries[0], authz: authz, body: bs[0]})
			}
			for _, q := range queries[1:] {
				send(t, op, request{path: paths[0] + q, authz: authz, body: bs[0]})
			}
			for _, b := range bs {
				send(t, op, request{path: paths[0] + queries[0], authz: authz, body: b})
			}
			if op.method == "GET" && !strings.HasSuffix(op.path, "/live") {
				send(t, op, request{path: paths[0] + queries[0], authz: authz, rangeHdr: "bytes=999999999-"})
			}
		}
	}

	// auth2 down: a token it has not seen yet cannot be checked.
	if err := f.auth2.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		p := op.path
		for _, prm := range op.params {
			if prm.In == "path" {
				p = strings.Replace(p, "{"+prm.Name+"}", pathValues[prm.Name][0], 1)
			}
		}
		send(t, op, request{path: p, authz: "Bearer never-seen-token"})
	}

	// What the document lists that no request provoked is only logged: some failures need a
	// broken dependency (500, 503) or a race to happen.
	for _, op := range ops {
		var never []string
		for code := range op.statuses {
			if code >= 400 && !seen[op.method+" "+op.path][code] {
				never = append(never, strconv.Itoa(code))
			}
		}
		slices.Sort(never)
		if len(never) > 0 {
			t.Logf("%s %s: never provoked %s", op.method, op.path, strings.Join(never, ", "))
		}
	}
}
