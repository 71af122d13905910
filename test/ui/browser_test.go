package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// driver is one browser tab as the scenarios use it. chromiumTab (the DevTools protocol,
// chromedp) and firefoxTab (WebDriver BiDi) implement it; the scenarios only see browser.
type driver interface {
	// name is the browser and its version ("Firefox 153.8.0"), for messages.
	name() string
	// navigate loads url and returns once its load event fired.
	navigate(ctx context.Context, url string) error
	// eval evaluates a JavaScript expression in the page and returns its value as JSON
	// (nil when it is undefined); an exception is an error.
	eval(ctx context.Context, expr string) ([]byte, error)
	// typeInto focuses the element matching the CSS selector sel and types text with real
	// key events; "\r" and "\n" are Enter.
	typeInto(ctx context.Context, sel, text string) error
	// press types text with real key events into whatever has the focus; "\r" and "\n"
	// are Enter, "\t" is Tab.
	press(ctx context.Context, text string) error
	// shiftTab presses Shift+Tab.
	shiftTab(ctx context.Context) error
	// screenshot is a PNG of the whole page.
	screenshot(ctx context.Context) ([]byte, error)
	// takeProblems returns, and forgets, what the page did wrong since the last call:
	// uncaught exceptions, console errors, Content-Security-Policy violations.
	takeProblems() []string
	// requested returns every URL the page requested so far.
	requested() []string
}

// browser is what a scenario holds: a tab and the test it reports to. Its methods fail the
// test on error and wait generously (the machine is shared), showing the page's text and
// writing a screenshot (CTS_UI_SCREENSHOTS) when a wait times out.
type browser struct {
	t *testing.T
	d driver
}

// in returns b reporting to t (a subtest).
func (b *browser) in(t *testing.T) *browser { return &browser{t: t, d: b.d} }

// shotName prefixes screenshot names of browsers other than Chromium (whose screenshots are
// docs/ui.md's main pictures) with the browser's name.
func (b *browser) shotName(name string) string {
	if _, ok := b.d.(*firefoxTab); ok {
		return "firefox-" + name
	}
	return name
}

// checkClean fails the test for every problem recorded so far, and for a token in any URL
// requested.
func (b *browser) checkClean(tokens ...string) {
	b.t.Helper()
	for _, p := range b.d.takeProblems() {
		b.t.Errorf("%s: page problem: %s", b.d.name(), p)
	}
	for _, u := range b.d.requested() {
		for _, tok := range tokens {
			if strings.Contains(u, tok) {
				b.t.Errorf("%s: a token is in the URL %s", b.d.name(), u)
			}
		}
	}
}

// navigate loads url.
func (b *browser) navigate(url string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), 2*time.Minute)
	defer cancel()
	if err := b.d.navigate(ctx, url); err != nil {
		b.shot("failed-navigate")
		b.t.Fatalf("%s: load %s: %v", b.d.name(), url, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into T (T's zero value for
// undefined or null).
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), time.Minute)
	defer cancel()
	var v T
	raw, err := b.d.eval(ctx, expr)
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.d.name(), expr, err)
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &v); err != nil {
			b.t.Fatalf("%s: evaluate %s: decode %.200q: %v", b.d.name(), expr, raw, err)
		}
	}
	return v
}

// run evaluates a JavaScript expression for its effect.
func (b *browser) run(expr string) {
	b.t.Helper()
	eval[json.RawMessage](b, expr)
}

// waitFor polls a JavaScript predicate until it is true; the deadline is generous (the
// machine is shared), and a timeout says what was awaited and shows the page's text. An
// evaluation error (a page being replaced) is retried until the deadline.
func (b *browser) waitFor(what, predicate string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		ctx, cancel := context.WithTimeout(b.t.Context(), 30*time.Second)
		raw, err := b.d.eval(ctx, "!!("+predicate+"\n)")
		cancel()
		if err == nil && string(raw) == "true" {
			return
		}
		last = err
		if time.Now().After(deadline) || b.t.Context().Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	text, _ := b.d.eval(ctx, `document.body.innerText`)
	var body string
	_ = json.Unmarshal(text, &body)
	b.shot("timeout-" + strings.ReplaceAll(what, " ", "-"))
	msg := fmt.Sprintf("%s: waiting for %s: not within %s", b.d.name(), what, within)
	if last != nil {
		msg += fmt.Sprintf(" (last evaluation: %v)", last)
	}
	b.t.Fatalf("%s\npage text:\n%s", msg, body)
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// clickButton clicks the enabled button whose text is exactly text (the first one, or the
// first inside the element matching within, when given).
func (b *browser) clickButton(text, within string) {
	b.t.Helper()
	scope := "document"
	if within != "" {
		scope = "document.querySelector(" + js(within) + ")"
	}
	pred := fmt.Sprintf(`(() => { const s = %s; if (!s) return false;
		const el = [...s.querySelectorAll("button")].find(e => e.textContent.trim() === %s && !e.disabled);
		if (!el) return false; el.click(); return true; })()`, scope, js(text))
	b.waitFor("button "+text, pred, 30*time.Second)
}

// typeInto focuses an input and types text with real key events, as a user would.
func (b *browser) typeInto(sel, text string) {
	b.t.Helper()
	b.waitFor(sel, "!!document.querySelector("+js(sel)+")", time.Minute)
	ctx, cancel := context.WithTimeout(b.t.Context(), 2*time.Minute)
	defer cancel()
	if err := b.d.typeInto(ctx, sel, text); err != nil {
		b.shot("failed-type")
		b.t.Fatalf("%s: type into %s: %v", b.d.name(), sel, err)
	}
}

// press types keys into whatever has the focus ("\t" is Tab, "\r" Enter).
func (b *browser) press(keys string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), time.Minute)
	defer cancel()
	if err := b.d.press(ctx, keys); err != nil {
		b.t.Fatalf("%s: press %q: %v", b.d.name(), keys, err)
	}
}

