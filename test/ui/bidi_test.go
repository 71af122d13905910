package ui

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// This file drives Firefox over WebDriver BiDi, the W3C protocol Firefox speaks natively when
// started with --remote-debugging-port: no geckodriver. A bidiConn is the protocol (commands
// and their replies matched by id, events handed to one callback); firefoxTab is one tab of a
// headless Firefox with a fresh profile, implementing driver.

// bidiConn is one WebDriver BiDi websocket: call sends a command and waits for its reply;
// events go to onEvent, called from the reading goroutine.
type bidiConn struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)

	writeMu sync.Mutex

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan bidiReply
	err     error // why the connection ended; set once, then every call fails with it

	done chan struct{} // closed when the reader has stopped
}

type bidiReply struct {
	result json.RawMessage
	err    error
}

// bidiMessage is any message Firefox sends: a command's success or error, or an event.
type bidiMessage struct {
	Type    string          `json:"type"` // "success", "error" or "event"
	ID      *int64          `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// dialBiDi opens the BiDi session endpoint of a browser listening at wsURL
// ("ws://127.0.0.1:PORT"). No Origin header is sent: Firefox refuses origins it was not told
// to allow.
func dialBiDi(ctx context.Context, wsURL string, onEvent func(string, json.RawMessage)) (*bidiConn, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL+"/session", nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", wsURL, err)
	}
	c := &bidiConn{ws: ws, onEvent: onEvent, pending: map[int64]chan bidiReply{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *bidiConn) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(fmt.Errorf("bidi connection closed: %w", err))
			return
		}
		var m bidiMessage
		if err := json.Unmarshal(data, &m); err != nil {
			c.fail(fmt.Errorf("bidi: undecodable message %.200q: %w", data, err))
			return
		}
		switch {
		case m.Type == "event":
			if c.onEvent != nil {
				c.onEvent(m.Method, m.Params)
			}
		case m.ID != nil:
			c.mu.Lock()
			ch := c.pending[*m.ID]
			delete(c.pending, *m.ID)
			c.mu.Unlock()
			if ch == nil {
				continue // the caller gave up waiting
			}
			if m.Type == "error" {
				ch <- bidiReply{err: fmt.Errorf("%s: %s", m.Error, m.Message)}
			} else {
				ch <- bidiReply{result: m.Result}
			}
		}
	}
}

// fail ends every pending call with err.
func (c *bidiConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for id, ch := range c.pending {
		ch <- bidiReply{err: c.err}
		delete(c.pending, id)
	}
}

// call sends method with params and decodes the result into result (when not nil).
func (c *bidiConn) call(ctx context.Context, method string, params, result any) error {
	if params == nil {
		params = struct{}{}
	}
	ch := make(chan bidiReply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, c.err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	c.writeMu.Lock()
	err = c.ws.WriteMessage(websocket.TextMessage, msg)
	c.writeMu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("bidi write: %w", err))
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("%s: %w", method, r.err)
		}
		if result != nil {
			if err := json.Unmarshal(r.result, result); err != nil {
				return fmt.Errorf("%s: decode %.200q: %w", method, r.result, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// close closes the websocket and waits for the reader.
func (c *bidiConn) close() {
	_ = c.ws.Close()
	<-c.done
}

// firefox finds Debian's firefox-esr (or a firefox); tests skip without it
// (scripts/install-deps.sh installs it, so CI never skips).
func firefox(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"firefox-esr", "firefox"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("firefox is not installed (scripts/install-deps.sh installs firefox-esr)")
	return ""
}

// firefoxPrefs go into the fresh profile's user.js: nothing reaches out to the network by
// itself (Firefox's remote agent sets most of these too; the test does not rely on it).
const firefoxPrefs = `user_pref("app.update.disabledForTesting", true);
user_pref("app.normandy.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.page", 0);
user_pref("browser.newtabpage.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("media.gmp-manager.url", "");
user_pref("browser.region.network.url", "");
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("services.settings.server", "");
`

// listeningRE is the line Firefox prints on stderr once its BiDi server listens.
var listeningRE = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// firefoxTab is the one tab of a headless Firefox, driven over WebDriver BiDi. It records
// what the page must never do: a JavaScript error, a console error, a Content-Security-Policy
// violation (seen twice over: the browser's log, and a securitypolicyviolation listener
// installed before any page script), and every URL requested.
type firefoxTab struct {
	conn    *bidiConn
	context string // the tab's browsing context
	version string

	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	stderr *tailBuffer

	mu       sync.Mutex
	problems []string
	urls     []string
}

var _ driver = (*firefoxTab)(nil)

// launchFirefox starts a headless Firefox with a fresh profile and returns at once, so that
// it starts while the test prepares its site; open then connects. Firefox is stopped when t
// ends; if t failed, the end of its output is logged.
func launchFirefox(t *testing.T) *firefoxTab {
	t.Helper()
	bin := firefox(t)
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &firefoxTab{stderr: &tailBuffer{max: 64 << 10}, exited: make(chan struct{})}
	// Port 0: Firefox picks a free port and prints it. Its own process group, so that the
	// content processes it starts are stopped with it.
	f.cmd = exec.Command(bin, "--headless", "--no-remote", "--profile", profile, "--remote-debugging-port", "0")
	f.cmd.Env = append(os.Environ(), "HOME="+dir, "MOZ_HEADLESS=1", "MOZ_CRASHREPORTER_DISABLE=1")
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	f.cmd.Stdout, f.cmd.Stderr = f.stderr, f.stderr
	// Content processes inherit stderr: once Firefox has exited, stop waiting for them.
	f.cmd.WaitDelay = 5 * time.Second
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start firefox: %v", err)
	}
	go func() {
		_ = f.cmd.Wait()
		close(f.exited)
	}()
	t.Cleanup(func() {
		if f.conn != nil {
			endCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = f.conn.call(endCtx, "session.end", nil, nil)
			cancel()
			f.conn.close()
		}
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
			<-f.exited
		}
		// Content processes left in the group (the parent may exit first).
		_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("firefox stderr (end):\n%s", f.stderr.String())
		}
	})

	return f
}

// open waits for Firefox's BiDi server, opens a session in a new window, subscribes to the
// events the checks need and returns f.
func (f *firefoxTab) open(t *testing.T) *firefoxTab {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var wsURL string
	for wsURL == "" {
		if m := listeningRE.FindStringSubmatch(f.stderr.String()); m != nil {
			wsURL = m[1]
			break
		}
		select {
		case <-f.exited:
			t.Fatalf("firefox exited before listening:\n%s", f.stderr.String())
		case <-ctx.Done():
			t.Fatalf("firefox did not start its BiDi server within 2 minutes:\n%s", f.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}

	var err error
	if f.conn, err = dialBiDi(ctx, wsURL, f.event); err != nil {
		t.Fatal(err)
	}
	var session struct {
		Capabilities struct {
			BrowserVersion string `json:"browserVersion"`
		} `json:"capabilities"`
	}
	if err := f.conn.call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}, &session); err != nil {
		t.Fatalf("firefox: %v", err)
	}
	f.version = "Firefox " + session.Capabilities.BrowserVersion
	// The tab Firefox opens at start never gets the window's focus when headless, so the page
	// would never match :focus (nor show a focus indicator): a new window gets it.
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := f.conn.call(ctx, "browsingContext.getTree", map[string]any{"maxDepth": 0}, &tree); err != nil {
		t.Fatalf("firefox: %v", err)
	}
	var win struct {
		Context string `json:"context"`
	}
	if err := f.conn.call(ctx, "browsingContext.create", map[string]any{"type": "window"}, &win); err != nil {
		t.Fatalf("firefox: %v", err)
	}
	f.context = win.Context
	for _, c := range tree.Contexts {
		if err := f.conn.call(ctx, "browsingContext.close", map[string]any{"context": c.Context}, nil); err != nil {
			t.Fatalf("firefox: %v", err)
		}
	}
	steps := []struct {
		method string
		params any
	}{
		{"session.subscribe", map[string]any{"events": []string{"log.entryAdded", "network.beforeRequestSent", "script.message"}}},
		// Before any script of any page: report every CSP violation on a channel.
		{"script.addPreloadScript", map[string]any{
			"functionDeclaration": `(report) => { document.addEventListener("securitypolicyviolation", (e) =>
				report(e.violatedDirective + " blocked " + (e.blockedURI || "(inline)") + " at " + e.sourceFile + ":" + e.lineNumber), true); }`,
			"arguments": []any{map[string]any{"type": "channel", "value": map[string]any{"channel": "csp"}}},
		}},
		{"browsingContext.setViewport", map[string]any{"context": f.context, "viewport": map[string]int{"width": 1280, "height": 900}}},
	}
	for _, s := range steps {
		if err := f.conn.call(ctx, s.method, s.params, nil); err != nil {
			t.Fatalf("firefox: %v", err)
		}
	}
	return f
}

// event records the events the checks need.
func (f *firefoxTab) event(method string, params json.RawMessage) {
	switch method {
	case "log.entryAdded":
		var e struct {
			Type   string `json:"type"` // "console" or "javascript"
			Level  string `json:"level"`
			Text   string `json:"text"`
			Method string `json:"method"`
		}
		if json.Unmarshal(params, &e) != nil || e.Level != "error" {
			return
		}
		what := "exception"
		if e.Type == "console" {
			what = "console." + e.Method
		}
		f.addProblem(what + ": " + e.Text)
	case "script.message":
		var m struct {
			Channel string `json:"channel"`
			Data    struct {
				Value any `json:"value"`
			} `json:"data"`
		}
		if json.Unmarshal(params, &m) == nil && m.Channel == "csp" {
			f.addProblem(fmt.Sprintf("CSP violation: %v", m.Data.Value))
		}
	case "network.beforeRequestSent":
		var r struct {
			Request struct {
				URL string `json:"url"`
			} `json:"request"`
		}
		if json.Unmarshal(params, &r) == nil {
			f.mu.Lock()
			f.urls = append(f.urls, r.Request.URL)
			f.mu.Unlock()
		}
	}
}

func (f *firefoxTab) addProblem(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, p)
}

func (f *firefoxTab) name() string { return f.version }

func (f *firefoxTab) navigate(ctx context.Context, url string) error {
	return f.conn.call(ctx, "browsingContext.navigate", map[string]any{"context": f.context, "url": url, "wait": "complete"}, nil)
}

// eval evaluates expr in the page's own realm. The value comes back serialised by the page
// (JSON.stringify), so that both drivers decode it the same way.
func (f *firefoxTab) eval(ctx context.Context, expr string) ([]byte, error) {
	var r struct {
		Type   string `json:"type"` // "success" or "exception"
		Result struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"result"`
		ExceptionDetails struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	wrapped := "(() => { const v = (" + expr + "\n); return v === undefined ? undefined : JSON.stringify(v); })()"
	err := f.conn.call(ctx, "script.evaluate", map[string]any{
		"expression": wrapped, "target": map[string]string{"context": f.context},
		"awaitPromise": false, "resultOwnership": "none",
	}, &r)
	if err != nil {
		return nil, err
	}
	if r.Type == "exception" {
		return nil, fmt.Errorf("evaluate: %s", r.ExceptionDetails.Text)
	}
	if r.Result.Type != "string" {
		return nil, nil // undefined
	}
	return []byte(r.Result.Value), nil
}

// WebDriver's codes of the keys the tests press.
const (
	keyEnter = "\uE007"
	keyTab   = "\uE004"
	keyShift = "\uE008"
)

// keyActions turns text into key presses: "\r" and "\n" are Enter, "\t" is Tab.
func keyActions(text string) []map[string]string {
	var out []map[string]string
	for _, r := range text {
		v := string(r)
		switch r {
		case '\r', '\n':
			v = keyEnter
		case '\t':
			v = keyTab
		}
		out = append(out, map[string]string{"type": "keyDown", "value": v}, map[string]string{"type": "keyUp", "value": v})
	}
	return out
}

func (f *firefoxTab) keys(ctx context.Context, actions []map[string]string) error {
	err := f.conn.call(ctx, "input.performActions", map[string]any{"context": f.context,
		"actions": []any{map[string]any{"type": "key", "id": "keyboard", "actions": actions}}}, nil)
	if err != nil {
		return err
	}
	return f.conn.call(ctx, "input.releaseActions", map[string]any{"context": f.context}, nil)
}

func (f *firefoxTab) typeInto(ctx context.Context, sel, text string) error {
	if _, err := f.eval(ctx, fmt.Sprintf(`(() => { const el = document.querySelector(%s);
		if (!el) throw new Error("no element " + %s); el.scrollIntoView({block: "center"}); el.focus(); })()`, js(sel), js(sel))); err != nil {
		return fmt.Errorf("focus %s: %w", sel, err)
	}
	return f.press(ctx, text)
}

func (f *firefoxTab) press(ctx context.Context, text string) error {
	return f.keys(ctx, keyActions(text))
}

func (f *firefoxTab) shiftTab(ctx context.Context) error {
	return f.keys(ctx, []map[string]string{
		{"type": "keyDown", "value": keyShift}, {"type": "keyDown", "value": keyTab},
		{"type": "keyUp", "value": keyTab}, {"type": "keyUp", "value": keyShift},
	})
}

func (f *firefoxTab) screenshot(ctx context.Context) ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := f.conn.call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": f.context, "origin": "document"}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

func (f *firefoxTab) takeProblems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.problems
	f.problems = nil
	return p
}

func (f *firefoxTab) requested() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.urls...)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if over := w.b.Len() - w.max; over > 0 {
		w.b.Next(over)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.ToValidUTF8(w.b.String(), "?")
}
