package auth2

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, users ...User) *Server {
	t.Helper()
	s := New(users...)
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// get sends a GET with the raw token (if non-empty) and decodes the JSON reply.
func get(t *testing.T, s *Server, path, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+strings.TrimPrefix(path, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("get %s: content type %q", path, ct)
	}
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("get %s: decode %q: %v", path, b, err)
	}
	return resp.StatusCode, body
}

var (
	alice = User{Name: "alice", Token: "tok-alice", DisplayName: "Alice A", CustomRoles: []string{"KBASE_STAFF", "CDM_TASK_SERVICE_ADMIN"}}
	bob   = User{Name: "bob_2", Token: "tok-bob"}
)

func TestRoot(t *testing.T) {
	s := startServer(t)
	if !strings.HasSuffix(s.URL(), "/") || !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL())
	}
	code, body := get(t, s, "/", "")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if body["servicename"] != ServiceName || body["version"] != Version || body["gitcommithash"] == "" {
		t.Errorf("root %v", body)
	}
	st, ok := body["servertime"].(float64)
	if !ok || time.Since(time.UnixMilli(int64(st))).Abs() > time.Minute {
		t.Errorf("servertime %v", body["servertime"])
	}
	if len(body) != 4 {
		t.Errorf("root keys %v", body)
	}
}

func TestToken(t *testing.T) {
	s := startServer(t, alice)
	code, body := get(t, s, PathToken, "  tok-alice\t")
	if code != 200 {
		t.Fatalf("status %d %v", code, body)
	}
	for _, k := range []string{"type", "id", "expires", "created", "name", "user", "custom", "cachefor"} {
		if _, ok := body[k]; !ok {
			t.Errorf("token reply lacks %q: %v", k, body)
		}
	}
	if body["user"] != "alice" || body["cachefor"] != float64(300000) || body["type"] != "Login" {
		t.Errorf("token %v", body)
	}
	if body["expires"].(float64) <= body["created"].(float64) {
		t.Errorf("expires %v before created %v", body["expires"], body["created"])
	}
	s.SetCacheFor(1500 * time.Millisecond)
	_, body2 := get(t, s, PathToken, "tok-alice")
	if body2["cachefor"] != float64(1500) || body2["id"] != body["id"] {
		t.Errorf("second reply %v (first id %v)", body2, body["id"])
	}
}

func TestMe(t *testing.T) {
	s := startServer(t, alice, bob)
	_, body := get(t, s, PathMe, "tok-alice")
	want := map[string]any{"user": "alice", "display": "Alice A", "local": true}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("%s = %v, want %v", k, body[k], v)
		}
	}
	roles, _ := body["customroles"].([]any)
	if len(roles) != 2 || roles[0] != "KBASE_STAFF" || roles[1] != "CDM_TASK_SERVICE_ADMIN" {
		t.Errorf("customroles %v", body["customroles"])
	}
	for _, k := range []string{"email", "created", "lastlogin", "roles", "idents", "policyids", "anonid"} {
		if _, ok := body[k]; !ok {
			t.Errorf("me lacks %q", k)
		}
	}
	_, body = get(t, s, PathMe, "tok-bob")
	if body["display"] != "bob_2" {
		t.Errorf("default display name %v", body["display"])
	}
	if r, ok := body["customroles"].([]any); !ok || len(r) != 0 {
		t.Errorf("no roles must be [], got %#v", body["customroles"])
	}
}

