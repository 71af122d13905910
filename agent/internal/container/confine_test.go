package container

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestConfinement runs the testtool's probe inside a container under each runtime: the
// confinement is the same, checked from inside, and every forbidden operation is refused.
func TestConfinement(t *testing.T) {
	t.Parallel()
	want := []string{
		"CapInh: 0000000000000000",
		"CapPrm: 0000000000000000",
		"CapEff: 0000000000000000",
		"CapBnd: 0000000000000000",
		"CapAmb: 0000000000000000",
		"NoNewPrivs: 1",
		"Seccomp: 2", // a filter is installed
		"mount: EPERM",
		"unshare: EPERM", // seccomp: without it a user namespace would be refused with EINVAL at best
		"ptrace: EPERM",
		"write /proc/sys: EROFS",       // a read-only mount: refused before any permission check
		"read /proc/timer_list: EMPTY", // masked
		"read /proc/keys: EMPTY",
		"list /sys/firmware: EMPTY",
		"exec in /tmp: EACCES", // noexec
	}
	outputs := map[string]string{}
	eachRuntime(t, func(t *testing.T, f *fixture) {
		res, stdout, stderr, err := f.run(t, context.Background(), f.spec("probe"))
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("probe: %+v %v\n%s", res, err, stderr)
		}
		got := strings.Split(strings.TrimSpace(stdout), "\n")
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || strings.Join(strings.Fields(g), " ") == w
			}
			if !found {
				t.Errorf("probe lacks %q:\n%s", w, stdout)
			}
		}
		outputs[f.kind] = stdout
	})
	for _, other := range []string{EngineCrun, "docker"} {
		if o, d := outputs[EngineRunc], outputs[other]; o != "" && d != "" && o != d {
			t.Errorf("the runtimes confine differently:\noci with runc:\n%s\n%s:\n%s", o, other, d)
		}
	}
}

// TestPidsLimit: a container that forks 10,000 processes is stopped by the pids limit, and the
// agent's node is unaffected: the run ends normally and leaves nothing behind. (The limit is
// lowered to keep the test quick; jobs get DefaultPidsLimit, see TestRuntimeSpec and
// TestDockerRunRequests.)
func TestPidsLimit(t *testing.T) {
	t.Parallel()
	const limit = 200
	eachRuntime(t, func(t *testing.T, f *fixture) {
		s := f.spec("fork", "10000")
		s.PidsLimit = limit
		res, stdout, stderr, err := f.run(t, context.Background(), s)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("fork: %+v %v\n%s", res, err, stderr)
		}
		var n, of int
		var why string
		if _, err := fmt.Sscanf(stdout, "forked %d of %d: %s", &n, &of, &why); err != nil || n >= limit || why != "EAGAIN" {
			t.Errorf("stdout %q: want fewer than %d processes, stopped by EAGAIN", stdout, limit)
		}
	})
}

// TestOutputFlood: a container writing a lot to stdout is read at full speed to its end, and
// every byte reaches the writer (the agent bounds its log files itself).
func TestOutputFlood(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		var n countingWriter
		s := f.spec("flood", "50")
		s.Stdout, s.Stderr = &n, io.Discard
		res, err := f.rt.Run(context.Background(), s)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("flood: %+v %v", res, err)
		}
		if n.n != 50_000_000 {
			t.Errorf("%d bytes of output, want 50000000", n.n)
		}
	})
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
