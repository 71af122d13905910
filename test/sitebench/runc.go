package sitebench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
)

// BareRunc runs the trivial job's container n times with a bare `runc run`: the demo tool from
// the demo image summarising the same small input, from a bundle made once (runc's default
// spec, the input mounted read-only, the output folder read-write), nothing else: no
// transfer, no pull, no coordinator. It returns each run's wall time. dir holds the bundle.
func (s *Site) BareRunc(ctx context.Context, dir string, n int) (Latencies, error) {
	return s.BareRun(ctx, dir, "runc", n)
}

// BareCrun is BareRunc with `crun run` of the same bundle (runc's default spec: no seccomp
// filter; crun deletes the container at the end, inside the timing, as runc run does without
// --keep).
func (s *Site) BareCrun(ctx context.Context, dir string, n int) (Latencies, error) {
	return s.BareRun(ctx, dir, "crun", n)
}

// CrunUsable says whether crun can run containers here ("" when it can, else why not): it is
// installed, and the node's cgroups are not a hybrid layout whose v2 hierarchy holds
// controllers, which crun refuses.
func CrunUsable() string {
	if _, err := exec.LookPath("crun"); err != nil {
		return "crun is not installed"
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return "crun cannot make cgroups here (the v2 hierarchy of a hybrid layout holds " + string(bytes.TrimSpace(b)) + ")"
	}
	return ""
}

// bareRuns numbers the bare runs of this process (their container IDs).
var bareRuns atomic.Int64

// BareRun is BareRunc with engine ("runc" or "crun"). The bundle is made at the first call
// for dir; later calls with the same dir run it again.
func (s *Site) BareRun(ctx context.Context, dir, engine string, n int) (Latencies, error) {
	bundle := filepath.Join(dir, "bundle")
	out := filepath.Join(dir, "output")
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		if err := s.bareBundle(ctx, dir); err != nil {
			return nil, err
		}
	}
	root := filepath.Join(dir, engine+"-root")
	var lat Latencies
	for range n {
		summary := filepath.Join(out, "container-0.summary.txt")
		if err := os.Remove(summary); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return lat, err
		}
		var stderr bytes.Buffer
		id := fmt.Sprintf("cts-bench-%d-%d", os.Getpid(), bareRuns.Add(1))
		cmd := exec.CommandContext(ctx, engine, "--root", root, "run", "--bundle", bundle, id)
		cmd.Stderr = &stderr
		t0 := time.Now()
		err := cmd.Run()
		lat = append(lat, time.Since(t0))
		if err != nil {
			return lat, fmt.Errorf("%s run: %v: %s", engine, err, stderr.String())
		}
		if _, err := os.Stat(summary); err != nil {
			return lat, fmt.Errorf("%s run: no output: %w", engine, err)
		}
	}
	return lat, nil
}

// bareBundle makes the bare runs' bundle in dir (see BareRunc).
func (s *Site) bareBundle(ctx context.Context, dir string) error {
	bundle := filepath.Join(dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	in, out := filepath.Join(dir, "input"), filepath.Join(dir, "output")
	for _, d := range []string{filepath.Join(rootfs, "usr", "bin"), filepath.Join(rootfs, "input_files"),
		filepath.Join(rootfs, "output_files"), in, out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	tool, err := os.ReadFile(s.Demo.ToolBinary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "usr", "bin", "cts-demo-tool"), tool, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(in, "small.fna"), []byte(">small\nACGTACGTGGCC\nGGCCAATT\n"), 0o644); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v: %s", err, b)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/usr/bin/cts-demo-tool", "--container", "0", "/input_files/small.fna"}
	spec["mounts"] = append(spec["mounts"].([]any),
		map[string]any{"destination": "/input_files", "type": "bind", "source": in, "options": []string{"rbind", "ro"}},
		map[string]any{"destination": "/output_files", "type": "bind", "source": out, "options": []string{"rbind", "rw"}})
	if raw, err = json.Marshal(spec); err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		return err
	}
	return nil
}

// SmallPuts times n rounds of conc concurrent PUTs, each of a 30-byte object with its
// CRC64/NVME (the size of the trivial job's output and logs), to the site's S3 server, and
// returns each round's wall time: what the server costs the job's uploads, alone.
func (s *Site) SmallPuts(ctx context.Context, n, conc int) (Latencies, error) {
	body := []byte("small\t2\t20\nACGT: 12, GC: 50%\n")
	var lat Latencies
	for i := range n {
		t0 := time.Now()
		errs := make(chan error, conc)
		for j := range conc {
			go func() {
				_, err := demo.PutWithCRC(ctx, s.Env.Stack.S3.Client(), devmode.DataBucket, fmt.Sprintf("bench/puts/%d-%d-%d", conc, i, j), body)
				errs <- err
			}()
		}
		for range conc {
			if err := <-errs; err != nil {
				return lat, fmt.Errorf("put: %w", err)
			}
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}
