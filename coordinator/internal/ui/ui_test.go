package ui_test

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ui"
)

func newServer(t *testing.T) (*ui.Handler, *httptest.Server) {
	t.Helper()
	h, err := ui.New()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ui/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return h, srv
}

// TestHeaders checks what every answer carries: the strict CSP and the other security
// headers, the content types, revalidation with the ETag.
func TestHeaders(t *testing.T) {
	_, srv := newServer(t)
	for _, tc := range []struct {
		path, ctype string
		status      int
	}{
		{"/ui/", "text/html; charset=utf-8", 200},
		{"/ui/index.html", "text/html; charset=utf-8", 200},
		{"/ui/js/main.js", "text/javascript; charset=utf-8", 200},
		{"/ui/vendor/preact.mjs", "text/javascript; charset=utf-8", 200},
		{"/ui/app.css", "text/css; charset=utf-8", 200},
		{"/ui/favicon.svg", "image/svg+xml", 200},
		{"/ui/nope.js", "text/plain; charset=utf-8", 404},
		{"/ui/vendor/SHA256SUMS", "text/plain; charset=utf-8", 404},
		{"/ui/../go.mod", "", 0}, // cleaned by the client or the mux: never a file outside static/
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.status == 0 {
			if strings.Contains(string(body), "module github.com/kbase/cts") {
				t.Fatalf("%s served a file outside the dashboard", tc.path)
			}
			continue
		}
		h := resp.Header
		if resp.StatusCode != tc.status || h.Get("Content-Type") != tc.ctype {
			t.Errorf("%s = %d %q, want %d %q", tc.path, resp.StatusCode, h.Get("Content-Type"), tc.status, tc.ctype)
		}
		if h.Get("Content-Security-Policy") != ui.CSP || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s headers %v", tc.path, h)
		}
		if tc.status == 200 {
			if h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "" {
				t.Errorf("%s caching headers %v", tc.path, h)
			}
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			req.Header.Set("If-None-Match", h.Get("ETag"))
			r2, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r2.Body.Close()
			if r2.StatusCode != http.StatusNotModified {
				t.Errorf("%s with its ETag = %d, want 304", tc.path, r2.StatusCode)
			}
		}
	}
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'",
		"base-uri 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(ui.CSP, d) {
			t.Errorf("the CSP lacks %s", d)
		}
	}
	if strings.Contains(ui.CSP, "unsafe") || strings.Contains(ui.CSP, "http") {
		t.Errorf("the CSP allows too much: %s", ui.CSP)
	}
}

// TestVendoredChecksums fails when a vendored module differs from what scripts/vendor-ui.sh
// recorded (an edit by hand, a partial update).
func TestVendoredChecksums(t *testing.T) {
	dir := filepath.Join("static", "vendor")
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	pins := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			if regexp.MustCompile(`^# [a-z-]+ \d+\.\d+\.\d+ sha512-[A-Za-z0-9+/=]{88}$`).MatchString(line) {
				pins++
			}
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s does not match SHA256SUMS: run scripts/vendor-ui.sh, do not edit it", name)
		}
		listed[name] = true
	}
	if pins != 2 {
		t.Errorf("SHA256SUMS records %d pinned npm packages, want 2 (preact, htm)", pins)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" && !listed[e.Name()] {
			t.Errorf("vendor/%s is not recorded in SHA256SUMS", e.Name())
		}
	}
}

// TestNoOutsideResources checks the files the page loads: no script, style, font or image from
// another origin, no inline script or handler, no eval.
func TestNoOutsideResources(t *testing.T) {
	h, srv := newServer(t)
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, f := range h.Files() {
		if !strings.HasSuffix(f.Path, ".js") && !strings.HasSuffix(f.Path, ".mjs") && !strings.HasSuffix(f.Path, ".html") &&
			!strings.HasSuffix(f.Path, ".css") {
			continue
		}
		resp, err := http.Get(srv.URL + "/ui/" + f.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// XML namespace names (SVG, MathML) are identifiers, never fetched.
		s := strings.NewReplacer("http://www.w3.org/", "").Replace(string(b))
		if m := url.FindString(s); m != "" {
			t.Errorf("%s refers to %s", f.Path, m)
		}
		if strings.Contains(s, "eval(") || strings.Contains(s, "new Function") {
			t.Errorf("%s evaluates strings", f.Path)
		}
		if strings.HasSuffix(f.Path, ".html") {
			for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(s, -1) {
				if !strings.Contains(m, " src=") {
					t.Errorf("%s has an inline script %s", f.Path, m)
				}
			}
			if regexp.MustCompile(`\son[a-z]+=`).MatchString(s) || strings.Contains(s, "style=") {
				t.Errorf("%s has an inline handler or style", f.Path)
			}
		}
	}
}

// TestBundleSize states what a first visit downloads and keeps it small.
func TestBundleSize(t *testing.T) {
	h, _ := newServer(t)
	var raw, gz int
	for _, f := range h.Files() {
		if strings.HasPrefix(f.Path, "vendor/LICENSE") || strings.HasSuffix(f.Path, "SHA256SUMS") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("static", f.Path))
		if err != nil {
			t.Fatal(err)
		}
		raw += len(b)
		var sb strings.Builder
		w, _ := gzip.NewWriterLevel(&sb, gzip.BestCompression)
		_, _ = w.Write(b)
		_ = w.Close()
		gz += sb.Len()
	}
	t.Logf("the dashboard is %d bytes (%d gzipped), vendored modules included", raw, gz)
	if raw > 200<<10 {
		t.Errorf("the dashboard grew to %d bytes; keep it under 200 KiB", raw)
	}
}
