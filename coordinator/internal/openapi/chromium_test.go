package openapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var scriptsRE = regexp.MustCompile(`(?s)<script>.*?</script>`)

// TestDocsPageInChromium renders the docs page in headless Chromium and checks that the
// script ran and built the route list and an opened operation. It is opt-in, because the
// suite must not depend on a browser: set CTS_TEST_CHROMIUM to the browser binary (and
// CTS_TEST_SCREENSHOT to a PNG path to keep a screenshot).
func TestDocsPageInChromium(t *testing.T) {
	bin := os.Getenv("CTS_TEST_CHROMIUM")
	if bin == "" {
		t.Skip("set CTS_TEST_CHROMIUM to a chromium binary to render the docs page")
	}
	d, err := Build(Info{Title: "CDM Task Service", Version: "0.1.0", Description: "Runs **containers** on `remote` compute."},
		ctsRoutes(), WithSchema(Union{}, Schema{"oneOf": []any{Schema{"type": "string"}, SchemaOf(Inner{})}}))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /api/openapi.json", Handler(d))
	mux.Handle("GET /api/docs", DocsPage("CDM Task Service", "openapi.json"))

	// A second document with every kind of schema, and a copy of the page (without its CSP)
	// with a harness that opens every <details> until none is left, so the lazily built
	// schema trees are rendered too.
	all, err := Build(Info{Title: "All", Version: "1"}, []Route{
		{Method: "POST", Path: "/everything", Auth: AuthUser, Request: Everything{}, Response: Node{}},
	}, WithSchema(Union{}, Schema{"oneOf": []any{Schema{"type": "string"}, SchemaOf(Inner{})}}))
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("GET /all/openapi.json", Handler(all))
	rec := httptest.NewRecorder()
	DocsPage("All", "openapi.json").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	harness := `<script>
(function wait() {
  if (!document.body.dataset.rendered) return setTimeout(wait, 20);
  (function round(n) {
    var closed = document.querySelectorAll("details:not([open])");
    if (!closed.length || n > 30) { document.body.dataset.rounds = String(n); return; }
    closed.forEach(function (d) { d.open = true; });
    setTimeout(function () { round(n + 1); }, 20);
  })(0);
})();
</script></body>`
	expanded := strings.Replace(rec.Body.String(), "</body>", harness, 1)
	mux.HandleFunc("GET /all/docs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(expanded))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	run := func(args ...string) (string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--no-first-run", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000",
			"--enable-logging=stderr", "--v=0"}
		cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		// Only the rendered DOM counts, not the text of the scripts.
		return scriptsRE.ReplaceAllString(string(out), ""), stderr.String()
	}
	page := srv.URL + "/api/docs#op-get_jobs_job_id"
	dom, logs := run("--dump-dom", page)
	for _, want := range []string{
		`data-rendered="true"`, // the spec was fetched and rendered
		`data-search="get /jobs/{job_id} get a job jobs" open=""`, // the hash opened the operation
		`>/jobs/{job_id}/log/{container_num}/stdout<`,
		`>Parameters<`, `>job_input<`, `>transition_times<`, // the 200 schema, expanded
		`<strong>containers</strong>`, // inline markup in descriptions
		`>Schemas<`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s", want)
		}
	}
	for _, bad := range []string{"Uncaught", "Refused to", "Content Security Policy"} {
		if strings.Contains(logs, bad) {
			t.Errorf("browser log has %q:\n%s", bad, logs)
		}
	}

	dom, logs = run("--dump-dom", srv.URL+"/all/docs")
	for _, want := range []string{
		`data-rounds="`,                 // the harness finished
		`↻ Node (recursive, see above)`, // recursion is cut
		`one of:`, `>option 2<`,         // the union
		`pattern: ^[a-z]+$`, // constraints
		`map[string]<span class="type mono"><a href="#schema-Inner">Inner</a>`, // map of refs
		`array[<span class="type mono">string</span>]`,
		`>ping_pong<`, `↻ Ping (recursive, see above)`, // mutual recursion
		`>items<`, // an array of unions gets an items row
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("expanded DOM lacks %s", want)
		}
	}
	if strings.Contains(dom, `data-rounds="31"`) {
		t.Error("the schema tree did not stop expanding: recursion is not cut")
	}
	for _, bad := range []string{`class="error"`, "unresolved"} {
		if strings.Contains(dom, bad) {
			t.Errorf("expanded DOM has %q", bad)
		}
	}
	if strings.Contains(logs, "Uncaught") {
		t.Errorf("browser log has an uncaught error:\n%s", logs)
	}

	if shot := os.Getenv("CTS_TEST_SCREENSHOT"); shot != "" {
		abs, err := filepath.Abs(shot)
		if err != nil {
			t.Fatal(err)
		}
		run("--screenshot="+abs, "--window-size=1300,1800", page)
		run("--screenshot="+strings.TrimSuffix(abs, ".png")+"-expanded.png", "--window-size=1300,3000", srv.URL+"/all/docs")
	}
}
