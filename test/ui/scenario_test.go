package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
)

// The user's scenario, the same steps and expectations in every browser (TestDashboard:
// Chromium, TestDashboardFirefox: Firefox). Each step is a function of the browser and the
// site; the suites call them in order, between their own browser-specific steps.

// loadDashboard checks the page's headers, as any browser gets them, loads the dashboard and
// waits for the sign-in form.
func loadDashboard(t *testing.T, b *browser, s *site) {
	t.Helper()
	resp, err := http.Get(s.Env.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("/ui/ Content-Security-Policy %q", csp)
	}
	b.navigate(s.Env.URL + "/ui/")
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
}

// signIn pastes a token into the sign-in form and waits for the signed-in header.
func (b *browser) signIn(tok, user string) {
	b.t.Helper()
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
	b.typeInto("#token", tok+"\r")
	b.waitFor("signed in as "+user, fmt.Sprintf(`(document.querySelector("[data-testid=user]") || {}).textContent === %s`, js(user)), time.Minute)
}

// signOut signs out and checks that the browser keeps nothing: the page asks for a token
// again, even once reloaded.
func (b *browser) signOut() {
	b.t.Helper()
	b.clickButton("Sign out", "header")
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
	if n := eval[int](b, `sessionStorage.length + localStorage.length`); n != 0 {
		b.t.Errorf("after sign-out the browser still stores %d items", n)
	}
	b.reload()
	b.waitFor("the sign-in form after a reload", `!!document.querySelector("#token")`, time.Minute)
	if eval[bool](b, `!!document.querySelector("[data-testid=user]")`) {
		b.t.Errorf("signed in again after sign-out and a reload")
	}
}

// refusedToken: a token the service does not know is refused with its message and never
// stored.
func refusedToken(t *testing.T, b *browser) {
	b.typeInto("#token", "NOT-A-TOKEN\r")
	b.waitFor("the refusal", `(document.querySelector("[role=alert]") || {textContent: ""}).textContent.length > 0`, time.Minute)
	if n := eval[int](b, `sessionStorage.length`); n != 0 {
		t.Errorf("a refused token was stored")
	}
	b.clearInput("#token")
}

// signInWithKeyboard signs the user in with the keyboard only, then walks back through the
// header with Shift+Tab: every stop has a visible focus indicator, and the skip link takes
// the keyboard to the content.
func signInWithKeyboard(t *testing.T, b *browser, s *site) {
	// A fresh page, as the user arrives: nothing has the focus, nor did anything before
	// (where a blurred element leaves the next Tab is up to each browser).
	b.navigate(s.Env.URL + "/ui/")
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
	b.press("\t")
	if id := eval[string](b, `document.activeElement.id`); id != "token" {
		t.Fatalf("the first Tab focused %q, want the token field", id)
	}
	b.press(s.Demo.UserToken + "\r")
	b.waitFor("signed in", fmt.Sprintf(`(document.querySelector("[data-testid=user]") || {}).textContent === %s`, js(devmode.UserName)), time.Minute)
	// The page focuses its title; Shift+Tab from there goes back through the header:
	// sign-out, the navigation and the skip link, each with a visible focus indicator.
	b.waitFor("the jobs page title focused", `document.activeElement && document.activeElement.tagName === "H1"`, time.Minute)
	var seen []string
	for range 4 {
		b.shiftTab()
		seen = append(seen, eval[string](b, `(() => { const e = document.activeElement;
			const s = getComputedStyle(e); return (s.outlineStyle === "none" ? "NO-OUTLINE:" : "") + e.textContent.trim(); })()`))
	}
	if got, want := strings.Join(seen, "|"), "Sign out|Submit|Jobs|Skip to content"; got != want {
		t.Errorf("Shift+Tab from the title went through %q, want %q", got, want)
	}
	// The skip link (focused now) takes the keyboard to the content.
	b.press("\r")
	if id := eval[string](b, `document.activeElement.id`); id != "main" {
		t.Errorf("the skip link focused %q, want the main content", id)
	}
}

