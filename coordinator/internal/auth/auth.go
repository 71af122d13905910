// Package auth is the coordinator's KBase auth2 client: it turns a token into a User with the
// CTS roles (admin, staff, external executor, refdata service) derived from auth2 custom
// roles, checks that user names exist, and parses the CTS Authorization header. Lookups are
// cached (LRU, TTL = auth2's suggested cache time) under a SHA-256 of the token, so raw tokens
// are never map keys.
//
// It owns only talking to auth2. It must not decide what a role may do (the API layer does),
// and must not log or return tokens. Failures the caller caused (an invalid token, an illegal
// user name, a malformed header) are *ctserr.Error values; auth2 being unreachable, slow or
// broken is a *ctserr.UnavailableError wrapping ErrAuthService, which the API renders as a 503
// naming KBase auth2: an outage is not the user's fault. Every request to auth2 has a deadline
// (Config.Timeout).
package auth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// Default role names and limits, applied by New to zero Config fields.
const (
	DefaultStaffRole    = "KBASE_STAFF"
	DefaultExecutorRole = "CTS_EXTERNAL_EXECUTOR"
	DefaultRefdataRole  = "CTS_REFDATA_SERVICE"
	DefaultCacheSize    = 10000
	DefaultTimeout      = 5 * time.Second
)

// ServiceName is what auth2 reports as its servicename at its root.
const ServiceName = "Authentication Service"

// ErrAuthService is wrapped by every failure that is auth2's (or the network's) fault rather
// than the caller's: unreachable, timed out, a 5xx, a reply that is not auth2's.
var ErrAuthService = errors.New("kbase auth service error")

// Config configures the client.
type Config struct {
	// URL is the auth2 service root, e.g. "https://kbase.us/services/auth"; a trailing "/"
	// is optional.
	URL string
	// AdminRoles are the auth2 custom roles that make a user a full CTS admin (any one).
	AdminRoles []string
	// StaffRole marks KBase staff; default KBASE_STAFF.
	StaffRole string
	// ExecutorRole marks the external executor (agents); default CTS_EXTERNAL_EXECUTOR.
	ExecutorRole string
	// RefdataRole marks the refdata service; default CTS_REFDATA_SERVICE.
	RefdataRole string
	// CacheSize bounds each cache (users by token, existing user names); default 10000.
	CacheSize int
	// Timeout bounds each auth2 request; default 5 s.
	Timeout time.Duration
}

// User is an authenticated KBase user with the CTS roles derived from its custom roles.
type User struct {
	Name        string
	CustomRoles []string
	// Admin is a full CTS admin: one of Config.AdminRoles. A full admin is always also Staff
	// (Client.User refuses an admin who is not).
	Admin bool
	// Staff holds Config.StaffRole; the kbase site requires it.
	Staff bool
	// Executor holds Config.ExecutorRole.
	Executor bool
	// RefdataService holds Config.RefdataRole.
	RefdataService bool
}

func (u *User) clone() *User {
	c := *u
	c.CustomRoles = slices.Clone(u.CustomRoles)
	return &c
}

// Client talks to auth2. It is safe for concurrent use.
type Client struct {
	hc      *http.Client
	base    string // ends in "/"
	timeout time.Duration
	roles   Config
	users   *lru[[sha256.Size]byte, *User]
	names   *lru[string, struct{}]
	lookups singleflight.Group
	now     func() time.Time
}

// New checks that cfg.URL is a KBase auth2 service (GET / must report servicename
// "Authentication Service") and returns a client. hc nil means a new http.Client.
func New(ctx context.Context, cfg Config, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth: new: URL %q is not an absolute http(s) URL", cfg.URL)
	}
	if cfg.CacheSize < 0 || cfg.Timeout < 0 {
		return nil, errors.New("auth: new: CacheSize and Timeout must not be negative")
	}
	cfg.StaffRole = cmp.Or(cfg.StaffRole, DefaultStaffRole)
	cfg.ExecutorRole = cmp.Or(cfg.ExecutorRole, DefaultExecutorRole)
	cfg.RefdataRole = cmp.Or(cfg.RefdataRole, DefaultRefdataRole)
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.AdminRoles = slices.Clone(cfg.AdminRoles)
	if hc == nil {
		hc = &http.Client{}
	}
	base := u.String()
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	c := &Client{
		hc:      hc,
		base:    base,
		timeout: cfg.Timeout,
		roles:   cfg,
		users:   newLRU[[sha256.Size]byte, *User](cfg.CacheSize),
		names:   newLRU[string, struct{}](cfg.CacheSize),
		now:     time.Now,
	}
	var root struct {
		ServiceName string `json:"servicename"`
	}
	if err := c.get(ctx, "", "", &root); err != nil {
		return nil, fmt.Errorf("auth: new: %w", err)
	}
	if root.ServiceName != ServiceName {
		return nil, fmt.Errorf("auth: new: the service at %s is not the KBase auth service: %w",
			base, ErrAuthService)
	}
	return c, nil
}

