// Package ui serves the coordinator's web dashboard below /ui/: a page of JavaScript modules
// (Preact and htm, vendored from npm by scripts/vendor-ui.sh; no build step) embedded in the
// binary. It owns the static files and the HTTP headers they are served with, nothing else:
// the page talks to the REST API with the user's token like any other client, so every rule
// of who may see or do what stays in the API.
//
// Every answer carries a strict Content-Security-Policy (scripts, styles and connections to
// this origin only; no inline script or style, no eval, Trusted Types enforced, no framing),
// and headers that keep the page out of caches of other origins and frames. Files are served
// with a strong ETag and "no-cache", so a new coordinator version is picked up at once.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the dashboard is served below.
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// file is one embedded file, ready to serve.
type file struct {
	data  []byte
	ctype string
	etag  string
}

// Handler serves the dashboard's files below Prefix; "/ui/" is the page itself.
type Handler struct {
	files map[string]file // by path below static/, "index.html"
}

// New returns the dashboard handler. It fails only when the embedded files are unreadable,
// which a build of this package rules out.
func New() (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ctype := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js", ".mjs":
			ctype = "text/javascript; charset=utf-8"
		case ".html":
			ctype = "text/html; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		case "":
			ctype = "text/plain; charset=utf-8"
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		sum := sha256.Sum256(data)
		h.files[strings.TrimPrefix(p, "static/")] = file{data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dashboard files: %w", err)
	}
	return h, nil
}

// Files lists the served files (paths below Prefix) with their sizes in bytes, by name.
func (h *Handler) Files() []FileSize {
	out := make([]FileSize, 0, len(h.files))
	for p, f := range h.files {
		out = append(out, FileSize{Path: p, Size: len(f.data)})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Path < out[b].Path })
	return out
}

// FileSize is a served file and its size.
type FileSize struct {
	Path string
	Size int
}

// SetHeaders sets the security headers every dashboard answer carries.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

// ServeHTTP serves GET and HEAD of the dashboard's files; anything else below Prefix is 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SetHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(Prefix, "/"))
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		p = "index.html"
	}
	f, ok := h.files[p]
	if !ok || strings.HasSuffix(p, "SHA256SUMS") {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "Not Found: the dashboard is at "+Prefix, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}
