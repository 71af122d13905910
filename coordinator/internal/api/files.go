package api

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// agentFileName is the name the agent binary is served under: launchers that download it
// (the HTCondor plugin's agent_url) take the last path element as the executable's name.
const agentFileName = "cts-agent"

// fileServer serves one file from disk with a strong ETag (its SHA-256) and Last-Modified,
// so workers and proxies can cache it and revalidate cheaply. The file is read at each
// request: replacing it (an agent upgrade) needs no restart. The hash is recomputed only when
// the file's size or modification time changes.
type fileServer struct {
	path, name string

	mu      sync.Mutex
	size    int64
	modTime time.Time
	etag    string
}

// etagFor returns the ETag of the open file f whose stat is fi.
func (fs *fileServer) etagFor(f *os.File, fi os.FileInfo) (string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.etag != "" && fs.size == fi.Size() && fs.modTime.Equal(fi.ModTime()) {
		return fs.etag, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", fs.path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewind %s: %w", fs.path, err)
	}
	fs.size, fs.modTime, fs.etag = fi.Size(), fi.ModTime(), `"sha256:`+hex.EncodeToString(h.Sum(nil))+`"`
	return fs.etag, nil
}

func (fs *fileServer) serve(w http.ResponseWriter, r *http.Request) error {
	f, err := os.Open(fs.path)
	if err != nil {
		return fmt.Errorf("open %s: %w", fs.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", fs.path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", fs.path)
	}
	etag, err := fs.etagFor(f, fi)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", "attachment; filename="+fs.name)
	// ServeContent answers conditional (If-None-Match, If-Modified-Since) and range requests.
	http.ServeContent(w, r, fs.name, fi.ModTime(), f)
	return nil
}

// agentBinary serves GET /external_exec/files/cts-agent: the static agent that launchers
// hand to workers. No auth, as the Python service's worker files.
func (s *Server) agentBinary(w http.ResponseWriter, r *http.Request) {
	if s.agent == nil {
		s.fail(w, r, ctserr.New(ctserr.CodeNotFound, "This service does not serve the agent binary: agent_binary is not configured"))
		return
	}
	if err := s.agent.serve(w, r); err != nil {
		s.fail(w, r, err)
	}
}
