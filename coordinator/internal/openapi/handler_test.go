package openapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	d, err := Build(Info{Title: "t", Version: "1"}, ctsRoutes(), WithSchema(Union{}, Schema{"type": "string"}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(d))
	t.Cleanup(srv.Close)
	want := mustJSON(d)

	tests := []struct {
		name       string
		method     string
		header     map[string]string
		wantStatus int
		wantBody   bool
	}{
		{"get", http.MethodGet, nil, http.StatusOK, true},
		{"head", http.MethodHead, nil, http.StatusOK, false},
		{"post refused", http.MethodPost, nil, http.StatusMethodNotAllowed, false},
		{"etag revalidation", http.MethodGet, map[string]string{"If-None-Match": "ETAG"}, http.StatusNotModified, false},
	}
	var etag string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, strings.ReplaceAll(v, "ETAG", etag))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusOK {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				etag = resp.Header.Get("ETag")
			}
			if tt.wantBody {
				if string(body) != string(want) {
					t.Error("body differs from Document.JSON")
				}
				if !json.Valid(body) {
					t.Error("body is not JSON")
				}
			}
		})
	}
}

func TestHandlerNilDocument(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d", rec.Code)
	}
}

func TestDocsPage(t *testing.T) {
	rec := httptest.NewRecorder()
	DocsPage(`CTS <script>alert(1)</script>`, `openapi.json?a=1&b="x"`).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/docs", nil))
	page := rec.Body.String()
	csp := rec.Header().Get("Content-Security-Policy")

	scriptRE := regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	styleRE := regexp.MustCompile(`(?s)<style>(.*?)</style>`)
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	tests := []struct {
		name string
		ok   func() bool
	}{
		{"status 200", func() bool { return rec.Code == http.StatusOK }},
		{"html content type", func() bool { return rec.Header().Get("Content-Type") == "text/html; charset=utf-8" }},
		{"no absolute URLs at all", func() bool { return !strings.Contains(page, "http://") && !strings.Contains(page, "https://") }},
		{"no external scripts or stylesheets", func() bool {
			return !regexp.MustCompile(`(?i)<script[^>]+src|<link[^>]+href`).MatchString(page)
		}},
		{"title escaped", func() bool {
			return strings.Contains(page, "CTS &lt;script&gt;alert(1)&lt;/script&gt;") && !strings.Contains(page, "<script>alert")
		}},
		{"spec URL in an escaped attribute", func() bool {
			return strings.Contains(page, `data-spec-url="openapi.json?a=1&amp;b=&#34;x&#34;"`)
		}},
		{"one inline script, allowed by hash", func() bool {
			m := scriptRE.FindAllStringSubmatch(page, -1)
			return len(m) == 1 && strings.Contains(csp, "script-src "+hash(m[0][1])+";")
		}},
		{"inline style allowed by hash", func() bool {
			m := styleRE.FindStringSubmatch(page)
			return m != nil && strings.Contains(csp, "style-src "+hash(m[1])+";")
		}},
		{"CSP forbids other origins", func() bool {
			return strings.HasPrefix(csp, "default-src 'none';") && strings.Contains(csp, "connect-src 'self';")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok() {
				t.Errorf("failed; CSP %q", csp)
			}
		})
	}

	rec = httptest.NewRecorder()
	DocsPage("t", "x").ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/docs", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("PUT: status %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}