func TestAuthErrors(t *testing.T) {
	s := startServer(t, alice)
	tests := []struct {
		name, path, token string
		code, appCode     int
		appError, message string
	}{
		{"invalid token", PathToken, "nope", 401, 10020, "Invalid token", "10020 Invalid token"},
		{"bearer prefix is not stripped", PathMe, "Bearer tok-alice", 401, 10020, "Invalid token", "10020 Invalid token"},
		{"no token", PathToken, "", 401, 10010, "No authentication token", "10010 No authentication token: No user token provided"},
		{"no token on me", PathMe, "", 401, 10010, "No authentication token", "10010 No authentication token: No user token provided"},
		{"invalid token on users", PathUsers + "?list=alice", "nope", 401, 10020, "Invalid token", "10020 Invalid token"},
		{"illegal character", PathUsers + "?list=alice,Bob", "tok-alice", 400, 30010, "Illegal user name",
			"30010 Illegal user name: Illegal user name [Bob]: 30010 Illegal user name: Illegal character in user name Bob: B"},
		{"illegal name before token check", PathUsers + "?list=a-b", "nope", 400, 30010, "Illegal user name",
			"30010 Illegal user name: Illegal user name [a-b]: 30010 Illegal user name: Illegal character in user name a-b: -"},
		{"digit first", PathUsers + "?list=" + url.QueryEscape(" 9lives"), "tok-alice", 400, 30010, "Illegal user name",
			"30010 Illegal user name: Illegal user name [ 9lives]: 30010 Illegal user name: Username must start with a letter"},
		{"empty element", PathUsers + "?list=a,,b", "tok-alice", 400, 30010, "Illegal user name",
			"30010 Illegal user name: Illegal user name []: 30000 Missing input parameter: user name"},
		{"unknown path", "/api/V2/nope", "tok-alice", 404, 0, "", "HTTP 404 Not Found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, s, tc.path, tc.token)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %v", code, tc.code, body)
			}
			e, ok := body["error"].(map[string]any)
			if !ok || len(body) != 1 {
				t.Fatalf("error body %v", body)
			}
			if e["httpcode"] != float64(tc.code) || e["httpstatus"] != http.StatusText(tc.code) {
				t.Errorf("http fields %v", e)
			}
			if tc.appCode != 0 && (e["appcode"] != float64(tc.appCode) || e["apperror"] != tc.appError) {
				t.Errorf("app fields %v", e)
			}
			if tc.appCode == 0 && (e["appcode"] != nil || e["apperror"] != nil) {
				t.Errorf("plain error has app fields: %v", e)
			}
			if e["message"] != tc.message {
				t.Errorf("message %q, want %q", e["message"], tc.message)
			}
			if c, _ := e["callid"].(string); len(c) != 16 {
				t.Errorf("callid %v", e["callid"])
			}
			if tm, _ := e["time"].(float64); time.Since(time.UnixMilli(int64(tm))).Abs() > time.Minute {
				t.Errorf("time %v", e["time"])
			}
		})
	}
}

func TestUsers(t *testing.T) {
	s := startServer(t, alice, bob)
	tests := []struct {
		name, query string
		want        map[string]any
	}{
		{"existing and missing", "?list=" + url.QueryEscape("alice, carol ,bob_2"), map[string]any{"alice": "Alice A", "bob_2": "bob_2"}},
		{"trailing commas dropped like Java split", "?list=alice,,", map[string]any{"alice": "Alice A"}},
		{"empty list", "?list=", map[string]any{}},
		{"no list", "", map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, s, PathUsers+tc.query, "tok-bob")
			if code != 200 {
				t.Fatalf("status %d: %v", code, body)
			}
			if len(body) != len(tc.want) {
				t.Fatalf("got %v, want %v", body, tc.want)
			}
			for k, v := range tc.want {
				if body[k] != v {
					t.Errorf("%s = %v, want %v", k, body[k], v)
				}
			}
		})
	}
	// The path without the trailing slash works too and is counted as PathUsers.
	before := s.Requests(PathUsers)
	if code, _ := get(t, s, "/api/V2/users?list=alice", "tok-bob"); code != 200 {
		t.Errorf("users without slash: %d", code)
	}
	if got := s.Requests(PathUsers); got != before+1 {
		t.Errorf("users counter %d, want %d", got, before+1)
	}
}

