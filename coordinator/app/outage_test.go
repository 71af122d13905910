package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/imagebuild"
	"github.com/kbase/cts/test/tcpproxy"
)

// TestDependencyOutages performs the attack of a hung and a refusing MongoDB, S3 and auth2 on
// a running coordinator, each behind a TCP proxy: every request that needs the dependency is
// answered within 10 s with a 503 naming it (never a 500, never a wait of minutes), and the
// coordinator serves again once the dependency is back.
func TestDependencyOutages(t *testing.T) {
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	proxies := map[string]*tcpproxy.Proxy{}
	// via puts a proxy in front of the host of URI s and returns s through it.
	via := func(name, s string) string {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tcpproxy.New(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		proxies[name] = p
		u.Host = p.Addr()
		return u.String()
	}
	env, err := devmode.Start(t.Context(), devmode.Options{Dir: t.TempDir(), AgentPath: bins.agent, LauncherPath: bins.launcher,
		Configure: func(c *app.Config) {
			c.Mongo.URI = via("MongoDB", c.Mongo.URI)
			c.S3.Endpoint = via("S3", c.S3.Endpoint)
			c.Auth.URL = via("KBase auth2", c.Auth.URL)
		}})
	if err != nil {
		t.Fatalf("start dev site: %v", err)
	}
	t.Cleanup(func() { _ = env.Close() })

	// An image and an input, so that a submit gets as far as S3.
	ctx := t.Context()
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/marker", Data: []byte("x")}}, []string{"/bin/tool"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := env.Stack.Registry.Host() + "/outage/tool:1"
	if _, err := imagebuild.Push(ctx, img, ref); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token, body string) (int, string, time.Duration) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, env.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		// The client's own limit only keeps a broken coordinator from hanging the test.
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(start)
	}
	if code, b, _ := do("POST", "/admin/images/"+ref, env.AdminToken, ""); code != 200 {
		t.Fatalf("register image: %d %s", code, b)
	}
	_, err = demo.PutWithCRC(ctx, env.Stack.S3.Client(), devmode.DataBucket, "outage/in.txt", []byte("in"))
	if err != nil {
		t.Fatal(err)
	}
	submit := fmt.Sprintf(`{"cluster": %q, "image": %q, "params": {}, "output_dir": "%s/outage/out", "input_files": ["%s/outage/in.txt"]}`,
		devmode.SiteName, ref, devmode.DataBucket, devmode.DataBucket)
	fresh := 0
	type request struct {
		name, method, path, body string
		token                    func() string
	}
	user := func() string { return env.UserToken }
	admin := func() string { return env.AdminToken }
	// An unknown token is looked up in auth2 every time (invalid tokens are not cached).
	unknown := func() string { fresh++; return fmt.Sprintf("UNKNOWNTOKEN%d", fresh) }
	requests := map[string][]request{
		"MongoDB": {
			{"list jobs", "GET", "/jobs", "", user},
			{"submit", "POST", "/jobs", submit, user},
		},
		"S3": {
			{"submit", "POST", "/jobs", submit, user},
			{"register reference data", "POST", "/admin/refdata/" + devmode.DataBucket + "/outage/in.txt?crc64nvme=AAAAAAAAAAA%3D", "", admin},
		},
		"KBase auth2": {
			{"whoami with a new token", "GET", "/whoami", "", unknown},
		},
	}
	for _, dep := range []string{"MongoDB", "S3", "KBase auth2"} {
		for _, mode := range []tcpproxy.Mode{tcpproxy.Hang, tcpproxy.Refuse} {
			if err := proxies[dep].Set(mode); err != nil {
				t.Fatal(err)
			}
			for _, rq := range requests[dep] {
				code, body, d := do(rq.method, rq.path, rq.token(), rq.body)
				var e struct {
					Error struct {
						HTTPCode int    `json:"httpcode"`
						Message  string `json:"message"`
					} `json:"error"`
				}
				_ = json.Unmarshal([]byte(body), &e)
				t.Logf("%s %s, %s: %d after %s: %s", dep, mode, rq.name, code, d.Round(time.Millisecond), e.Error.Message)
				if code != 503 || e.Error.HTTPCode != 503 || !strings.Contains(e.Error.Message, "cannot reach "+dep+":") {
					t.Errorf("%s %s, %s: %d %s, want 503 naming %s", dep, mode, rq.name, code, body, dep)
				}
				if d > 10*time.Second {
					t.Errorf("%s %s, %s: answered after %s, want within 10 s", dep, mode, rq.name, d)
				}
			}
			if err := proxies[dep].Set(tcpproxy.Pass); err != nil {
				t.Fatal(err)
			}
			// Back in service without a restart.
			deadline := time.Now().Add(time.Minute)
			for {
				code, body, _ := do("GET", "/jobs", env.UserToken, "")
				if code == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after %s %s: GET /jobs = %d %s", dep, mode, code, body)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
}
