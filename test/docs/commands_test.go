package docs_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/test/docs"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// docFiles are the documents whose shell blocks must run on a fresh dev site, relative to the
// module root, in the order a newcomer reads them.
var docFiles = []string{"README.md", "docs/users.md", "docs/cli.md", "docs/examples.md"}

// projectBinaries are the programs of this repository the dev site puts on PATH, by name.
var projectBinaries = map[string]string{
	"cts": "./coordinator/cmd/cts", "cts-dev": "./coordinator/cmd/cts-dev",
	"cts-agent": testsite.AgentPkg, "cts-launcher-local": testsite.LauncherPkg,
	"cts-demo-tool": testsite.DemoToolPkg, "cts-demo-seqkit": "./test/demo/seqkit",
}

// shellBuiltins are the bash builtins the documents may call.
var shellBuiltins = []string{"source", ".", "cd", "echo", "printf", "export", "set", "unset", "exit", "read",
	"test", "[", "true", "false", "wait", "trap", "eval", "exec", "command", "type", "pwd", "return", "shift"}

// essentialTools are commands every Debian system has (its Essential packages: coreutils,
// grep, sed, tar, gzip, findutils, diffutils), so scripts/install-deps.sh need not install them.
var essentialTools = []string{"cat", "cp", "mv", "rm", "ln", "ls", "mkdir", "rmdir", "touch", "head", "tail", "sort",
	"uniq", "wc", "cut", "tr", "tee", "env", "sleep", "date", "basename", "dirname", "sha256sum", "md5sum", "stat",
	"grep", "sed", "tar", "gzip", "gunzip", "zcat", "find", "xargs", "diff", "cmp", "seq", "yes", "mktemp", "realpath"}

// installedTools are the commands scripts/install-deps.sh installs when missing: the X of each
// "command -v X" test in it.
func installedTools(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "scripts", "install-deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range commandVRE.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

var commandVRE = regexp.MustCompile(`command -v ([\w.-]+)`)

// TestDocsTools checks that every command the documents' shell blocks call is a shell builtin,
// a program of this repository, a tool every Debian system has, or one scripts/install-deps.sh
// installs, and that it is installed here: CI starts from a clean Debian machine and runs the
// blocks (TestDocsCommands), so a document that starts calling a new tool must come with the
// line that installs it.
func TestDocsTools(t *testing.T) {
	root := moduleRoot(t)
	installed := installedTools(t, root)
	if !slices.Contains(installed, "jq") {
		t.Fatalf("found no \"command -v jq\" in scripts/install-deps.sh (found %v): is the pattern still right?", installed)
	}
	for _, f := range docFiles {
		blocks, err := docs.Extract(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if b.Skip != "" {
				continue
			}
			cmds, err := docs.Commands(b.Code)
			if err != nil {
				t.Errorf("%s:%d: %v", f, b.Line, err)
				continue
			}
			for _, c := range cmds {
				if _, ours := projectBinaries[c]; ours || slices.Contains(shellBuiltins, c) {
					continue
				}
				if !slices.Contains(essentialTools, c) && !slices.Contains(installed, c) {
					t.Errorf("%s:%d calls %s, which scripts/install-deps.sh does not install: add it there", f, b.Line, c)
					continue
				}
				if _, err := exec.LookPath(c); err != nil {
					t.Errorf("%s:%d calls %s, which is not installed here: run scripts/install-deps.sh", f, b.Line, c)
				}
			}
		}
	}
}

// blockTimeout bounds one document's blocks (they run jobs).
const blockTimeout = 10 * time.Minute

// TestDocsCommands starts a fresh dev site with the real cts-dev, then runs every shell block
// of the user documentation verbatim with bash, after `source .dev/env`, in a folder holding
// the site as .dev: what a newcomer following the documents types. The blocks of one document
// share one shell, as a terminal would.
func TestDocsCommands(t *testing.T) {
	testsite.RequireEnv(t)
	root := moduleRoot(t)
	bin := t.TempDir()
	for name, pkg := range projectBinaries {
		place(t, testsite.Binary(t, pkg), filepath.Join(bin, name))
	}
	site := filepath.Join(t.TempDir(), "dev")
	dev := startDev(t, filepath.Join(bin, "cts-dev"), site)

	var skipped []string
	for _, f := range docFiles {
		blocks, err := docs.Extract(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for i := range blocks {
			blocks[i].File = f
			if blocks[i].Skip != "" {
				skipped = append(skipped, blocks[i].Where()+": "+blocks[i].Skip)
			}
		}
		t.Run(strings.ReplaceAll(f, "/", "_"), func(t *testing.T) {
			work := t.TempDir()
			if err := os.Symlink(site, filepath.Join(work, ".dev")); err != nil {
				t.Fatal(err)
			}
			script := docs.Script("source .dev/env\n", blocks)
			ctx, cancel := context.WithTimeout(t.Context(), blockTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-c", script)
			cmd.Dir = work
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "TERM=dumb", "LANG=C.UTF-8"}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err != nil {
				t.Fatalf("%s: the block at %s failed (%v); output:\n%s", f, lastBlock(out.String()), err, tailOf(out.String(), 8000))
			}
			t.Logf("%s: every block ran; output:\n%s", f, tailOf(out.String(), 3000))
		})
	}
	t.Logf("blocks skipped (marked in the markdown), %d:\n  %s", len(skipped), strings.Join(skipped, "\n  "))
	if len(skipped) > 6 {
		t.Errorf("%d blocks are marked as not runnable on a dev site: keep that set small", len(skipped))
	}
	dev.stop(t)
}

// lastBlock is the last "### where" marker in the output.
func lastBlock(out string) string {
	i := strings.LastIndex(out, "### ")
	if i < 0 {
		return "(before the first block)"
	}
	line, _, _ := strings.Cut(out[i+4:], "\n")
	return line
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// place links (or copies) a built binary to dst: cts-dev looks for its siblings next to
// itself, and the env file puts that folder on PATH.
func place(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Link(src, dst); err == nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// devProcess is the cts-dev process of the test.
type devProcess struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDev starts cts-dev on dir (a free port) and waits for its env file.
func startDev(t *testing.T, bin, dir string) *devProcess {
	t.Helper()
	cmd := exec.Command(bin, "--dir", dir, "--listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	d := &devProcess{cmd: cmd, out: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("cts-dev output:\n%s", tailOf(d.out.String(), 6000))
			dumpAgentLogs(t, dir)
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "env")); err == nil {
			return d
		}
		select {
		case err := <-d.done:
			t.Fatalf("cts-dev exited (%v) before it was ready:\n%s", err, d.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("cts-dev not ready after 3 minutes:\n%s", d.out.String())
		}
	}
}

func (d *devProcess) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("cts-dev stopped with %v:\n%s", err, tailOf(d.out.String(), 4000))
		}
		d.done <- err // the cleanup waits too
	case <-time.After(2 * time.Minute):
		t.Error("cts-dev did not stop within 2 minutes of SIGINT")
	}
}

func dumpAgentLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "agents", "*", "*", "*", "agent.err"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		t.Logf("%s:\n%s", f, tailOf(string(b), 4000))
	}
}
