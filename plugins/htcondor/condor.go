package htcondor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"github.com/kbase/cts/shared/launcher"
)

// tools runs the condor command-line tools of one configuration.
type tools struct {
	cfg Config
	env []string
}

func newTools(cfg Config) *tools {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	keys := make([]string, 0, len(cfg.CondorEnv))
	for k := range cfg.CondorEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+cfg.CondorEnv[k])
	}
	return &tools{cfg: cfg, env: env}
}

// run runs one tool with the configured timeout. A tool that fails (non-zero exit) gives an
// error wrapping launcher.ErrUnavailable with its stderr; the caller's own cancellation gives
// ctx's error.
func (t *tools) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, t.cfg.commandTimeout())
	defer cancel()
	cmd := exec.CommandContext(cctx, tool, args...)
	cmd.Env = t.env
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = strings.TrimSpace(stdout.String())
	}
	if cctx.Err() != nil {
		msg = fmt.Sprintf("timed out after %v", t.cfg.commandTimeout())
	}
	if len(msg) > 2000 {
		msg = msg[:2000] + "..."
	}
	return nil, fmt.Errorf("%w: %s: %v: %s", launcher.ErrUnavailable, tool, err, msg)
}

// query runs condor_q or condor_history -json with a constraint and projection.
func (t *tools) query(ctx context.Context, tool, constraint string, attrs []string) ([]ad, error) {
	out, err := t.run(ctx, t.cfg.InitialDir, tool, "-json", "-constraint", constraint, "-attributes", strings.Join(attrs, ","))
	if err != nil {
		return nil, err
	}
	ads, err := parseAds(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: unreadable -json output: %v", launcher.ErrUnavailable, tool, err)
	}
	return ads, nil
}
