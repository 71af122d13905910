package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html"
	"net/http"
	"strings"
	"time"
)

//go:embed assets/docs.html
var docsHTML string

//go:embed assets/docs.css
var docsCSS string

//go:embed assets/docs.js
var docsJS string

// Handler serves the document as application/json (GET and HEAD, with conditional requests
// and ranges through http.ServeContent); other methods get 405.
func Handler(doc *Document) http.Handler {
	body, err := doc.JSON()
	if err != nil {
		body = nil
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) {
			return
		}
		if body == nil {
			http.Error(w, "no OpenAPI document", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

// DocsPage serves a self-contained HTML page, titled title, that fetches the OpenAPI document
// at specURL and renders its routes, parameters and request/response schemas ($refs
// resolved, expandable, recursion marked). Each operation has a "Try it" form that sends the
// request, with a token pasted in the page (kept in its memory only), to the API beside the
// document, and shows the answer. It loads nothing else: its CSS and JavaScript are inline,
// and its Content-Security-Policy allows only those inline blocks and same-origin fetches. specURL should therefore be same-origin, preferably relative (e.g. "openapi.json"
// when the page is served at "/docs"), so the page keeps working behind a path-rewriting
// proxy.
func DocsPage(title, specURL string) http.Handler {
	page := strings.NewReplacer(
		"{{TITLE}}", html.EscapeString(title),
		"{{SPEC_URL}}", html.EscapeString(specURL),
		"{{CSS}}", docsCSS,
		"{{JS}}", docsJS,
	).Replace(docsHTML)
	csp := "default-src 'none'; script-src " + cspHash(docsJS) + "; style-src " + cspHash(docsCSS) +
		"; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	body := []byte(page)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowRead(w, r) {
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
