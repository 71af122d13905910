// Package client is a typed Go client of the CTS REST API (the routes, models and error JSON of
// the CDM Task Service): submitting, inspecting, waiting for and cancelling jobs,
// reading and following container logs (live, or by polling), images, reference data, sites,
// and the admin routes. The `cts`
// command-line tool is built on it; tests and the demo may use it too.
//
// It speaks only HTTP to a coordinator: it must never import coordinator internals, and it
// never logs or prints anything (least of all the token). Failures are returned as *APIError
// (the service answered with an error) or wrap ErrUnreachable (no answer: the service could
// not be reached, or the connection failed).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/wire"
)

// ErrUnreachable marks a request that got no HTTP answer (connection refused, DNS failure,
// reset, TLS failure). Callers test it with errors.Is.
var ErrUnreachable = errors.New("service unreachable")

// Client talks to one CTS service with one token. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	token     string
	hc        *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests through hc.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// DefaultHTTPClient returns the HTTP client New uses: connection and header timeouts, but no
// overall timeout, so long log downloads are not cut off (bound calls with their context).
func DefaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}}
}

// New returns a client of the service at baseURL (for example
// "https://ci.kbase.us/services/cts"), authenticating with token; an empty token sends no
// Authorization header (enough for the routes that need none: /, /sites, /images).
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("service url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("service url %q: want http(s)://host[:port][/path]", baseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("service url %q: must not hold credentials, a query or a fragment", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &Client{base: u, token: token, userAgent: "cts-go-client"}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = DefaultHTTPClient()
	}
	return c, nil
}

// URL returns the service's base URL.
func (c *Client) URL() string { return c.base.String() }

// endpoint joins the base URL and path, an escaped path starting with "/".
func (c *Client) endpoint(path string, query url.Values) string {
	u := c.base.String() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// Do sends one request to path (below the base URL, starting with "/", already escaped: see
// url.PathEscape) and decodes the JSON
// answer into out. body, when not nil, is sent as JSON: a []byte or json.RawMessage as is,
// anything else marshalled. out may be nil (the answer is discarded), a *[]byte or
// *json.RawMessage (the raw answer), or any value encoding/json decodes into. A non-2xx answer
// is returned as *APIError; no answer as an error wrapping ErrUnreachable; a cancelled or
// expired ctx as an error wrapping ctx.Err().
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return c.transportError(ctx, method, path, err)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = b
		return nil
	case *json.RawMessage:
		*o = b
		return nil
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("%s %s: empty response", method, path)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// send performs the request and returns a 2xx response whose body the caller must close.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	return c.sendAccept(ctx, method, path, query, body, "application/json")
}

// sendAccept is send with the media type the caller accepts.
func (c *Client) sendAccept(ctx context.Context, method, path string, query url.Values, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case []byte:
			rd = bytes.NewReader(b)
		case json.RawMessage:
			rd = bytes.NewReader(b)
		default:
			enc, err := json.Marshal(body)
			if err != nil {
				return nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
			}
			rd = bytes.NewReader(enc)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, query), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, parseAPIError(resp.StatusCode, b)
	}
	return resp, nil
}

// transportError tells a cancelled or expired call (the caller's decision) from a service that
// did not answer.
func (c *Client) transportError(ctx context.Context, method, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
	}
	// The url.Error text repeats the URL, which is ours and holds no secret.
	return fmt.Errorf("%s %s: %w: %w", method, path, ErrUnreachable, err)
}

