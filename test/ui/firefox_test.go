package ui

import (
	"testing"
)

// TestDashboardFirefox walks the user's scenario of TestDashboard in Firefox (Debian's
// firefox-esr, driven over WebDriver BiDi): the same steps, the same expectations. The image
// is registered through the API (the admin pages are Chromium's part).
func TestDashboardFirefox(t *testing.T) {
	ff := launchFirefox(t) // it starts while the site does
	s := startSite(t)
	b := &browser{t: t, d: ff.open(t)}
	t.Logf("browser: %s", b.d.name())
	tokens := []string{s.Demo.UserToken, s.Demo.AdminToken, s.bobToken}
	if err := s.API.Do(t.Context(), "POST", "/admin/images/"+s.image, s.Demo.AdminToken, nil, nil); err != nil {
		t.Fatalf("register image: %v", err)
	}
	bobJob := s.submit(t, s.bobToken, 1, []string{"cts-data/ui/in/a.txt"}, "lines", "1", "10")
	errorJob := s.submit(t, s.Demo.UserToken, 1, []string{"cts-data/ui/in/b.txt"}, "fail", "3", "not_a_genome")

	loadDashboard(t, b, s)
	b.shot("signin")
	b.checkAccessibility("sign-in")

	t.Run("a bad token is refused with the service's message", func(t *testing.T) {
		refusedToken(t, b.in(t))
	})
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
	t.Run("sign-out forgets the token", func(t *testing.T) {
		b.in(t).signOut()
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
