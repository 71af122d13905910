package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/coordinator/internal/ctserr"
)

const adminRole = "CDM_TASK_SERVICE_ADMIN"

var testUsers = []auth2.User{
	{Name: "plain", Token: "tok-plain"},
	{Name: "staff", Token: "tok-staff", CustomRoles: []string{"KBASE_STAFF", "OTHER"}},
	{Name: "admin", Token: "tok-admin", CustomRoles: []string{adminRole, "KBASE_STAFF"}},
	{Name: "admin_nostaff", Token: "tok-admin-nostaff", CustomRoles: []string{adminRole}},
	{Name: "executor", Token: "tok-exec", CustomRoles: []string{"CTS_EXTERNAL_EXECUTOR"}},
	{Name: "refdata", Token: "tok-ref", CustomRoles: []string{"CTS_REFDATA_SERVICE"}},
}

func startAuth(t *testing.T) *auth2.Server {
	t.Helper()
	s := auth2.New(testUsers...)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newClient(t *testing.T, s *auth2.Server, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{URL: s.URL(), AdminRoles: []string{adminRole}, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// fakeClock is a settable clock for cache expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func wantCode(t *testing.T, err error, code ctserr.Code, msg string) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ctserr.Error", err, err)
	}
	if ce.Code != code || (msg != "" && ce.Message != msg) {
		t.Fatalf("error code %d message %q, want %d %q", ce.Code, ce.Message, code, msg)
	}
}

func TestUserRoles(t *testing.T) {
	s := startAuth(t)
	c := newClient(t, s, nil)
	tests := []struct {
		token string
		want  User
	}{
		{"tok-plain", User{Name: "plain", CustomRoles: []string{}}},
		{"tok-staff", User{Name: "staff", CustomRoles: []string{"KBASE_STAFF", "OTHER"}, Staff: true}},
		{"tok-admin", User{Name: "admin", CustomRoles: []string{adminRole, "KBASE_STAFF"}, Admin: true, Staff: true}},
		{"tok-exec", User{Name: "executor", CustomRoles: []string{"CTS_EXTERNAL_EXECUTOR"}, Executor: true}},
		{"tok-ref", User{Name: "refdata", CustomRoles: []string{"CTS_REFDATA_SERVICE"}, RefdataService: true}},
		{"  tok-plain ", User{Name: "plain", CustomRoles: []string{}}},
	}
	for _, tc := range tests {
		t.Run(tc.want.Name, func(t *testing.T) {
			u, err := c.User(t.Context(), tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if u.Name != tc.want.Name || !slices.Equal(u.CustomRoles, tc.want.CustomRoles) ||
				u.Admin != tc.want.Admin || u.Staff != tc.want.Staff || u.Executor != tc.want.Executor ||
				u.RefdataService != tc.want.RefdataService {
				t.Errorf("got %+v, want %+v", *u, tc.want)
			}
		})
	}
}

func TestUserConfiguredRoles(t *testing.T) {
	s := startAuth(t)
	c := newClient(t, s, func(cfg *Config) {
		cfg.AdminRoles = []string{"NOPE", "OTHER"}
		cfg.StaffRole = "OTHER"
		cfg.ExecutorRole = "KBASE_STAFF"
	})
	u, err := c.User(t.Context(), "tok-staff")
	if err != nil {
		t.Fatal(err)
	}
	if !u.Admin || !u.Staff || !u.Executor || u.RefdataService {
		t.Errorf("configured roles not applied: %+v", *u)
	}
}

func TestUserErrors(t *testing.T) {
	s := startAuth(t)
	c := newClient(t, s, nil)
	t.Run("invalid token", func(t *testing.T) {
		_, err := c.User(t.Context(), "not-a-token")
		wantCode(t, err, ctserr.CodeInvalidToken, "KBase auth server reported token is invalid.")
		if strings.Contains(err.Error(), "not-a-token") {
			t.Errorf("error shows the token: %v", err)
		}
	})
	t.Run("blank token", func(t *testing.T) {
		_, err := c.User(t.Context(), "  ")
		wantCode(t, err, ctserr.CodeNoToken, "")
	})
	t.Run("admin must be staff", func(t *testing.T) {
		// A server of its own: the canceled half of an earlier refused lookup may still reach
		// the shared one and be counted here.
		s := startAuth(t)
		c := newClient(t, s, nil)
		before := s.Requests(auth2.PathMe)
		for range 2 { // every call, cached or not
			_, err := c.User(t.Context(), "tok-admin-nostaff")
			wantCode(t, err, ctserr.CodeUnauthorized, "Service admins must be KBase staff")
		}
		if got := s.Requests(auth2.PathMe) - before; got != 1 {
			t.Errorf("me requests %d, want 1 (the user is cached even though refused)", got)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.User(ctx, "tok-plain")
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrAuthService) {
			t.Errorf("error %v", err)
		}
	})
}

// countingTransport counts, per path, the requests the client attempted. Unlike the server's
// count it is exact when a lookup returns: the lookup joins both of its requests, while the
// server may see a canceled one late or never.
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

func TestUserCache(t *testing.T) {
	s := startAuth(t)
	clock := &fakeClock{now: time.Now()}
	ct := &countingTransport{n: map[string]int{}}
	c, err := New(t.Context(), Config{URL: s.URL(), AdminRoles: []string{adminRole}, Timeout: 5 * time.Second},
		&http.Client{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	c.now = clock.Now
	s.SetCacheFor(2 * time.Second)

	// A lookup is one token and one me request (run in parallel: when one is refused the other
	// is canceled, and may not reach auth2, so the client's attempts are what is counted).
	calls := func() (int, int) { return ct.count(auth2.PathToken), ct.count(auth2.PathMe) }
	want := func(what string, wantTk, wantMe int) {
		t.Helper()
		if tk, me := calls(); tk != wantTk || me != wantMe {
			t.Fatalf("%s: token %d me %d requests, want %d %d", what, tk, me, wantTk, wantMe)
		}
	}
	if _, err := c.User(t.Context(), "tok-staff"); err != nil {
		t.Fatal(err)
	}
	want("first lookup", 1, 1)

	// A hit makes no request and returns a copy the caller may change.
	clock.Advance(1900 * time.Millisecond)
	u, err := c.User(t.Context(), "tok-staff")
	if err != nil {
		t.Fatal(err)
	}
	want("cache hit", 1, 1)
	u.CustomRoles[0] = "CHANGED"
	u2, _ := c.User(t.Context(), "tok-staff")
	if u2.CustomRoles[0] != "KBASE_STAFF" {
		t.Error("cached user shared with a caller")
	}

	// After cachefor the token is looked up again, and a revoked token is then refused.
	clock.Advance(200 * time.Millisecond)
	s.RevokeToken("tok-staff")
	_, err = c.User(t.Context(), "tok-staff")
	wantCode(t, err, ctserr.CodeInvalidToken, "")
	want("after expiry", 2, 2)
	// Invalid tokens are not cached: the next lookup asks auth2 again.
	_, err = c.User(t.Context(), "tok-staff")
	wantCode(t, err, ctserr.CodeInvalidToken, "")
	want("invalid token looked up again", 3, 3)
}

func TestUserCacheForZeroAndExpiryCap(t *testing.T) {
	s := startAuth(t)
	clock := &fakeClock{now: time.Now()}
	c := newClient(t, s, nil)
	c.now = clock.Now

	s.SetCacheFor(0)
	for range 2 {
		if _, err := c.User(t.Context(), "tok-plain"); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Requests(auth2.PathToken); got != 2 {
		t.Errorf("cachefor 0: %d token requests, want 2", got)
	}

	// The fake's tokens expire 14 days after creation: a 30-day cachefor is capped there.
	s.SetCacheFor(30 * 24 * time.Hour)
	if _, err := c.User(t.Context(), "tok-exec"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(13 * 24 * time.Hour)
	if _, err := c.User(t.Context(), "tok-exec"); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests(auth2.PathToken); got != 3 {
		t.Errorf("within expiry: %d token requests, want 3", got)
	}
	clock.Advance(2 * 24 * time.Hour)
	if _, err := c.User(t.Context(), "tok-exec"); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests(auth2.PathToken); got != 4 {
		t.Errorf("past token expiry: %d token requests, want 4", got)
	}
}

func TestUserCacheEviction(t *testing.T) {
	s := startAuth(t)
	c := newClient(t, s, func(cfg *Config) { cfg.CacheSize = 2 })
	for _, tok := range []string{"tok-plain", "tok-staff", "tok-plain", "tok-exec", "tok-plain", "tok-staff"} {
		if _, err := c.User(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	// plain, staff miss; plain hits; exec misses and evicts staff (least recently used);
	// plain hits; staff misses.
	if got := s.Requests(auth2.PathMe); got != 4 {
		t.Errorf("me requests %d, want 4", got)
	}
	if n := c.users.len(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
}

func TestUserConcurrentLookupsShareOneRequest(t *testing.T) {
	s := startAuth(t)
	c := newClient(t, s, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			u, err := c.User(t.Context(), "tok-admin")
			if err == nil && u.Name != "admin" {
				err = errors.New("wrong user " + u.Name)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Requests(auth2.PathToken); got != 1 {
		t.Errorf("token requests %d, want 1", got)
	}
}

func TestAuthServiceFailures(t *testing.T) {
	t.Run("5xx", func(t *testing.T) {
		s := startAuth(t)
		c := newClient(t, s, nil)
		s.FailWith(http.StatusInternalServerError)
		_, err := c.User(t.Context(), "tok-plain")
		assertOutage(t, err)
		_, err = c.UsersExist(t.Context(), "tok-plain", "plain")
		assertOutage(t, err)
	})
	t.Run("down", func(t *testing.T) {
		s := startAuth(t)
		c := newClient(t, s, nil)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := c.User(t.Context(), "tok-plain")
		assertOutage(t, err)
		if strings.Contains(err.Error(), "tok-plain") {
			t.Errorf("error shows the token: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/" {
				w.Write([]byte(`{"servicename": "Authentication Service"}`))
				return
			}
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(hs.Close)
		t.Cleanup(func() { close(block) })
		c, err := New(t.Context(), Config{URL: hs.URL, Timeout: 50 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.User(t.Context(), "tok")
		assertOutage(t, err)
	})
}

func assertOutage(t *testing.T, err error) {
	t.Helper()
	var ce *ctserr.Error
	var ue *ctserr.UnavailableError
	if err == nil || errors.As(err, &ce) || !errors.Is(err, ErrAuthService) || !errors.As(err, &ue) || ue.Dependency != ctserr.DependencyAuth {
		t.Fatalf("error %v (%T): want auth2 unavailable, wrapping ErrAuthService", err, err)
	}
}

func TestNew(t *testing.T) {
	s := startAuth(t)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"servicename": "Groups Service"}`))
	}))
	t.Cleanup(other.Close)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html>hi</html>`))
	}))
	t.Cleanup(html.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	tests := []struct {
		name, url string
		outage    bool
	}{
		{"with slash", s.URL(), false},
		{"without slash", strings.TrimSuffix(s.URL(), "/"), false},
		{"not auth", other.URL, true},
		{"not JSON", html.URL, true},
		{"unreachable", dead.URL, true},
		{"relative", "/auth", false},
		{"no scheme", "localhost:5000", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(t.Context(), Config{URL: tc.url}, nil)
			okCase := !tc.outage && strings.HasPrefix(tc.url, "http://127.0.0.1")
			switch {
			case okCase && err != nil:
				t.Fatalf("new: %v", err)
			case okCase:
				if _, err := c.User(t.Context(), "tok-plain"); err != nil {
					t.Fatalf("user through %q: %v", tc.url, err)
				}
			case err == nil:
				t.Fatal("new succeeded")
			case tc.outage && !errors.Is(err, ErrAuthService):
				t.Fatalf("error %v does not wrap ErrAuthService", err)
			}
		})
	}
}

func TestUsersExist(t *testing.T) {
	s := startAuth(t)
	clock := &fakeClock{now: time.Now()}
	c := newClient(t, s, nil)
	c.now = clock.Now
	s.SetCacheFor(time.Minute)

	missing, err := c.UsersExist(t.Context(), "tok-plain", "staff", " ghost ", "admin", "staff", "", "ghost2")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(missing, []string{"ghost", "ghost2"}) {
		t.Errorf("missing %v", missing)
	}
	if got := s.Requests(auth2.PathUsers); got != 1 {
		t.Fatalf("users requests %d", got)
	}

	// Existing names are cached: an all-known query makes no request, even without a token.
	missing, err = c.UsersExist(t.Context(), "", "admin", "staff")
	if err != nil || missing != nil {
		t.Fatalf("cached names: %v %v", missing, err)
	}
	if got := s.Requests(auth2.PathUsers); got != 1 {
		t.Errorf("cached names made a request: %d", got)
	}
	// Missing names are not cached.
	if missing, err = c.UsersExist(t.Context(), "tok-plain", "ghost"); err != nil || len(missing) != 1 {
		t.Fatalf("ghost again: %v %v", missing, err)
	}
	if got := s.Requests(auth2.PathUsers); got != 2 {
		t.Errorf("missing name was cached: %d users requests", got)
	}
	// Existing names expire with the token's cachefor.
	clock.Advance(61 * time.Second)
	if _, err = c.UsersExist(t.Context(), "tok-plain", "admin"); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests(auth2.PathUsers); got != 3 {
		t.Errorf("expired name not re-queried: %d users requests", got)
	}

	if missing, err := c.UsersExist(t.Context(), "tok-plain", " ", ""); err != nil || missing != nil {
		t.Errorf("blank names: %v %v", missing, err)
	}
}

func TestUsersExistErrors(t *testing.T) {
	s := startAuth(t)
	c := newClient(t, s, nil)
	tests := []struct {
		name, token string
		names       []string
		code        ctserr.Code
		msg         string
	}{
		{"illegal character", "tok-plain", []string{"plain", "Bob"}, ctserr.CodeInvalidUserName, "Illegal character in user name Bob: B"},
		{"digit first", "tok-plain", []string{"9lives"}, ctserr.CodeInvalidUserName, "Username must start with a letter"},
		{"too long", "tok-plain", []string{strings.Repeat("a", 101)}, ctserr.CodeInvalidUserName, "user name size greater than limit 100"},
		{"invalid token", "bad-token", []string{"plain"}, ctserr.CodeInvalidToken, "KBase auth server reported token is invalid."},
		{"no token", " ", []string{"plain"}, ctserr.CodeNoToken, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.UsersExist(t.Context(), tc.token, tc.names...)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestParseAuthHeader(t *testing.T) {
	const (
		followed = "Authorization header requires Bearer scheme followed by token"
		scheme   = "Authorization header requires Bearer scheme"
	)
	tests := []struct {
		name, header, token, errMsg string
	}{
		{"bearer", "Bearer abc", "abc", ""},
		{"case-insensitive", "bEaReR abc", "abc", ""},
		{"extra spaces trimmed", "  Bearer    abc  ", "abc", ""},
		{"token with inner space kept", "Bearer a b", "a b", ""},
		{"empty", "", "", followed},
		{"scheme only", "Bearer", "", followed},
		{"scheme and spaces", "Bearer    ", "", followed},
		{"token only", "abc", "", followed},
		{"tab is not a separator", "Bearer\tabc", "", followed},
		{"other scheme", "Basic dXNlcjpwdw==", "", scheme},
		{"raw auth2 style with space", "Token abc", "", scheme},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseAuthHeader(tc.header)
			if tc.errMsg == "" {
				if err != nil || tok != tc.token {
					t.Fatalf("got %q, %v; want %q", tok, err, tc.token)
				}
				return
			}
			if tok != "" {
				t.Errorf("token %q returned with an error", tok)
			}
			wantCode(t, err, ctserr.CodeInvalidAuthHeader, tc.errMsg)
			if ctserr.CodeInvalidAuthHeader.Status() != http.StatusUnauthorized {
				t.Error("10030 must be a 401")
			}
		})
	}
}

func FuzzParseAuthHeader(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x ", "", "Basic x", "Bearer"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := ParseAuthHeader(h)
		if err != nil {
			var ce *ctserr.Error
			if !errors.As(err, &ce) || ce.Code != ctserr.CodeInvalidAuthHeader || tok != "" {
				t.Fatalf("bad error %v / token %q", err, tok)
			}
			return
		}
		if tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(h, tok) {
			t.Fatalf("token %q from %q", tok, h)
		}
	})
}

func BenchmarkUserCached(b *testing.B) {
	s := auth2.New(testUsers...)
	if err := s.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	c, err := New(b.Context(), Config{URL: s.URL(), AdminRoles: []string{adminRole}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.User(b.Context(), "tok-admin"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.User(b.Context(), "tok-admin"); err != nil {
			b.Fatal(err)
		}
	}
}
