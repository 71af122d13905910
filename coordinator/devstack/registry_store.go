package devstack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sync"
)

// manifestPath matches /v2/<name>/manifests/<reference>.
var manifestPath = regexp.MustCompile(`^/v2/.+/manifests/[^/]+$`)

// maxManifest bounds a manifest kept in the journal (registries commonly accept 4 MiB).
const maxManifest = 4 << 20

// manifestJournal keeps the registry's manifest changes in a JSON-lines file: pkg/registry
// keeps manifests in memory only (its disk handler stores blobs), so the journal is replayed
// into a new registry at start. A change is journaled before the client sees its success.
type manifestJournal struct {
	path string
	mu   sync.Mutex
}

// journalEntry is one manifest PUT or DELETE that succeeded.
type journalEntry struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// replay sends every journaled change to h, in order.
func (j *manifestJournal) replay(h http.Handler) error {
	f, err := os.Open(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replay manifests: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2*maxManifest)
	for line := 1; sc.Scan(); line++ {
		var e journalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// A torn last line (the process died while writing it): that change was never
			// acknowledged.
			continue
		}
		req := httptest.NewRequest(e.Method, e.Path, bytes.NewReader(e.Body))
		if e.ContentType != "" {
			req.Header.Set("Content-Type", e.ContentType)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 300 && e.Method == http.MethodPut {
			return fmt.Errorf("replay manifests: %s line %d: %s %s: HTTP %d", j.path, line, e.Method, e.Path, rec.Code)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("replay manifests: %w", err)
	}
	return nil
}

// wrap journals every manifest PUT and DELETE that h accepts.
func (j *manifestJournal) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method != http.MethodPut && r.Method != http.MethodDelete) || !manifestPath.MatchString(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
		if err != nil || len(body) > maxManifest {
			http.Error(w, "manifest unreadable or larger than 4 MiB", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if rec.status < 300 {
			e := journalEntry{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type")}
			if r.Method == http.MethodPut {
				e.Body = body
			}
			if err := j.append(e); err != nil {
				http.Error(w, "keep manifest: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
	})
}

func (j *manifestJournal) append(e journalEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
