// Package simlaunch is the launcher plugin of the load benchmark: a real launcher plugin
// (shared/launcher over go-plugin gRPC, started and configured by the coordinator like any
// other) whose backend is the load generator instead of a batch system. Submit, Status,
// Cancel and Cleanup are forwarded as JSON over HTTP to the generator's control endpoint
// (Config.ControlURL), which starts simulated agents with the environment the coordinator
// gave the launch, exactly as HTCondor would start cts-agent with it.
//
// The backend keeps the launches, so several coordinator replicas, each with its own plugin
// process, see one backend, as they would one HTCondor schedd: Submit is idempotent per
// (job, attempt) across them.
//
// It owns the wire between plugin and generator (the types and paths below) and nothing else:
// what a simulated agent does is package load's.
package simlaunch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// Paths of the generator's control endpoint.
const (
	PathSubmit  = "/sim/submit"
	PathStatus  = "/sim/status"
	PathCancel  = "/sim/cancel"
	PathCleanup = "/sim/cleanup"
)

// Name is the plugin's name in Info.
const Name = "sim"

// Config is the plugin configuration (the site's plugin_config).
type Config struct {
	// ControlURL is the root URL of the load generator's control endpoint.
	ControlURL string `json:"control_url"`
}

// StatusRequest asks for the state of launched jobs.
type StatusRequest struct {
	Refs []launcher.JobRef `json:"refs"`
}

// StatusResponse answers a StatusRequest: one entry per ref, in order.
type StatusResponse struct {
	Jobs []JobStatus `json:"jobs"`
}

// JobStatus is launcher.JobStatus on the wire: NotFound stands for an error wrapping
// launcher.ErrNotFound.
type JobStatus struct {
	JobID      string                     `json:"job_id"`
	Containers []launcher.ContainerStatus `json:"containers"`
	NotFound   bool                       `json:"not_found,omitempty"`
}

// errorBody is the control endpoint's answer to a failed call; Kind names the launcher
// sentinel.
type errorBody struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Error kinds on the wire.
const (
	kindNotFound = "not_found"
	kindConflict = "conflict"
	kindInvalid  = "invalid"
)

// Plugin implements launcher.Launcher by calling the control endpoint.
type Plugin struct {
	hc *http.Client

	mu  sync.Mutex
	cfg *Config
}

var (
	_ launcher.Launcher = (*Plugin)(nil)
	_ launcher.Cleaner  = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{hc: &http.Client{Timeout: 30 * time.Second}}
}

// Info implements launcher.Launcher.
func (p *Plugin) Info(context.Context) (launcher.Info, error) {
	return launcher.Info{Name: Name, APIVersion: launcher.APIVersion, Capabilities: []string{launcher.CapabilityCleanup}}, nil
}

// Configure implements launcher.Launcher.
func (p *Plugin) Configure(_ context.Context, raw []byte) error {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("%w: %v", launcher.ErrInvalidConfig, err)
	}
	if !strings.HasPrefix(c.ControlURL, "http://") && !strings.HasPrefix(c.ControlURL, "https://") {
		return fmt.Errorf("%w: control_url %q is not an http(s) URL", launcher.ErrInvalidConfig, c.ControlURL)
	}
	c.ControlURL = strings.TrimSuffix(c.ControlURL, "/")
	p.mu.Lock()
	p.cfg = &c
	p.mu.Unlock()
	return nil
}

func (p *Plugin) config() (*Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return nil, launcher.ErrNotConfigured
	}
	return p.cfg, nil
}

// Submit implements launcher.Launcher.
func (p *Plugin) Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	if err := req.Validate(); err != nil {
		return launcher.SubmitResponse{}, err
	}
	var resp launcher.SubmitResponse
	err := p.call(ctx, PathSubmit, req, &resp)
	return resp, err
}

