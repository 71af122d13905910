package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/accessibility"
	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumTab is one headless Chromium tab driven over the DevTools protocol (chromedp). It
// records what a page must never do: throw, log an error, break its Content-Security-Policy;
// and every URL requested.
type chromiumTab struct {
	ctx     context.Context
	version string

	mu       sync.Mutex
	problems []string
	urls     []string
}

var (
	_ driver = (*chromiumTab)(nil)
	_ axTree = (*chromiumTab)(nil)
)

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

// startChromium starts Chromium with the flags this machine needs: headless, no sandbox as
// root, and nothing that reaches out to the network by itself. It is closed when t ends.
func startChromium(t *testing.T) *chromiumTab {
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
	c := &chromiumTab{ctx: ctx}
	if err := chromedp.Listen(ctx, c.record); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	v, err := chromedp.CallBrowser(ctx, cdpbrowser.GetVersion, cdp.Empty{})
	if err != nil {
		t.Fatalf("chromium version: %v", err)
	}
	c.version = strings.Replace(v.Product, "/", " ", 1) // "HeadlessChrome 1xx.0..."
	return c
}

func (c *chromiumTab) record(ev any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		c.problems = append(c.problems, "exception: "+msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			c.problems = append(c.problems, "console.error: "+strings.Join(parts, " "))
		}
	case *log.EventEntryAdded:
		e := ev.Entry
		// The browser's own log: CSP violations and failed loads are errors here. A 4xx
		// answer the page asked for on purpose (a refusal it shows) is logged as a
		// network error too; those are the page's business and checked by the tests.
		if e.Level == log.EntryLevelError && e.Source != log.EntrySourceNetwork {
			c.problems = append(c.problems, fmt.Sprintf("browser log (%s): %s %s", e.Source, e.Text, e.URL))
		}
	case *network.EventRequestWillBeSent:
		c.urls = append(c.urls, ev.Request.URL)
	}
}

func (c *chromiumTab) name() string { return c.version }

// run runs actions in the tab within ctx (a deadline of the caller).
func (c *chromiumTab) run(ctx context.Context, actions ...chromedp.Action[chromedp.Void]) error {
	tctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return chromedp.Do(tctx, actions...)
}

func (c *chromiumTab) navigate(ctx context.Context, url string) error {
	return c.run(ctx, chromedp.Navigate(url))
}

func (c *chromiumTab) eval(ctx context.Context, expr string) ([]byte, error) {
	tctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return chromedp.Run(tctx, chromedp.Evaluate[[]byte](expr))
}

func (c *chromiumTab) typeInto(ctx context.Context, sel, text string) error {
	return c.run(ctx, chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (c *chromiumTab) press(ctx context.Context, text string) error {
	var actions []chromedp.Action[chromedp.Void]
	for _, r := range text {
		switch r {
		case '\r', '\n':
			actions = append(actions, chromedp.KeyEvent(kb.Enter))
		case '\t':
			actions = append(actions, chromedp.KeyEvent(kb.Tab))
		default:
			actions = append(actions, chromedp.KeyEvent(string(r)))
		}
	}
	return c.run(ctx, actions...)
}

func (c *chromiumTab) shiftTab(ctx context.Context) error {
	return c.run(ctx, chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)))
}

func (c *chromiumTab) screenshot(ctx context.Context) ([]byte, error) {
	tctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return chromedp.Run(tctx, chromedp.FullScreenshot(100))
}

func (c *chromiumTab) takeProblems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.problems
	c.problems = nil
	return p
}

func (c *chromiumTab) requested() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.urls...)
}

// unnamedControls reads the page's accessibility tree as assistive technology sees it.
func (c *chromiumTab) unnamedControls(ctx context.Context) ([]string, int, error) {
	tctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	tree, err := chromedp.Call(tctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		return nil, 0, err
	}
	interactive := map[string]bool{"button": true, "textbox": true, "combobox": true, "checkbox": true, "link": true,
		"listbox": true, "radio": true, "searchbox": true, "spinbutton": true, "slider": true, "progressbar": true}
	var unnamed []string
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
			unnamed = append(unnamed, fmt.Sprintf("a %s (backend node %d)", role, n.BackendDOMNodeID))
			continue
		}
		named++
	}
	return unnamed, named, nil
}