// submitThroughForm submits a 2-container job through the form: the inputs picked from an
// S3 listing, a bad runtime first (the form shows the API's own validation message), then
// the preview of both containers' argument lines; it returns the job's ID.
func submitThroughForm(t *testing.T, b *browser, s *site) string {
	b.open("#/submit")
	b.choose("#s-image", s.image)
	b.typeInto("#s-prefix", "cts-data/ui/in/")
	b.clickButton("List", "fieldset.picker")
	b.waitFor("the two input files listed", `document.querySelectorAll(".listing .files li").length === 2`, time.Minute)
	b.clickButton("Add all 2 files listed", "fieldset.picker")
	b.waitFor("two inputs chosen", `document.querySelectorAll("ol.chosen li").length === 2`, time.Minute)
	b.typeInto("#s-out", "cts-data/ui/out/")
	b.clearInput("#s-n")
	b.typeInto("#s-n", "2")
	b.typeInto("#s-args", "lines\n40\n500\n")
	b.clickButton("Add input files", "")
	b.clearInput("#s-rt")
	b.typeInto("#s-rt", "forever")

	// A bad runtime: the form shows the API's own validation message.
	sent := b.text("[data-testid=job-json]")
	if !strings.Contains(sent, `"num_containers": 2`) || !strings.Contains(sent, `"input_files_format": "space_separated_list"`) {
		t.Fatalf("the JSON preview:\n%s", sent)
	}
	var apiErr *demo.APIError
	if err := s.API.Do(t.Context(), "POST", "/jobs", s.Demo.UserToken, json.RawMessage(sent), nil); !errors.As(err, &apiErr) {
		t.Fatalf("the API took the bad job: %v", err)
	}
	details, _ := apiErr.Body["error"].(map[string]any)["request_validation_detail"].([]any)
	if len(details) == 0 {
		t.Fatalf("API error %v", apiErr.Body)
	}
	b.clickButton("Check", "")
	b.waitFor("the validation message", `!!document.querySelector("form [role=alert]")`, time.Minute)
	shown := b.text("form [role=alert]")
	for _, d := range details {
		if msg := d.(map[string]any)["msg"].(string); !strings.Contains(shown, msg) {
			t.Errorf("the form shows %q, not the API's message %q", shown, msg)
		}
	}

	b.clearInput("#s-rt")
	b.typeInto("#s-rt", "PT10M")
	b.clickButton("Check", "")
	b.waitFor("the preview of both containers", `document.querySelectorAll("[data-testid=preview] .preview").length === 2`, time.Minute)
	cmds := eval[[]string](b, `[...document.querySelectorAll("[data-testid=preview] pre.cmd")].map(e => e.textContent)`)
	if len(cmds) != 2 || cmds[0] != "/usr/bin/testtool lines 40 500 /input_files/a.txt" || cmds[1] != "/usr/bin/testtool lines 40 500 /input_files/b.txt" {
		t.Errorf("argument lines %q", cmds)
	}
	b.shot("submit")
	b.checkAccessibility("submit")

	b.clickButton("Submit job", "")
	b.waitFor("the job page", `location.hash.startsWith("#/jobs/") && !!document.querySelector(".state-line")`, time.Minute)
	return strings.TrimPrefix(eval[string](b, `location.hash`), "#/jobs/")
}

// watchToEnd follows the job's live log (pause holds lines back, resume shows them) to its
// completion, then checks the stored log, the exit codes, the outputs' CRCs and `cts cp`
// lines against the API, and each container's stderr.
func watchToEnd(t *testing.T, b *browser, s *site, id string) {
	// Live: lines arrive while the job runs.
	b.waitFor("live lines", `document.querySelector("[data-testid=log]").textContent.includes("line 3 of 40") &&
		document.querySelector("[data-testid=log-status]").textContent.startsWith("Following live")`, jobWait)
	if st := s.job(t, id)["state"]; st == "complete" {
		t.Fatalf("the job completed before its live lines were seen")
	}
	// Pause holds new lines back; resume shows them.
	b.clickButton("Pause", ".logbar")
	n := eval[int](b, `document.querySelector("[data-testid=log]").textContent.split("\n").length`)
	b.waitFor("lines held while paused", `/new lines held/.test(document.querySelector("[data-testid=log-status]").textContent)`, time.Minute)
	if m := eval[int](b, `document.querySelector("[data-testid=log]").textContent.split("\n").length`); m != n {
		t.Errorf("the paused log grew from %d to %d lines", n, m)
	}
	b.clickButton("Resume", ".logbar")
	b.waitFor("the held lines shown", fmt.Sprintf(`document.querySelector("[data-testid=log]").textContent.split("\n").length > %d`, n), time.Minute)
	b.shot("job-running")

	b.waitFor("the job complete", `!!document.querySelector(".state-line [data-state=complete]")`, jobWait)
	b.waitFor("the stored log", `document.querySelector("[data-testid=log]").textContent.includes("line 40 of 40") &&
		document.querySelector("[data-testid=log-status]").textContent.startsWith("Stored log")`, time.Minute)
	b.waitFor("both exit codes", `[...document.querySelectorAll("td.exit")].map(e => e.textContent).join() === "0,0"`, time.Minute)
	b.waitFor("the outputs", `document.querySelectorAll("table.outputs tbody tr").length === 2`, time.Minute)
	outs, _ := s.job(t, id)["outputs"].([]any)
	if len(outs) != 2 {
		t.Fatalf("the API lists outputs %v", outs)
	}
	for _, o := range outs {
		o := o.(map[string]any)
		file, crc := o["file"].(string), o["crc64nvme"].(string)
		row := fmt.Sprintf(`document.querySelector('[data-output=%s]')`, js(file))
		if got := eval[string](b, row+`.querySelector(".crc").textContent`); got != crc {
			t.Errorf("output %s shows CRC %q, the API %q", file, got, crc)
		}
		name := file[strings.LastIndex(file, "/")+1:]
		if got := eval[string](b, row+`.querySelector("input").value`); got != "cts cp "+file+" ./"+name {
			t.Errorf("output %s copy line %q", file, got)
		}
	}
	// stderr of container 1.
	b.choose("#log-container", "1")
	b.choose("#log-stream", "stderr")
	b.waitFor("container 1's stderr", `document.querySelector("[data-testid=log]").textContent.includes("done: 1 files")`, time.Minute)
	b.choose("#log-stream", "stdout")
	b.choose("#log-container", "0")
	b.waitFor("container 0's stdout", `document.querySelector("[data-testid=log]").textContent.includes("line 40 of 40")`, time.Minute)
	b.shot("job")
	b.checkAccessibility("job")
}