func TestValidateUserName(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"simple", "abc_1", ""},
		{"trimmed", "  abc\t", ""},
		{"max length", strings.Repeat("a", 100), ""},
		{"too long", strings.Repeat("a", 101), "30001 Illegal input parameter: user name size greater than limit 100"},
		{"empty", "  ", "30000 Missing input parameter: user name"},
		{"upper", "aBCd", "30010 Illegal user name: Illegal character in user name aBCd: BC"},
		{"unicode", "aé", "30010 Illegal user name: Illegal character in user name aé: é"},
		{"control", "a\x01b", "30001 Illegal input parameter: user name contains control characters"},
		{"underscore first", "_a", "30010 Illegal user name: Username must start with a letter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateUserName(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var ne *NameError
			if !errors.As(err, &ne) || err.Error() != tc.wantErr {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestAddUserPanicsOnIllegalName(t *testing.T) {
	for _, u := range []User{{Name: "Bad", Token: "t"}, {Name: "good", Token: " "}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AddUser(%+v) did not panic", u)
				}
			}()
			New().AddUser(u)
		}()
	}
}

func TestAddUserRevokeAndCounters(t *testing.T) {
	s := startServer(t, alice)
	s.AddUser(User{Name: "alice", Token: "tok-alice-2", CustomRoles: []string{"X"}})
	_, body := get(t, s, PathMe, "tok-alice")
	if r := body["customroles"].([]any); len(r) != 1 || r[0] != "X" || body["display"] != "alice" {
		t.Errorf("re-added user: %v", body)
	}
	if code, _ := get(t, s, PathMe, "tok-alice-2"); code != 200 {
		t.Errorf("second token: %d", code)
	}
	if !s.RevokeToken("tok-alice") || s.RevokeToken("tok-alice") {
		t.Error("RevokeToken result")
	}
	if code, _ := get(t, s, PathMe, "tok-alice"); code != 401 {
		t.Errorf("revoked token: %d", code)
	}
	if got := s.Requests(PathMe); got != 3 {
		t.Errorf("me requests %d, want 3", got)
	}
	if got := s.Requests(PathToken); got != 0 {
		t.Errorf("token requests %d, want 0", got)
	}
	get(t, s, "/nowhere", "")
	if got := s.Requests("/nowhere"); got != 1 {
		t.Errorf("unknown path requests %d", got)
	}
}

func TestFailWithAndMethod(t *testing.T) {
	s := startServer(t, alice)
	resp, err := http.Post(s.URL()+"api/V2/token", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status %d", resp.StatusCode)
	}
	s.FailWith(http.StatusServiceUnavailable)
	code, body := get(t, s, PathToken, "tok-alice")
	e, _ := body["error"].(map[string]any)
	if code != 503 || e["appcode"] != nil || e["message"] != "HTTP 503 Service Unavailable" {
		t.Errorf("fault reply %d %v", code, body)
	}
	s.FailWith(0)
	if code, _ := get(t, s, PathToken, "tok-alice"); code != 200 {
		t.Errorf("after fault cleared: %d", code)
	}
	// The POST, the failed GET and the good GET.
	if got := s.Requests(PathToken); got != 3 {
		t.Errorf("token requests %d, want 3", got)
	}
}

func TestLifecycle(t *testing.T) {
	t.Run("close before start", func(t *testing.T) {
		s := New()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err == nil {
			t.Fatal("start after close succeeded")
		}
	})
	t.Run("double start and idempotent close", func(t *testing.T) {
		s := New()
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err == nil {
			t.Error("second start succeeded")
		}
		u := s.URL()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := http.Get(u); err == nil {
			t.Error("server still answers after Close")
		}
	})
	t.Run("context cancel stops serving", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		s := New()
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get(s.URL())
			if err != nil {
				break
			}
			resp.Body.Close()
			if time.Now().After(deadline) {
				t.Fatal("server still answers after context cancel")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
