// Package ui tests the coordinator's web dashboard (/ui/) in a real browser: Debian's
// Chromium, driven over the DevTools protocol (chromedp), against a dev site with real agents
// running real containers (runc). It signs in as people would (a pasted token, the keyboard
// only for one of them), registers an image as an admin, submits a 2-container job through
// the form and watches it to the end with live logs, cancels a job, reads an error job's
// message, and checks that a plain user sees neither another user's job nor the admin pages.
// Every page is checked for script errors and CSP violations, its accessibility tree for
// unnamed controls and its text for contrast. It needs root, runc and chromium
// (scripts/install-deps.sh installs them); CTS_UI_SCREENSHOTS=DIR writes the screenshots of
// docs/ui.md.
package ui

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// jobWait bounds a job's run on a loaded 2-core machine.
const jobWait = 3 * time.Minute

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// site is the dev site of the suite, with the test image pushed (not yet registered) and two
// input files.
type site struct {
	*testsite.Site
	image    string // the test image's reference, registered by the admin in the browser
	bobToken string // a second plain user
}

func startSite(t *testing.T) *site {
	t.Helper()
	s := testsite.Start(t, testsite.Options{Configure: func(c *app.Config) {
		// The suites pin their container runtime.
		if env, ok := c.Sites[0].PluginConfig["env"].(map[string]string); ok {
			env["CTS_AGENT_RUNTIME"] = "oci"
		}
	}})
	ref, _ := s.PushTool(t, testsite.Binary(t, "./test/ui/uitool"), "ui")
	s.PutInput(t, "ui/in/a.txt", []byte("alpha\n"))
	s.PutInput(t, "ui/in/b.txt", []byte("beta beta\n"))
	bob := token()
	s.Env.Stack.Auth.AddUser(auth2.User{Name: "cts_bob", Token: bob, CustomRoles: []string{"KBASE_STAFF"}})
	return &site{Site: s, image: ref, bobToken: bob}
}

// submit submits a job through the API and returns its ID.
func (s *site) submit(t *testing.T, tok string, containers int, inputs []string, args ...any) string {
	t.Helper()
	body := map[string]any{
		"cluster": devmode.SiteName, "image": s.image, "input_files": inputs, "num_containers": containers,
		"output_dir": devmode.DataBucket + "/ui/api-out/", "runtime": "PT10M", "memory": "100MB",
		"params": map[string]any{"args": args},
	}
	var out struct {
		JobID string `json:"job_id"`
	}
	if err := s.API.Do(t.Context(), "POST", "/jobs", tok, body, &out); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return out.JobID
}