// Status implements launcher.Launcher.
func (p *Plugin) Status(ctx context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	var resp StatusResponse
	if err := p.call(ctx, PathStatus, StatusRequest{Refs: refs}, &resp); err != nil {
		return nil, err
	}
	if len(resp.Jobs) != len(refs) {
		return nil, fmt.Errorf("%w: the generator answered %d statuses for %d jobs", launcher.ErrUnavailable, len(resp.Jobs), len(refs))
	}
	out := make([]launcher.JobStatus, len(resp.Jobs))
	for i, j := range resp.Jobs {
		out[i] = launcher.JobStatus{JobID: j.JobID, Containers: j.Containers}
		if j.NotFound {
			out[i].Containers = nil
			out[i].Err = fmt.Errorf("job %s: %w", j.JobID, launcher.ErrNotFound)
		}
	}
	return out, nil
}

// Cancel implements launcher.Launcher.
func (p *Plugin) Cancel(ctx context.Context, ref launcher.JobRef) error {
	return p.call(ctx, PathCancel, ref, nil)
}

// Cleanup implements launcher.Cleaner.
func (p *Plugin) Cleanup(ctx context.Context, ref launcher.JobRef) error {
	return p.call(ctx, PathCleanup, ref, nil)
}

// call posts in to the control endpoint and decodes the answer into out (when not nil); an
// error answer becomes the matching launcher sentinel, a generator that cannot be reached
// launcher.ErrUnavailable.
func (p *Plugin) call(ctx context.Context, path string, in, out any) error {
	cfg, err := p.config()
	if err != nil {
		return err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.ControlURL+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: load generator: %v", launcher.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%w: load generator: %v", launcher.ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = json.Unmarshal(body, &e)
		switch e.Kind {
		case kindNotFound:
			return fmt.Errorf("%w: %s", launcher.ErrNotFound, e.Message)
		case kindConflict:
			return fmt.Errorf("%w: %s", launcher.ErrConflict, e.Message)
		case kindInvalid:
			return fmt.Errorf("%w: %s", launcher.ErrInvalidRequest, e.Message)
		}
		return fmt.Errorf("%w: load generator answered %s: %s", launcher.ErrUnavailable, resp.Status, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%w: load generator answer: %v", launcher.ErrUnavailable, err)
	}
	return nil
}

// Backend is what the generator implements behind the control endpoint.
type Backend interface {
	Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error)
	Status(ctx context.Context, refs []launcher.JobRef) ([]JobStatus, error)
	Cancel(ctx context.Context, ref launcher.JobRef) error
	Cleanup(ctx context.Context, ref launcher.JobRef) error
}

// Handler serves the control endpoint for b. Errors wrapping launcher.ErrNotFound,
// ErrConflict and ErrInvalidRequest reach the plugin as those sentinels.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathSubmit, func(w http.ResponseWriter, r *http.Request) {
		var req launcher.SubmitRequest
		if !decode(w, r, &req) {
			return
		}
		resp, err := b.Submit(r.Context(), req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		var req StatusRequest
		if !decode(w, r, &req) {
			return
		}
		jobs, err := b.Status(r.Context(), req.Refs)
		reply(w, StatusResponse{Jobs: jobs}, err)
	})
	mux.HandleFunc("POST "+PathCancel, func(w http.ResponseWriter, r *http.Request) {
		var ref launcher.JobRef
		if !decode(w, r, &ref) {
			return
		}
		reply(w, struct{}{}, b.Cancel(r.Context(), ref))
	})
	mux.HandleFunc("POST "+PathCleanup, func(w http.ResponseWriter, r *http.Request) {
		var ref launcher.JobRef
		if !decode(w, r, &ref) {
			return
		}
		reply(w, struct{}{}, b.Cleanup(r.Context(), ref))
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		reply(w, nil, fmt.Errorf("%w: %v", launcher.ErrInvalidRequest, err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		e := errorBody{Message: err.Error()}
		switch {
		case errors.Is(err, launcher.ErrNotFound):
			e.Kind = kindNotFound
		case errors.Is(err, launcher.ErrConflict):
			e.Kind = kindConflict
		case errors.Is(err, launcher.ErrInvalidRequest):
			e.Kind = kindInvalid
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(e)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