// shiftTab presses Shift+Tab.
func (b *browser) shiftTab() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.t.Context(), time.Minute)
	defer cancel()
	if err := b.d.shiftTab(ctx); err != nil {
		b.t.Fatalf("%s: shift+tab: %v", b.d.name(), err)
	}
}

// choose selects an option of a select element by value and tells the page.
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	pred := fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el) return false;
		if (![...el.options].some(o => o.value === %s)) return false;
		el.value = %s; el.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`, js(sel), js(value), js(value))
	b.waitFor("option "+value+" of "+sel, pred, 30*time.Second)
}

// clearInput empties an input as a user selecting all and deleting would.
func (b *browser) clearInput(sel string) {
	b.t.Helper()
	b.run(fmt.Sprintf(`(() => { const el = document.querySelector(%s); el.value = "";
		el.dispatchEvent(new Event("input", {bubbles: true})); })()`, js(sel)))
}

// reload reloads the page and waits until the new document has replaced the old one.
func (b *browser) reload() {
	b.t.Helper()
	b.run(`(window.__ctsReloading = true, location.reload())`)
	b.waitFor("the page reloaded", `window.__ctsReloading === undefined && document.readyState === "complete"`, time.Minute)
}

// open navigates to a dashboard route (#/...) of the page already loaded.
func (b *browser) open(route string) {
	b.t.Helper()
	b.run("location.hash = " + js(route))
}

// text returns the innerText of the first element matching sel ("" when none).
func (b *browser) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(document.querySelector(%s) || {innerText: ""}).innerText`, js(sel)))
}

// shot writes a PNG of the whole page to CTS_UI_SCREENSHOTS/name.png when that variable is
// set (the screenshots of docs/ui.md, and a failing test's last page).
func (b *browser) shot(name string) {
	dir := os.Getenv("CTS_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	buf, err := b.d.screenshot(ctx)
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, b.shotName(name)+".png"), buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// axTree is the optional capability of reading the page's accessibility tree, as assistive
// technology sees it (Chromium's DevTools protocol has it; WebDriver BiDi does not).
type axTree interface {
	// unnamedControls lists the interactive elements without an accessible name and
	// counts those with one.
	unnamedControls(ctx context.Context) (unnamed []string, named int, err error)
}

// checkAccessibility fails for every interactive element without an accessible name (where
// the browser's driver can read the accessibility tree), then checks the colour contrast of
// every visible text against its background (WCAG AA: 4.5:1, 3:1 for large text).
func (b *browser) checkAccessibility(page string) {
	b.t.Helper()
	if ax, ok := b.d.(axTree); ok {
		ctx, cancel := context.WithTimeout(b.t.Context(), time.Minute)
		defer cancel()
		unnamed, named, err := ax.unnamedControls(ctx)
		if err != nil {
			b.t.Fatalf("%s: accessibility tree: %v", page, err)
		}
		for _, u := range unnamed {
			b.t.Errorf("%s: %s has no accessible name", page, u)
		}
		if named == 0 {
			b.t.Errorf("%s: the accessibility tree has no named controls at all", page)
		}
	}
	for _, v := range eval[[]string](b, contrastScript) {
		b.t.Errorf("%s (%s): contrast: %s", page, b.d.name(), v)
	}
}

// contrastScript lists the visible text whose contrast with its background is below WCAG AA.
const contrastScript = `(() => {
  const rgb = (s) => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(",").map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bg = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || seen.has(el) || !n.textContent.trim()) continue;
    seen.add(el);
    if (el.closest("button:disabled, option, [aria-hidden=true]")) continue;
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || cs.visibility === "hidden" || cs.display === "none" || r.right < 0) continue;
    const fg = rgb(cs.color), b = bg(el);
    const l1 = lum(fg), l2 = lum(b);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) out.push(ratio.toFixed(2) + " < " + need + ": " + JSON.stringify(n.textContent.trim().slice(0, 40)) + " (" + cs.color + " on " + JSON.stringify(b) + ")");
  }
  return out;
})()`