func (s *site) job(t *testing.T, id string) map[string]any {
	t.Helper()
	var j map[string]any
	if err := s.API.Do(t.Context(), "GET", "/jobs/"+id, s.Demo.UserToken, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// signIn pastes a token into the sign-in form and waits for the signed-in header.
func (b *browser) signIn(tok, user string) {
	b.t.Helper()
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
	b.typeInto("#token", tok+"\r")
	b.waitFor("signed in as "+user, fmt.Sprintf(`(document.querySelector("[data-testid=user]") || {}).textContent === %s`, js(user)), time.Minute)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.clickButton("Sign out", "header")
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
	if n := eval[int](b, `sessionStorage.length + localStorage.length`); n != 0 {
		b.t.Errorf("after sign-out the browser still stores %d items", n)
	}
}

// clearInput empties an input as a user selecting all and deleting would.
func (b *browser) clearInput(sel string) {
	b.t.Helper()
	eval[chromedp.Void](b, fmt.Sprintf(`(() => { const el = document.querySelector(%s); el.value = "";
		el.dispatchEvent(new Event("input", {bubbles: true})); })()`, js(sel)))
}

func TestDashboard(t *testing.T) {
	s := startSite(t)
	b := newBrowser(t)
	tokens := []string{s.Demo.UserToken, s.Demo.AdminToken, s.bobToken}

	// The page and its headers, as any browser gets them.
	resp, err := http.Get(s.Env.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("/ui/ Content-Security-Policy %q", csp)
	}
	b.do("load the dashboard", chromedp.Navigate(s.Env.URL+"/ui/"))
	b.waitFor("the sign-in form", `!!document.querySelector("#token")`, time.Minute)
	b.shot("signin")
	b.checkAccessibility("sign-in")

	t.Run("a bad token is refused with the service's message", func(t *testing.T) {
		b.t = t
		b.typeInto("#token", "NOT-A-TOKEN\r")
		b.waitFor("the refusal", `(document.querySelector("[role=alert]") || {textContent: ""}).textContent.length > 0`, time.Minute)
		if n := eval[int](b, `sessionStorage.length`); n != 0 {
			t.Errorf("a refused token was stored")
		}
		b.clearInput("#token")
	})

	t.Run("an admin registers an image and manages sites", func(t *testing.T) {
		b.t = t
		b.signIn(s.Demo.AdminToken, devmode.AdminName)
		b.open("#/admin/images")
		b.waitFor("the register form", `!!document.querySelector("#i-ref")`, time.Minute)
		b.typeInto("#i-ref", s.image)
		b.typeInto("#i-notes", "Prints numbered lines, then a .lines.txt per input file.")
		b.clickButton("Register", "form.register")
		b.waitFor("the registered image", fmt.Sprintf(`!!document.querySelector('[data-image=%s]')`, js(s.image)), time.Minute)
		if got := b.text("form.register .notice"); !strings.HasPrefix(got, "Registered ") {
			t.Errorf("register notice %q", got)
		}
		b.shot("admin-images")
		b.checkAccessibility("images")

		b.open("#/admin/sites")
		row := fmt.Sprintf(`document.querySelector('[data-site=%s]')`, js(devmode.SiteName))
		b.waitFor("the site row", "!!"+row, time.Minute)
		b.clickButton("Deactivate", "[data-site="+devmode.SiteName+"]")
		b.clickButton("Yes, deactivate", "[data-site="+devmode.SiteName+"]")
		b.waitFor("the site inactive", row+`.children[5].textContent === "no"`, time.Minute)
		b.clickButton("Activate", "[data-site="+devmode.SiteName+"]")
		b.waitFor("the site active", row+`.children[5].textContent === "yes"`, time.Minute)
		b.checkAccessibility("sites")

		b.open("#/admin/refdata")
		b.waitFor("the reference data page", `document.body.innerText.includes("No reference data is registered.")`, time.Minute)
		b.signOut()
	})

	// Bob's job: the plain user below must not see it.
	bobJob := s.submit(t, s.bobToken, 1, []string{"cts-data/ui/in/a.txt"}, "lines", "1", "10")

	var formJob string
	t.Run("a user signs in with the keyboard only", func(t *testing.T) {
		b.t = t
		eval[chromedp.Void](b, `document.activeElement && document.activeElement.blur()`)
		b.do("tab to the token field", chromedp.KeyEvent(kb.Tab))
		if id := eval[string](b, `document.activeElement.id`); id != "token" {
			t.Fatalf("the first Tab focused %q, want the token field", id)
		}
		b.do("type the token and press Enter", chromedp.KeyEvent(s.Demo.UserToken), chromedp.KeyEvent(kb.Enter))
		b.waitFor("signed in", fmt.Sprintf(`(document.querySelector("[data-testid=user]") || {}).textContent === %s`, js(devmode.UserName)), time.Minute)
		// The page focuses its title; Shift+Tab from there goes back through the header:
		// sign-out, the navigation and the skip link, each with a visible focus indicator.
		b.waitFor("the jobs page title focused", `document.activeElement && document.activeElement.tagName === "H1"`, time.Minute)
		var seen []string
		for range 4 {
			b.do("shift+tab", chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)))
			seen = append(seen, eval[string](b, `(() => { const e = document.activeElement;
				const s = getComputedStyle(e); return (s.outlineStyle === "none" ? "NO-OUTLINE:" : "") + e.textContent.trim(); })()`))
		}
		if got, want := strings.Join(seen, "|"), "Sign out|Submit|Jobs|Skip to content"; got != want {
			t.Errorf("Shift+Tab from the title went through %q, want %q", got, want)
		}
		// The skip link (focused now) takes the keyboard to the content.
		b.do("follow the skip link", chromedp.KeyEvent(kb.Enter))
		if id := eval[string](b, `document.activeElement.id`); id != "main" {
			t.Errorf("the skip link focused %q, want the main content", id)
		}
	})

	t.Run("submit a 2-container job through the form", func(t *testing.T) {
		b.t = t
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
		formJob = strings.TrimPrefix(eval[string](b, `location.hash`), "#/jobs/")
	})
	if formJob == "" {
		t.Fatal("no job was submitted")
	}

	t.Run("watch it to the end with live logs", func(t *testing.T) {
		b.t = t
		// Live: lines arrive while the job runs.
		b.waitFor("live lines", `document.querySelector("[data-testid=log]").textContent.includes("line 3 of 40") &&
			document.querySelector("[data-testid=log-status]").textContent.startsWith("Following live")`, jobWait)
		if st := s.job(t, formJob)["state"]; st == "complete" {
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
		j := s.job(t, formJob)
		outs := j["outputs"].([]any)
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
	})

	t.Run("cancel a running job", func(t *testing.T) {
		b.t = t
		id := s.submit(t, s.Demo.UserToken, 1, []string{"cts-data/ui/in/a.txt"}, "sleep", "300")
		b.open("#/jobs/" + id)
		b.clickButton("Cancel job", ".state-line")
		b.clickButton("Yes, cancel job", ".state-line")
		b.waitFor("the job canceled", `!!document.querySelector(".state-line [data-state=canceled]")`, jobWait)
		if st := s.job(t, id)["state"]; st != "canceled" {
			t.Errorf("the API says %v", st)
		}
	})

	t.Run("an error job shows its message", func(t *testing.T) {
		b.t = t
		id := s.submit(t, s.Demo.UserToken, 1, []string{"cts-data/ui/in/b.txt"}, "fail", "3", "not_a_genome")
		b.open("#/jobs/" + id)
		b.waitFor("the error", `!!document.querySelector(".joberror")`, jobWait)
		msg, _ := s.job(t, id)["error"].(string)
		if msg == "" || !strings.Contains(b.text(".joberror"), msg) {
			t.Errorf("the page shows %q, the API's error is %q", b.text(".joberror"), msg)
		}
		b.waitFor("the exit code", `document.querySelector("td.exit").textContent === "3"`, time.Minute)
		b.shot("job-error")
	})

	t.Run("the jobs list filters and pages", func(t *testing.T) {
		b.t = t
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
	})

	t.Run("a plain user sees neither another user's job nor the admin pages", func(t *testing.T) {
		b.t = t
		b.open("#/jobs/" + bobJob)
		b.waitFor("the refusal", `!!document.querySelector("main [role=alert]")`, time.Minute)
		if strings.Contains(b.text("main"), "Summary") {
			t.Errorf("bob's job is shown: %s", b.text("main"))
		}
		var apiErr *demo.APIError
		err := s.API.Do(t.Context(), "GET", "/jobs/"+bobJob, s.Demo.UserToken, nil, nil)
		if !errors.As(err, &apiErr) {
			t.Fatalf("the API showed bob's job: %v", err)
		}
		if msg, _ := apiErr.Body["error"].(map[string]any)["message"].(string); !strings.Contains(b.text("main [role=alert]"), msg) {
			t.Errorf("the page says %q, the API %q", b.text("main [role=alert]"), msg)
		}
		for _, p := range []string{"#/admin/images", "#/admin/sites", "#/admin/refdata", "#/admin/jobs/" + bobJob} {
			b.open(p)
			b.waitFor("the refusal of "+p, `document.querySelector("h1").textContent === "Administrators only"`, time.Minute)
		}
		b.signOut()
	})

	t.Run("an admin's job view", func(t *testing.T) {
		b.t = t
		b.signIn(s.Demo.AdminToken, devmode.AdminName)
		b.open("#/admin/jobs/" + formJob)
		b.waitFor("the launcher details", `document.body.innerText.includes("Handle")`, time.Minute)
		b.clickButton("Show runner status", "")
		b.waitFor("the runner status", `!!document.querySelector("td pre.json")`, time.Minute)
		b.typeInto("#m-key", "reviewed")
		b.typeInto("#m-value", "yes")
		b.clickButton("Set", "")
		b.waitFor("the metadata", `document.body.innerText.includes("reviewed")`, time.Minute)
		b.shot("admin-job")
		b.checkAccessibility("admin job")
		b.signOut()
	})

	b.t = t
	b.checkClean(tokens...)

	t.Run("the page's policy refuses an injected script, and the check sees it", func(t *testing.T) {
		b.t = t
		ran := eval[bool](b, `(() => { try { const s = document.createElement("script");
			s.textContent = "window.__injected = true"; document.body.append(s); } catch (e) {}
			const i = document.createElement("img"); i.src = "http://127.0.0.2:9/x.png"; document.body.append(i);
			return window.__injected === true; })()`)
		if ran {
			t.Error("an injected inline script ran")
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			b.mu.Lock()
			n := len(b.problems)
			b.problems = nil
			b.mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no violation was reported: the page checks above could not have failed")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// No cookie ever held anything.
	if c := eval[string](b, `document.cookie`); c != "" {
		t.Errorf("cookies %q", c)
	}
	if regexp.MustCompile(`[0-9A-F]{32}`).MatchString(eval[string](b, `location.href`)) {
		t.Errorf("a token-like value is in the URL")
	}
}