// cancelRunning cancels a running job from its page, confirming in place.
func cancelRunning(t *testing.T, b *browser, s *site) {
	id := s.submit(t, s.Demo.UserToken, 1, []string{"cts-data/ui/in/a.txt"}, "sleep", "300")
	b.open("#/jobs/" + id)
	b.clickButton("Cancel job", ".state-line")
	b.clickButton("Yes, cancel job", ".state-line")
	b.waitFor("the job canceled", `!!document.querySelector(".state-line [data-state=canceled]")`, jobWait)
	if st := s.job(t, id)["state"]; st != "canceled" {
		t.Errorf("the API says %v", st)
	}
}

// errorJobMessage shows the failed job id (submitted earlier: it fails on its own time) and
// checks its message and exit code against the API.
func errorJobMessage(t *testing.T, b *browser, s *site, id string) {
	b.open("#/jobs/" + id)
	b.waitFor("the error", `!!document.querySelector(".joberror")`, jobWait)
	msg, _ := s.job(t, id)["error"].(string)
	if msg == "" || !strings.Contains(b.text(".joberror"), msg) {
		t.Errorf("the page shows %q, the API's error is %q", b.text(".joberror"), msg)
	}
	b.waitFor("the exit code", `document.querySelector("td.exit").textContent === "3"`, time.Minute)
	b.shot("job-error")
}

// filterJobs checks the user's list (the three jobs of the scenario, not bob's), the state
// filter of the form and the image filter of the URL.
func filterJobs(t *testing.T, b *browser, s *site, formJob, bobJob string) {
	b.open("#/jobs")
	b.waitFor("three jobs", `document.querySelectorAll("table.jobs tbody tr").length === 3`, time.Minute)
	if n := eval[int](b, fmt.Sprintf(`document.querySelectorAll('[data-job=%s]').length`, js(bobJob))); n != 0 {
		t.Errorf("the user's list shows bob's job")
	}
	b.choose("#f-state", "complete")
	b.clickButton("Apply filters", "form.filters")
	b.waitFor("the complete job only", fmt.Sprintf(`(() => { const r = document.querySelectorAll("table.jobs tbody tr");
		return r.length === 1 && r[0].dataset.job === %s; })()`, js(formJob)), time.Minute)
	b.open("#/jobs?image=" + s.image)
	b.waitFor("the image's jobs", `document.querySelectorAll("table.jobs tbody tr").length === 3`, time.Minute)
	b.open("#/jobs?image=docker.io/library/nothing")
	b.waitFor("no jobs", `document.body.innerText.includes("No jobs match.")`, time.Minute)
	b.open("#/jobs")
	b.waitFor("three jobs", `document.querySelectorAll("table.jobs tbody tr").length === 3`, time.Minute)
	b.shot("jobs")
	b.checkAccessibility("jobs")
}

// checksSee throws an uncaught exception and logs a console error in the page: the browser's
// checks report both, so the checks of every earlier step could have failed.
func checksSee(t *testing.T, b *browser) {
	b.run(`(setTimeout(() => { throw new Error("cts-probe-exception"); }, 0), console.error("cts-probe-console"))`)
	var seen []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen = append(seen, b.d.takeProblems()...)
		all := strings.Join(seen, "\n")
		if strings.Contains(all, "cts-probe-exception") && strings.Contains(all, "cts-probe-console") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reported %q, not both the exception and the console error", b.d.name(), seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// policyRefusesInjection injects an inline script and an image of another origin: the page's
// policy refuses both, and the browser's checks report the violation (so the checks of every
// earlier step could have failed).
func policyRefusesInjection(t *testing.T, b *browser) {
	ran := eval[bool](b, `(() => { try { const s = document.createElement("script");
		s.textContent = "window.__injected = true"; document.body.append(s); } catch (e) {}
		const i = document.createElement("img"); i.src = "http://127.0.0.2:9/x.png"; document.body.append(i);
		return window.__injected === true; })()`)
	if ran {
		t.Error("an injected inline script ran")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if seen := b.d.takeProblems(); len(seen) > 0 {
			t.Logf("%s reported: %s", b.d.name(), strings.Join(seen, "; "))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reported no violation: the page checks above could not have failed", b.d.name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nothingKept: no cookie ever held anything, and no token is in the page's address.
func nothingKept(t *testing.T, b *browser) {
	if c := eval[string](b, `document.cookie`); c != "" {
		t.Errorf("cookies %q", c)
	}
	if regexp.MustCompile(`[0-9A-F]{32}`).MatchString(eval[string](b, `location.href`)) {
		t.Errorf("a token-like value is in the URL")
	}
}
