package devstack

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/kbase/cts/test/ports"
)

// Registry is an OCI registry (go-containerregistry's pkg/registry) served over plain HTTP on
// 127.0.0.1; go-containerregistry clients use http for 127.0.0.1 by themselves. Images are
// in memory and gone once it is closed, unless WithStorage keeps them in a folder.
type Registry struct {
	host      string
	srv       *http.Server
	served    chan error
	journal   *manifestJournal
	closeOnce sync.Once
	closeErr  error
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	tamper     func(digest string, b []byte) []byte
	user, pass string
	dir, addr  string
}

// WithStorage keeps the registry's images in dir (blobs under dir/blobs, manifests in a
// journal replayed at start), so a registry started again on dir serves them again.
func WithStorage(dir string) RegistryOption {
	return func(c *registryConfig) { c.dir = dir }
}

// WithAddr makes the registry listen on addr ("127.0.0.1:PORT"). Unlike At for the other
// components there is no fallback: image references name the registry's host and port, so a
// registry that moved would not serve the images registered with the coordinator.
func WithAddr(addr string) RegistryOption {
	return func(c *registryConfig) { c.addr = addr }
}

// WithBasicAuth makes the registry private: every request must carry these credentials
// (HTTP Basic, announced with a WWW-Authenticate challenge as Docker registries do).
func WithBasicAuth(user, pass string) RegistryOption {
	return func(c *registryConfig) { c.user, c.pass = user, pass }
}

// basicAuth refuses requests without the configured credentials.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="cts-devstack"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// WithBlobTamper makes the registry pass every blob it serves on GET through fn, which gets
// the blob's digest ("sha256:...") and its true bytes and returns the bytes to serve: the
// response keeps the requested digest whatever fn returns. Tests use it to check that a pull
// refuses a layer whose bytes do not match its digest.
func WithBlobTamper(fn func(digest string, b []byte) []byte) RegistryOption {
	return func(c *registryConfig) { c.tamper = fn }
}

// StartRegistry starts the registry. ctx is only checked: the listener is bound
// synchronously and serves until Close.
func StartRegistry(ctx context.Context, opts ...RegistryOption) (*Registry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	var cfg registryConfig
	for _, o := range opts {
		o(&cfg)
	}
	ropts := []registry.Option{registry.Logger(log.New(io.Discard, "", 0))}
	var journal *manifestJournal
	if cfg.dir != "" {
		abs, err := filepath.Abs(cfg.dir)
		if err != nil {
			return nil, fmt.Errorf("start registry: %w", err)
		}
		blobs := filepath.Join(abs, "blobs")
		if err := os.MkdirAll(blobs, 0o700); err != nil {
			return nil, fmt.Errorf("start registry: %w", err)
		}
		ropts = append(ropts, registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)))
		journal = &manifestJournal{path: filepath.Join(abs, "manifests.jsonl")}
	}
	var h http.Handler = registry.New(ropts...)
	if journal != nil {
		if err := journal.replay(h); err != nil {
			return nil, fmt.Errorf("start registry: %w", err)
		}
		h = journal.wrap(h)
	}
	if cfg.tamper != nil {
		h = tamperBlobs(h, cfg.tamper)
	}
	if cfg.user != "" {
		h = basicAuth(h, cfg.user, cfg.pass)
	}
	var ln net.Listener
	var err error
	if cfg.addr != "" {
		ln, err = net.Listen("tcp", cfg.addr)
	} else {
		// Image references name the address: keep it where a restart finds it free.
		ln, err = ports.ListenStable("127.0.0.1")
	}
	if err != nil {
		if cfg.addr != "" && errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("start registry: %s is in use by another program, and the registered images name this address: stop that program, or remove the state folder to start afresh (make clean)", cfg.addr)
		}
		return nil, fmt.Errorf("start registry: %w", err)
	}
	r := &Registry{
		host:    ln.Addr().String(),
		srv:     &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		served:  make(chan error, 1),
		journal: journal,
	}
	go func() { r.served <- r.srv.Serve(ln) }()
	return r, nil
}

// Host returns "127.0.0.1:PORT", the registry part of image references
// ("127.0.0.1:PORT/test/img:1").
func (r *Registry) Host() string { return r.host }

// Close stops the server and drops its connections. It is idempotent.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		if err := r.srv.Close(); err != nil {
			r.closeErr = fmt.Errorf("close registry: %w", err)
		}
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.closeErr = errors.Join(r.closeErr, fmt.Errorf("close registry: serve: %w", err))
		}
	})
	return r.closeErr
}

// TestRegistry starts a Registry and closes it on tb.Cleanup; it calls tb.Fatal on error.
func TestRegistry(tb testing.TB, opts ...RegistryOption) *Registry {
	tb.Helper()
	r, err := StartRegistry(tb.Context(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Error(err)
		}
	})
	return r
}

// blobPath matches GET /v2/<name>/blobs/<digest>.
var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

// tamperBlobs wraps the registry so that successful blob GETs are served as fn rewrites them.
func tamperBlobs(next http.Handler, fn func(digest string, b []byte) []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m := blobPath.FindStringSubmatch(req.URL.Path)
		if req.Method != http.MethodGet || m == nil {
			next.ServeHTTP(w, req)
			return
		}
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, req)
		body := rec.body.Bytes()
		if rec.status == http.StatusOK {
			body = fn(m[1], body)
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.status)
		_, _ = w.Write(body)
	})
}

// recorder buffers a whole response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