// Root returns GET /: the service name and version.
func (c *Client) Root(ctx context.Context) (*ServiceInfo, error) {
	var out ServiceInfo
	if err := c.Do(ctx, http.MethodGet, "/", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WhoAmI returns GET /whoami: the token's user, roles and allowed S3 paths.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	if err := c.Do(ctx, http.MethodGet, "/whoami", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Sites returns GET /sites.
func (c *Client) Sites(ctx context.Context) ([]Site, error) {
	var out wire.Sites
	if err := c.Do(ctx, http.MethodGet, "/sites", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Sites, nil
}

// Submit sends POST /jobs and returns the new job's ID.
func (c *Client) Submit(ctx context.Context, in *JobInput) (string, error) {
	return c.submit(ctx, in)
}

// SubmitJSON sends a JobInput already encoded as JSON (a job file) with POST /jobs, unchanged,
// and returns the new job's ID.
func (c *Client) SubmitJSON(ctx context.Context, body []byte) (string, error) {
	return c.submit(ctx, json.RawMessage(body))
}

func (c *Client) submit(ctx context.Context, body any) (string, error) {
	var out wire.SubmitJobResponse
	if err := c.Do(ctx, http.MethodPost, "/jobs", nil, body, &out); err != nil {
		return "", err
	}
	if out.JobID == "" {
		return "", errors.New("POST /jobs: the response holds no job_id")
	}
	return out.JobID, nil
}

// jobPath returns "/jobs/<id>" with id escaped as one path segment.
func jobPath(prefix, id string) string { return prefix + "/jobs/" + url.PathEscape(id) }

// Status returns GET /jobs/{id}/status.
func (c *Client) Status(ctx context.Context, id string) (*JobStatus, error) {
	var out JobStatus
	if err := c.Do(ctx, http.MethodGet, jobPath("", id)+"/status", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Job returns GET /jobs/{id}: the whole job, with its outputs once complete.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var out Job
	if err := c.Do(ctx, http.MethodGet, jobPath("", id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListOptions filters job lists. Zero values are not sent.
type ListOptions struct {
	// User (admin lists only) selects one user's jobs.
	User    string
	Cluster string
	State   string
	// After (inclusive) and Before (exclusive) bound the time of the last transition.
	After, Before time.Time
	// Limit is 1–1000 (the service's default is 1000).
	Limit int
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.User != "" {
		q.Set("user", o.User)
	}
	if o.Cluster != "" {
		q.Set("cluster", o.Cluster)
	}
	if o.State != "" {
		q.Set("state", o.State)
	}
	if !o.After.IsZero() {
		q.Set("after", o.After.UTC().Format(time.RFC3339Nano))
	}
	if !o.Before.IsZero() {
		q.Set("before", o.Before.UTC().Format(time.RFC3339Nano))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

// ListJobs returns GET /jobs: the caller's jobs, most recently changed first, without their
// input file lists and outputs. opts.User is ignored.
func (c *Client) ListJobs(ctx context.Context, opts ListOptions) ([]Job, error) {
	opts.User = ""
	return c.listJobs(ctx, "/jobs", opts)
}

// AdminListJobs returns GET /admin/jobs: any user's jobs (admins only).
func (c *Client) AdminListJobs(ctx context.Context, opts ListOptions) ([]Job, error) {
	return c.listJobs(ctx, "/admin/jobs", opts)
}

func (c *Client) listJobs(ctx context.Context, path string, opts ListOptions) ([]Job, error) {
	var out wire.Jobs
	if err := c.Do(ctx, http.MethodGet, path, opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

// ExitCodes returns GET /jobs/{id}/exit_codes: one entry per container, nil where not known yet.
func (c *Client) ExitCodes(ctx context.Context, id string) ([]*int, error) {
	var out wire.ExitCodes
	if err := c.Do(ctx, http.MethodGet, jobPath("", id)+"/exit_codes", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.ExitCodes, nil
}

// Cancel sends PUT /jobs/{id}/cancel: the job moves to canceling, then canceled.
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPut, jobPath("", id)+"/cancel", nil, nil, nil)
}

// Images returns GET /images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var out wire.Images
	if err := c.Do(ctx, http.MethodGet, "/images", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// imagePath escapes each '/'-separated part of ref, keeping the '/', ':' and '@' of an image
// reference (the route takes the rest of the path).
func imagePath(prefix, ref string) string {
	parts := strings.Split(strings.TrimPrefix(ref, "/"), "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return prefix + "/images/" + strings.Join(parts, "/")
}

// Image returns GET /images/{ref}: a registered image by name, name:tag or name@digest.
func (c *Client) Image(ctx context.Context, ref string) (*Image, error) {
	var out Image
	if err := c.Do(ctx, http.MethodGet, imagePath("", ref), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RegisterImage sends POST /admin/images/{ref} (admins only) and returns the registered image.
func (c *Client) RegisterImage(ctx context.Context, ref string, reg ImageRegistration) (*Image, error) {
	q := url.Values{}
	if reg.RefdataID != "" {
		q.Set("refdata_id", reg.RefdataID)
	}
	if reg.DefaultRefdataMountPoint != "" {
		q.Set("default_refdata_mount_point", reg.DefaultRefdataMountPoint)
	}
	var out Image
	if err := c.Do(ctx, http.MethodPost, imagePath("/admin", ref), q, reg, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteImage sends DELETE /admin/images/{ref} (admins only).
func (c *Client) DeleteImage(ctx context.Context, ref string) error {
	return c.Do(ctx, http.MethodDelete, imagePath("/admin", ref), nil, nil, nil)
}

// AdminJob returns GET /admin/jobs/{id}: any job with the admin details (transition IDs,
// notification flags, the detailed error, the launcher handle).
func (c *Client) AdminJob(ctx context.Context, id string) (*AdminJob, error) {
	var out AdminJob
	if err := c.Do(ctx, http.MethodGet, jobPath("/admin", id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminCancel sends PUT /admin/jobs/{id}/cancel (admins only).
func (c *Client) AdminCancel(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPut, jobPath("/admin", id)+"/cancel", nil, nil, nil)
}

// AdminContainers returns GET /admin/jobs/{id}/container: every container of the job with its
// state and exit code (admins only).
// Containers returns GET /jobs/{id}/containers: the owner's view of every container of the
// job (states, transitions, exit codes, outputs; no admin errors).
func (c *Client) Containers(ctx context.Context, id string) ([]SubJob, error) {
	var out wire.SubJobs
	if err := c.Do(ctx, http.MethodGet, jobPath("", id)+"/containers", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.SubJobs, nil
}

func (c *Client) AdminContainers(ctx context.Context, id string) ([]SubJob, error) {
	var out wire.SubJobs
	if err := c.Do(ctx, http.MethodGet, jobPath("/admin", id)+"/container", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.SubJobs, nil
}
