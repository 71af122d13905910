package testsite

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A site's launchers start agents that outlive them by design: the local launcher's
// per-container supervisors (and their agents) run in sessions of their own, and mini-condor's
// jobs likewise. When a test ends, its site ends every such process (endProcesses) so that no
// agent keeps running containers, or retrying a coordinator that is gone, after the test.

// superviseArg marks a local-launcher supervisor's command line (plugins/local/supervisor.Command).
const superviseArg = "__cts_supervise"

// endWait bounds each step of endProcesses: the supervisors' graceful stop (the site's
// kill_grace_seconds plus the agent's reap), then the SIGKILL of what is left.
const endWait = 2 * time.Minute

// siteProc is a live process that belongs to a site.
type siteProc struct {
	pid        int
	supervisor bool
	cmdline    string
}

// siteProcesses lists the live processes (not zombies, not this one, not its children: the
// embedded stack and the launcher plugin, which the site's Close ends) whose working
// directory or an argument lies in one of dirs: the site's supervisors, agents, runc and
// helper processes.
func siteProcesses(dirs []string) []siteProc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	in := func(p string) bool {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	self := os.Getpid()
	var out []siteProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		base := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(base, "stat"))
		if err != nil || zombie(stat) || parent(stat) == self {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join(base, "cmdline"))
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		cwd, _ := os.Readlink(filepath.Join(base, "cwd"))
		match := in(cwd)
		sup := false
		for _, a := range args {
			match = match || in(a)
			sup = sup || a == superviseArg
		}
		if match {
			out = append(out, siteProc{pid: pid, supervisor: sup, cmdline: strings.Join(args, " ")})
		}
	}
	return out
}

// zombie reports whether a /proc/<pid>/stat content is a zombie's (exited, not yet waited for).
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// parent is the parent's pid in a /proc/<pid>/stat content (0 when unreadable).
func parent(stat []byte) int {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// endProcesses ends every process of the site at dirs: first each supervisor with SIGTERM (it
// stops its agent the way a cancel does, and reaps what the agent leaves), then, once they
// are gone or endWait passed, SIGKILL for anything of the site still running. It returns the
// processes that survived even that.
func endProcesses(dirs []string) []siteProc {
	for _, p := range siteProcesses(dirs) {
		if p.supervisor {
			_ = syscall.Kill(p.pid, syscall.SIGTERM)
		}
	}
	waitGone(dirs, endWait, func(p siteProc) bool { return p.supervisor })
	for _, p := range siteProcesses(dirs) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	return waitGone(dirs, endWait, func(siteProc) bool { return true })
}

// waitGone polls until no process of dirs that which selects runs, or d passed; it returns
// those still running.
func waitGone(dirs []string, d time.Duration, which func(siteProc) bool) []siteProc {
	deadline := time.Now().Add(d)
	for {
		var left []siteProc
		for _, p := range siteProcesses(dirs) {
			if which(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// EndProcesses ends, for a test's cleanup, what a site whose folders are dirs left running
// (its launchers' supervisors and agents, which outlive the launcher by design): SIGTERM to
// each supervisor, which stops its agent as a cancel does; after that (or endWait), SIGKILL
// to anything of the site still running. A process that survives even that fails t. Start
// does this for its sites; tests that run a site another way (the cts-dev binary) call it.
func EndProcesses(t testing.TB, dirs ...string) {
	t.Helper()
	for _, p := range endProcesses(dirs) {
		t.Errorf("process %d of the site still runs after SIGKILL: %s", p.pid, p.cmdline)
	}
}

// describe is a process list for a failure message.
func describe(ps []siteProc) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\n  %d %s", p.pid, p.cmdline)
	}
	return b.String()
}