// User returns the user a token belongs to, with CTS roles. Results are cached for the
// token's cachefor time (capped at the token's expiry) under a SHA-256 of the token.
//
// Errors: *ctserr.Error code 10020 for an invalid token; code 20000 ("Service admins must be
// KBase staff") for a full admin without the staff role, on every call, as the Python service
// does (the Python service also required its NERSC role; CTS-Go has no NERSC sites and drops
// it); an error wrapping ErrAuthService when auth2 fails; ctx's error when ctx ends first.
func (c *Client) User(ctx context.Context, token string) (*User, error) {
	u, _, err := c.lookup(ctx, token)
	if err != nil {
		return nil, err
	}
	if u.Admin && !u.Staff {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "Service admins must be KBase staff")
	}
	return u, nil
}

type lookupResult struct {
	user *User
	ttl  time.Duration
}

// lookup returns the token's user (a copy) and the TTL auth2 suggested for it.
func (c *Client) lookup(ctx context.Context, token string) (*User, time.Duration, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, 0, ctserr.New(ctserr.CodeNoToken, "Authorization header required")
	}
	key := sha256.Sum256([]byte(token))
	now := c.now()
	if u, exp, ok := c.users.get(key, now); ok {
		return u.clone(), exp.Sub(now), nil
	}
	// One auth2 lookup per token at a time. The lookup runs detached from any one caller's
	// cancellation (bounded by the timeout) so a caller that gives up does not fail the
	// others waiting on it; each caller still returns when its own ctx ends.
	ch := c.lookups.DoChan(string(key[:]), func() (any, error) {
		// Again inside the flight: a lookup that missed the cache just before another
		// lookup's flight stored the user and ended must not ask auth2 a second time.
		now := c.now()
		if u, exp, ok := c.users.get(key, now); ok {
			return lookupResult{user: u, ttl: exp.Sub(now)}, nil
		}
		return c.fetchUser(context.WithoutCancel(ctx), token, key)
	})
	select {
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("auth: user: %w", ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, 0, r.Err
		}
		lr := r.Val.(lookupResult)
		return lr.user.clone(), lr.ttl, nil
	}
}

func (c *Client) fetchUser(ctx context.Context, token string, key [sha256.Size]byte) (lookupResult, error) {
	var tok struct {
		User     string `json:"user"`
		Expires  int64  `json:"expires"`
		CacheFor int64  `json:"cachefor"`
	}
	var me struct {
		User        string   `json:"user"`
		CustomRoles []string `json:"customroles"`
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.get(gctx, "api/V2/token", token, &tok) })
	g.Go(func() error { return c.get(gctx, "api/V2/me", token, &me) })
	if err := g.Wait(); err != nil {
		return lookupResult{}, fmt.Errorf("auth: user: %w", err)
	}
	if me.User == "" || me.User != tok.User {
		return lookupResult{}, fmt.Errorf("auth: user: %w",
			unavailable(fmt.Errorf("token and me replies name %q and %q", tok.User, me.User)))
	}
	u := &User{Name: me.User, CustomRoles: slices.Clone(me.CustomRoles)}
	if u.CustomRoles == nil {
		u.CustomRoles = []string{}
	}
	for _, r := range u.CustomRoles {
		u.Admin = u.Admin || slices.Contains(c.roles.AdminRoles, r)
		u.Staff = u.Staff || r == c.roles.StaffRole
		u.Executor = u.Executor || r == c.roles.ExecutorRole
		u.RefdataService = u.RefdataService || r == c.roles.RefdataRole
	}
	now := c.now()
	ttl := time.Duration(tok.CacheFor) * time.Millisecond
	if tok.Expires > 0 {
		ttl = min(ttl, time.UnixMilli(tok.Expires).Sub(now))
	}
	if ttl > 0 {
		c.users.put(key, u, now.Add(ttl))
	}
	return lookupResult{user: u, ttl: max(ttl, 0)}, nil
}

