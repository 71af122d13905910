package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browser is one headless Chromium tab driven over the DevTools protocol. It records what a
// page must never do: throw, log an error, break its Content-Security-Policy, or put a token
// in a URL.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
	urls     []string
}

// chromium finds Debian's chromium; tests skip without it (scripts/install-deps.sh installs
// it, so CI never skips).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (scripts/install-deps.sh installs it)")
	return ""
}

// newBrowser starts Chromium with the flags this machine needs: headless, no sandbox as root,
// and nothing that reaches out to the network by itself.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		b.problems = append(b.problems, "exception: "+msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.problems = append(b.problems, "console.error: "+strings.Join(parts, " "))
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		// The browser's own log: CSP violations and failed loads are errors here. A 4xx
		// answer the page asked for on purpose (a refusal it shows) is logged as a
		// network error too; those are the page's business and checked by the tests.
		if e.Level == log.EntryLevelError && e.Source != log.EntrySourceNetwork {
			b.problems = append(b.problems, fmt.Sprintf("browser log (%s): %s %s", e.Source, e.Text, e.URL))
		}
	case *network.EventRequestWillBeSent:
		b.urls = append(b.urls, ev.Request.URL)
	}
}

// checkClean fails the test for every problem recorded so far, and for a token in any URL.
func (b *browser) checkClean(tokens ...string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("page problem: %s", p)
	}
	b.problems = nil
	for _, u := range b.urls {
		for _, tok := range tokens {
			if strings.Contains(u, tok) {
				b.t.Errorf("a token is in the URL %s", u)
			}
		}
	}
}

// do runs actions, failing the test on error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is true; the deadline is generous (the
// machine is shared), and a timeout says what was awaited and shows the page's text.
func (b *browser) waitFor(what, predicate string, within time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, within+10*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(within),
		chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		b.shot("timeout-" + what)
		b.t.Fatalf("waiting for %s: %v\npage text:\n%s", what, err, text)
	}
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
	b.do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// choose selects an option of a select element by value and tells the page.
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	pred := fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el) return false;
		if (![...el.options].some(o => o.value === %s)) return false;
		el.value = %s; el.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`, js(sel), js(value), js(value))
	b.waitFor("option "+value+" of "+sel, pred, 30*time.Second)
}

// open navigates to a dashboard route (#/...) of the page already loaded.
func (b *browser) open(route string) {
	b.t.Helper()
	eval[chromedp.Void](b, "location.hash = "+js(route))
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
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// checkAccessibility reads the page's accessibility tree as assistive technology sees it and
// fails for every interactive element without an accessible name; then it checks the colour
// contrast of every visible text against its background (WCAG AA: 4.5:1, 3:1 for large text).
func (b *browser) checkAccessibility(page string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	tree, err := chromedp.Call(ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		b.t.Fatalf("%s: accessibility tree: %v", page, err)
	}
	interactive := map[string]bool{"button": true, "textbox": true, "combobox": true, "checkbox": true, "link": true,
		"listbox": true, "radio": true, "searchbox": true, "spinbutton": true, "slider": true, "progressbar": true}
	named := 0
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		var role, name string
		_ = json.Unmarshal(n.Role.Value, &role)
		if !interactive[role] {
			continue
		}
		if n.Name != nil {
			_ = json.Unmarshal(n.Name.Value, &name)
		}
		if strings.TrimSpace(name) == "" {
			b.t.Errorf("%s: a %s has no accessible name (backend node %d)", page, role, n.BackendDOMNodeID)
			continue
		}
		named++
	}
	if named == 0 {
		b.t.Errorf("%s: the accessibility tree has no named controls at all", page)
	}
	bad := eval[[]string](b, contrastScript)
	for _, v := range bad {
		b.t.Errorf("%s: contrast: %s", page, v)
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
