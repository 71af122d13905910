package api_test

import (
	"net/url"
	"reflect"
	"testing"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/api"
)

// TestS3List lists folders as a user would while choosing inputs: only below the allowed
// paths, never the log folder, a page at a time.
func TestS3List(t *testing.T) {
	rules := func(t *testing.T, cfg access.Config) *access.Rules {
		t.Helper()
		cfg.LogDir = logDir
		r, err := access.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("an open site", func(t *testing.T) {
		f := newFixtureWith(t, func(c *api.Config) { c.Access = rules(t, access.Config{}) })
		f.put(t, "inputs/in/b.txt", []byte("bbbb"))
		f.put(t, "inputs/in/deeper/c.txt", []byte("c"))
		f.put(t, "cts-logs/container_logs/job1/container-0.out", []byte("secret"))
		m := f.getJSON(t, "GET", "/s3/list?prefix="+url.QueryEscape("inputs/in/"), alice, "", 200)
		if !reflect.DeepEqual(m["folders"], []any{"inputs/in/deeper/"}) {
			t.Fatalf("folders %v", m["folders"])
		}
		files := m["files"].([]any)
		if len(files) != 2 {
			t.Fatalf("files %v", files)
		}
		b := files[1].(map[string]any)
		if b["file"] != "inputs/in/b.txt" || b["size"] != 4.0 || !zRE.MatchString(b["modified"].(string)) {
			t.Fatalf("file %v", b)
		}
		if _, ok := m["next"]; ok {
			t.Fatalf("a single page has next: %v", m)
		}
		// Pages of one entry.
		p := f.getJSON(t, "GET", "/s3/list?limit=1&prefix="+url.QueryEscape("inputs/in/"), alice, "", 200)
		next, _ := p["next"].(string)
		if next == "" || len(p["files"].([]any))+len(p["folders"].([]any)) != 1 {
			t.Fatalf("first page %v", p)
		}
		p = f.getJSON(t, "GET", "/s3/list?limit=1&prefix="+url.QueryEscape("inputs/in/")+"&next="+url.QueryEscape(next), alice, "", 200)
		if len(p["files"].([]any))+len(p["folders"].([]any)) != 1 {
			t.Fatalf("second page %v", p)
		}
		f.wantError(t, "GET", "/s3/list?prefix="+url.QueryEscape("cts-logs/container_logs/"), alice, "", 403, 20010, "")
		f.wantError(t, "GET", "/s3/list?prefix="+url.QueryEscape("cts-logs/container_logs/job1/con"), root, "", 403, 20010, "")
		f.wantError(t, "GET", "/s3/list?prefix="+url.QueryEscape("cts-logs/"), alice, "", 403, 20010, "")
		f.wantError(t, "GET", "/s3/list?prefix="+url.QueryEscape("inputs/in/../../cts-logs/"), alice, "", 400, 30020, "")
		f.wantError(t, "GET", "/s3/list?prefix="+url.QueryEscape("inputs/in/.."), alice, "", 400, 30020, "")
		f.wantError(t, "GET", "/s3/list?prefix=", alice, "", 400, 30020, "")
		f.wantError(t, "GET", "/s3/list?prefix=nosuchbucket/", alice, "", 404, 40020, "")
		f.wantError(t, "GET", "/s3/list", alice, "", 400, 30010, "")
		f.wantError(t, "GET", "/s3/list?prefix=inputs/&limit=0", alice, "", 400, 30010, "")
		f.wantError(t, "GET", "/s3/list?prefix=inputs/", "", "", 401, 10010, "")
	})
	t.Run("per-user folders", func(t *testing.T) {
		f := newFixtureWith(t, func(c *api.Config) {
			c.Access = rules(t, access.Config{Write: []string{"inputs/{user}/"}, Read: []string{"inputs/shared/"}})
		})
		f.put(t, "inputs/alice/x.txt", []byte("x"))
		f.put(t, "inputs/bob/y.txt", []byte("y"))
		f.put(t, "inputs/shared/z.txt", []byte("z"))
		m := f.getJSON(t, "GET", "/s3/list?prefix=", alice, "", 200)
		if !reflect.DeepEqual(m["folders"], []any{"inputs/alice/", "inputs/shared/"}) ||
			!reflect.DeepEqual(m["allowed_paths"], []any{"inputs/alice/", "inputs/shared/"}) {
			t.Fatalf("an empty prefix lists %v", m)
		}
		for _, p := range []string{"inputs/alice/", "inputs/shared/", "inputs/shared/z"} {
			if m := f.getJSON(t, "GET", "/s3/list?prefix="+url.QueryEscape(p), alice, "", 200); len(m["files"].([]any)) != 1 {
				t.Errorf("%s lists %v", p, m)
			}
		}
		for _, p := range []string{"inputs/", "inputs/bob/", "inputs/al", "inputs/in/"} {
			f.wantError(t, "GET", "/s3/list?prefix="+url.QueryEscape(p), alice, "", 403, 20010, "")
		}
		if m := f.getJSON(t, "GET", "/s3/list?prefix="+url.QueryEscape("inputs/bob/"), bob, "", 200); len(m["files"].([]any)) != 1 {
			t.Errorf("bob's folder lists %v", m)
		}
	})
}