// UsersExist returns the names, of those given, that have no auth2 account, in the order
// given (blank names are ignored, duplicates reported once). Existing names are cached for
// the token's cachefor time; missing ones are not (an account may be created at any time).
//
// Errors: *ctserr.Error code 10040 with auth2's reason when a name is illegal; code 10020 for
// an invalid token; an error wrapping ErrAuthService when auth2 fails.
func (c *Client) UsersExist(ctx context.Context, token string, names ...string) ([]string, error) {
	var query []string
	seen := map[string]bool{}
	now := c.now()
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if _, _, ok := c.names.get(n, now); !ok {
			query = append(query, n)
		}
	}
	if len(query) == 0 {
		return nil, nil
	}
	if strings.TrimSpace(token) == "" {
		return nil, ctserr.New(ctserr.CodeNoToken, "Authorization header required")
	}
	found := map[string]string{}
	q := url.Values{"list": {strings.Join(query, ",")}}
	if err := c.get(ctx, "api/V2/users/?"+q.Encode(), token, &found); err != nil {
		return nil, fmt.Errorf("auth: users exist: %w", err)
	}
	var missing []string
	var ttl time.Duration
	haveTTL := false
	for _, n := range query {
		if _, ok := found[n]; !ok {
			missing = append(missing, n)
			continue
		}
		if !haveTTL {
			// The token was valid a moment ago, so this is normally a cache hit.
			_, t, err := c.lookup(ctx, token)
			if err != nil {
				return nil, fmt.Errorf("auth: users exist: %w", err)
			}
			ttl, haveTTL = t, true
		}
		if ttl > 0 {
			c.names.put(n, struct{}{}, c.now().Add(ttl))
		}
	}
	return missing, nil
}

// authError is auth2's error JSON.
type authError struct {
	Error *struct {
		HTTPCode int    `json:"httpcode"`
		AppCode  int    `json:"appcode"`
		Message  string `json:"message"`
	} `json:"error"`
}

// maxReply bounds how much of an auth2 reply is read.
const maxReply = 4 << 20

// get sends GET base+path with the raw token (auth2 takes no "Bearer") and decodes a 200
// reply into out, or maps auth2's error JSON.
func (c *Client) get(ctx context.Context, path, token string, out any) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if perr := parent.Err(); perr != nil {
			// The caller gave up: not auth2's fault.
			return perr
		}
		// url.Error names the URL, never the token.
		return unavailable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return perr
		}
		return unavailable(fmt.Errorf("read reply from %s: %w", req.URL.Path, err))
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			return unavailable(fmt.Errorf("non-JSON reply from KBase auth server at %s, status code %d",
				req.URL.Path, resp.StatusCode))
		}
		return nil
	}
	var ae authError
	if err := json.Unmarshal(body, &ae); err != nil || ae.Error == nil {
		return unavailable(fmt.Errorf("non-JSON reply from KBase auth server at %s, status code %d",
			req.URL.Path, resp.StatusCode))
	}
	switch ae.Error.AppCode {
	case 10020:
		return ctserr.New(ctserr.CodeInvalidToken, "KBase auth server reported token is invalid.")
	case 30010:
		// auth2 nests its messages: "30010 Illegal user name: Illegal user name [x]: 30010
		// Illegal user name: <reason>"; the reason follows the third ':'.
		parts := strings.SplitN(ae.Error.Message, ":", 4)
		return ctserr.New(ctserr.CodeInvalidUserName, "%s", strings.TrimSpace(parts[len(parts)-1]))
	}
	return unavailable(fmt.Errorf("error from KBase auth server (status %d): %s", resp.StatusCode, ae.Error.Message))
}

// unavailable wraps err, an auth2 failure that is not the caller's, as auth2's outage.
func unavailable(err error) error {
	return ctserr.Unavailable(ctserr.DependencyAuth, fmt.Errorf("%w: %w", ErrAuthService, err))
}
