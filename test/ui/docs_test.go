package ui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

// TestDocsTryIt uses the API docs page (/docs) of a dev site in Chromium as a user does: pastes
// a token, calls routes with the "Try it" forms (a path parameter, a body, no token) and reads
// the answers, under the page's strict Content-Security-Policy: no violation, no uncaught
// error, nothing requested from anywhere but the service, and the token in no URL and not on
// the page (the curl line names $CTS_TOKEN).
func TestDocsTryIt(t *testing.T) {
	s := testsite.Start(t, testsite.Options{Configure: func(c *app.Config) {
		if env, ok := c.Sites[0].PluginConfig["env"].(map[string]string); ok {
			env["CTS_AGENT_RUNTIME"] = "oci"
		}
	}})
	b := &browser{t: t, d: startChromium(t)}
	t.Logf("browser: %s", b.d.name())
	base := strings.TrimSuffix(s.Demo.URL, "/")
	tok := s.Demo.UserToken

	// result is the "Try it" answer of operation id; send clicks its Send button and waits for
	// the answer's status.
	result := func(id string) string { return fmt.Sprintf(`document.querySelector("#%s .tryit .result")`, id) }
	send := func(id, wantStatus string) string {
		t.Helper()
		b.clickButton("Send", "#"+id+" .tryit")
		b.waitFor(id+" answered", result(id)+`.dataset.status !== undefined`, 2*time.Minute)
		if got := eval[string](b, result(id)+`.dataset.status`); got != wantStatus {
			t.Errorf("%s: status %s, want %s; the page shows:\n%s", id, got, wantStatus, b.text("#"+id+" .tryit .result"))
		}
		return b.text("#" + id + " .tryit .result")
	}

	b.navigate(base + "/docs#op-get_whoami")
	b.waitFor("the document rendered", `document.body.dataset.rendered === "true"`, 2*time.Minute)
	b.waitFor("GET /whoami open", `document.querySelector("#op-get_whoami").open`, time.Minute)
	b.typeInto("#token", tok)
	if got := send("op-get_whoami", "200"); !strings.Contains(got, `"user": "`+devmode.UserName+`"`) {
		t.Errorf("GET /whoami shows:\n%s", got)
	}
	b.shot("docs-try-it")

	// A path parameter: a job that does not exist.
	b.open("#op-get_jobs_job_id")
	b.waitFor("GET /jobs/{job_id} open", `document.querySelector("#op-get_jobs_job_id").open`, time.Minute)
	b.typeInto("#try-get_jobs_job_id-path-job_id", "nosuchjob")
	if got := send("op-get_jobs_job_id", "404"); !strings.Contains(got, `"httpcode": 404`) || !strings.Contains(got, "curl -X GET") {
		t.Errorf("GET /jobs/nosuchjob shows:\n%s", got)
	}

	// A body: an empty job is refused with the validation details.
	b.open("#op-post_jobs")
	b.waitFor("POST /jobs open", `document.querySelector("#op-post_jobs").open`, time.Minute)
	b.typeInto("#op-post_jobs .tryit textarea", "{}")
	if got := send("op-post_jobs", "400"); !strings.Contains(got, "request_validation_detail") {
		t.Errorf("POST /jobs {} shows:\n%s", got)
	}

	// A query parameter chosen from its list.
	b.open("#op-get_jobs")
	b.waitFor("GET /jobs open", `document.querySelector("#op-get_jobs").open`, time.Minute)
	b.choose("#try-get_jobs-query-state", "complete")
	if got := send("op-get_jobs", "200"); !strings.Contains(got, `"jobs"`) || !strings.Contains(got, "state=complete") {
		t.Errorf("GET /jobs?state=complete shows:\n%s", got)
	}

	// Without a token: 401.
	b.clearInput("#token")
	b.open("#op-get_whoami")
	if got := send("op-get_whoami", "401"); !strings.Contains(got, `"httpcode": 401`) {
		t.Errorf("GET /whoami without a token shows:\n%s", got)
	}

	if strings.Contains(eval[string](b, `document.body.innerText`), tok) {
		t.Error("the token shows on the page")
	}
	for _, u := range b.d.requested() {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page requested %s, outside the service", u)
		}
	}
	b.checkClean(tok)
}
