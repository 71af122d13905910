// Package ui tests the coordinator's web dashboard (/ui/) in real browsers, against a dev site
// with real agents running real containers (runc): Debian's Chromium, driven over the DevTools
// protocol (chromedp), and Debian's Firefox ESR, driven over WebDriver BiDi (its native
// protocol; no geckodriver).
//
// Both walk the user's scenario (scenario_test.go): sign in (the keyboard only), submit a
// 2-container job through the form after its preview, watch it to the end with live logs,
// cancel a job, read an error job's message, filter the jobs list, sign out. Chromium also
// walks the admin pages (register and delete an image, deactivate a site, recover reference
// data whose staging failed, a job's admin view), checks that a plain user sees neither
// another user's job nor the admin pages, and pages through 170 jobs, many changed in the
// same millisecond. Every page is checked for script errors and CSP violations; Chromium
// also reads its accessibility tree for unnamed controls, and both check text contrast.
//
// It needs root, runc, chromium and firefox-esr (scripts/install-deps.sh installs them);
// CTS_UI_SCREENSHOTS=DIR writes the screenshots of docs/ui.md.
package ui

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

func TestDashboard(t *testing.T) {
	s := startSite(t)
	b := &browser{t: t, d: startChromium(t)}
	t.Logf("browser: %s", b.d.name())
	carol := token() // a user with a long history, for paging
	s.Env.Stack.Auth.AddUser(auth2.User{Name: "cts_carol", Token: carol, CustomRoles: []string{"KBASE_STAFF"}})
	tokens := []string{s.Demo.UserToken, s.Demo.AdminToken, s.bobToken, carol}
	oldImage, _ := s.PushTool(t, testsite.Binary(t, "./test/ui/uitool"), "ui-old")
	if err := s.API.Do(t.Context(), "POST", "/admin/images/"+oldImage, s.Demo.AdminToken, nil, nil); err != nil {
		t.Fatalf("register %s: %v", oldImage, err)
	}
	refdataID, repairRefdata := s.brokenRefdata(t)

	loadDashboard(t, b, s)
	b.shot("signin")
	b.checkAccessibility("sign-in")

	t.Run("a bad token is refused with the service's message", func(t *testing.T) {
		refusedToken(t, b.in(t))
	})

	t.Run("an admin registers an image and manages sites", func(t *testing.T) {
		b := b.in(t)
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
	})

	t.Run("an admin deletes an image", func(t *testing.T) {
		b := b.in(t)
		b.open("#/admin/images")
		row := fmt.Sprintf(`[data-image=%s]`, js(oldImage))
		b.waitFor("the old image listed", "!!document.querySelector("+js(row)+")", time.Minute)
		b.clickButton("Delete", row)
		if got := b.text(row + " .confirm"); !strings.Contains(got, "Delete "+oldImage+"?") {
			t.Errorf("the confirmation says %q", got)
		}
		b.clickButton("Yes, delete", row)
		b.waitFor("the old image gone", "!document.querySelector("+js(row)+")", time.Minute)
		if got := b.text("main .notice"); got != "Deleted "+oldImage+"." {
			t.Errorf("delete notice %q", got)
		}
		if !eval[bool](b, fmt.Sprintf(`!!document.querySelector('[data-image=%s]')`, js(s.image))) {
			t.Errorf("the other image went too")
		}
		var apiErr *demo.APIError
		if err := s.API.Do(t.Context(), "GET", "/images/"+oldImage, "", nil, nil); !errors.As(err, &apiErr) {
			t.Errorf("the API still has %s: %v", oldImage, err)
		}
	})

	t.Run("an admin recovers reference data whose staging failed", func(t *testing.T) {
		b := b.in(t)
		st := s.waitRefdata(t, refdataID, "error")
		sec := fmt.Sprintf(`[data-refdata=%s]`, js(refdataID))
		b.open("#/admin/refdata")
		b.waitFor("the failed staging", "!!document.querySelector("+js(sec+" [data-state=error]")+")", time.Minute)
		if msg, _ := st["error"].(string); msg == "" || !strings.Contains(b.text(sec), msg) {
			t.Errorf("the page shows %q, the API's error is %q", b.text(sec), msg)
		}
		// The admin's error says what went wrong where.
		adminErr, _ := st["admin_error"].(string)
		if !strings.Contains(adminErr, "is not a directory") {
			t.Errorf("the API's admin error %q does not name the missing folder", adminErr)
		}
		b.clickButton("Show admin errors", sec)
		b.waitFor("the admin error", "document.querySelector("+js(sec)+").innerText.includes("+js(adminErr)+")", time.Minute)
		b.shot("admin-refdata")
		b.checkAccessibility("refdata")
		// The folder is back: recover stages it again, and this time it completes.
		repairRefdata()
		b.clickButton("Recover", sec)
		b.clickButton("Yes, recover", sec)
		b.waitFor("the recovery notice", `document.querySelector("main .notice").textContent === `+js("Staging "+refdataID+" again at "+devmode.SiteName+"."), time.Minute)
		s.waitRefdata(t, refdataID, "complete")
		// The page shows what it loads: a reload shows the staging complete.
		b.reload()
		b.waitFor("the staging complete", "!!document.querySelector("+js(sec+" [data-state=complete]")+")", time.Minute)
		b.signOut()
	})

	// Bob's job: the plain user below must not see it.
	bobJob := s.submit(t, s.bobToken, 1, []string{"cts-data/ui/in/a.txt"}, "lines", "1", "10")
	// The error job fails on its own time while the form's job runs.
	errorJob := s.submit(t, s.Demo.UserToken, 1, []string{"cts-data/ui/in/b.txt"}, "fail", "3", "not_a_genome")

	t.Run("a user signs in with the keyboard only", func(t *testing.T) {
		signInWithKeyboard(t, b.in(t), s)
	})

	var formJob string
	t.Run("submit a 2-container job through the form", func(t *testing.T) {
		formJob = submitThroughForm(t, b.in(t), s)
	})
	if formJob == "" {
		t.Fatal("no job was submitted")
	}

	t.Run("watch it to the end with live logs", func(t *testing.T) {
		watchToEnd(t, b.in(t), s, formJob)
	})

	t.Run("cancel a running job", func(t *testing.T) {
		cancelRunning(t, b.in(t), s)
	})

	t.Run("an error job shows its message", func(t *testing.T) {
		errorJobMessage(t, b.in(t), s, errorJob)
	})

	t.Run("the jobs list filters", func(t *testing.T) {
		filterJobs(t, b.in(t), s, formJob, bobJob)
	})

	t.Run("a plain user sees neither another user's job nor the admin pages", func(t *testing.T) {
		b := b.in(t)
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
		b := b.in(t)
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

	t.Run("paging through 170 jobs, many changed in the same millisecond", func(t *testing.T) {
		pageThrough(t, b.in(t), s, formJob, carol)
	})

	b.checkClean(tokens...)

	t.Run("the checks see a script error and a console error", func(t *testing.T) {
		checksSee(t, b.in(t))
	})

	t.Run("the page's policy refuses an injected script, and the check sees it", func(t *testing.T) {
		policyRefusesInjection(t, b.in(t))
	})
	nothingKept(t, b)
}

// pageThrough seeds carol's history (copies of job template), a millisecond apart but for
// two groups changed in one millisecond: 81 jobs (more than a page: they span three pages)
// and 5 across the boundary of the third and fourth pages. Walking the pages with Older
// shows each job exactly once, newest first, 50 to a page; Newer goes back to the same pages.
func pageThrough(t *testing.T, b *browser, s *site, template, carol string) {
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Hour)
	var times []time.Time
	at := t0
	step := func(n int, d time.Duration) {
		for range n {
			at = at.Add(-d)
			times = append(times, at)
		}
	}
	// A millisecond apart, but for the ties, so that each page's "before" (the last job's
	// time plus a millisecond) meets a job it must leave out.
	step(30, time.Millisecond)
	step(1, time.Millisecond)
	step(80, 0) // one millisecond: positions 31-111
	step(35, time.Millisecond)
	step(1, time.Millisecond)
	step(4, 0) // one millisecond: positions 147-151
	step(19, time.Millisecond)
	ids := s.seedJobs(t, template, "cts_carol", times)

	b.signIn(carol, "cts_carol")
	b.open("#/jobs")
	var seen []string
	var pages [][]string
	for page := 1; ; page++ {
		b.waitFor(fmt.Sprintf("page %d", page), fmt.Sprintf(`document.querySelector(".pager span").textContent === "Page %d" &&
			document.querySelectorAll("table.jobs tbody tr").length > 0`, page), time.Minute)
		rows := eval[[]string](b, `[...document.querySelectorAll("table.jobs tbody tr")].map(r => r.dataset.job)`)
		caption := b.text("table.jobs caption")
		if want := fmt.Sprintf("Jobs %d–%d, most recently changed first", len(seen)+1, len(seen)+len(rows)); caption != want {
			t.Errorf("page %d: caption %q, want %q", page, caption, want)
		}
		pages = append(pages, rows)
		seen = append(seen, rows...)
		more := eval[bool](b, `(() => { const o = [...document.querySelectorAll(".pager button")].find(e => e.textContent.includes("Older"));
			return !!o && !o.disabled; })()`)
		if !more {
			break
		}
		if page > 10 {
			t.Fatalf("still more pages after %d jobs", len(seen))
		}
		first := rows[0]
		b.clickButton("Older →", ".pager")
		b.waitFor(fmt.Sprintf("page %d replaced", page), fmt.Sprintf(`(document.querySelector("table.jobs tbody tr") || {dataset: {}}).dataset.job !== %s`, js(first)), time.Minute)
	}
	var sizes []int
	for _, p := range pages {
		sizes = append(sizes, len(p))
	}
	if !slices.Equal(sizes, []int{50, 50, 50, 20}) {
		t.Errorf("page sizes %v, want [50 50 50 20]", sizes)
	}
	// Each job once; ties in any order, but never before a newer job.
	count := map[string]int{}
	for _, id := range seen {
		count[id]++
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("job %s shown %d times", id, count[id])
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("%d rows shown for %d jobs", len(seen), len(ids))
	}
	pos := map[string]int{}
	for i, id := range ids {
		pos[id] = i
	}
	for i := 1; i < len(seen); i++ {
		if p, q := pos[seen[i-1]], pos[seen[i]]; times[q].After(times[p]) {
			t.Errorf("row %d (%s) is newer than row %d (%s)", i+1, seen[i], i, seen[i-1])
		}
	}
	// Newer goes back through the same pages.
	for page := len(pages) - 1; page >= 1; page-- {
		b.clickButton("← Newer", ".pager")
		want := pages[page-1]
		b.waitFor(fmt.Sprintf("page %d again", page), fmt.Sprintf(`document.querySelector(".pager span").textContent === "Page %d" &&
			[...document.querySelectorAll("table.jobs tbody tr")].map(r => r.dataset.job).join() === %s`, page, js(strings.Join(want, ","))), time.Minute)
	}
	b.signOut()
}
