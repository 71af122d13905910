package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/kbase/cts/agent/internal/config"
	"github.com/kbase/cts/agent/internal/runner"
	"github.com/kbase/cts/agent/internal/session"
	"github.com/kbase/cts/shared/protocol"
)

// runDry connects with a dry-run hello, prints what the agent would do with its assignment,
// and closes the session without reporting anything: the coordinator records nothing for a
// dry run (no heartbeat, no event), so the job does not move.
func runDry(cfg config.Config, log *slog.Logger, out io.Writer) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sess, a, err := session.Dial(ctx, session.Config{
		ServiceURL: cfg.ServiceURL, Token: cfg.Token, Log: log, ReconnectFor: 30 * time.Second,
		Hello: protocol.Hello{JobID: cfg.JobID, Container: cfg.Container, Attempt: cfg.Attempt, AgentVersion: Version, DryRun: true},
	})
	if err != nil {
		return 1, fmt.Errorf("connect to the coordinator: %w", err)
	}
	sess.Close()
	r := runner.New(runner.Config{WorkDir: cfg.WorkDir, Attempt: cfg.Attempt, HostPath: cfg.HostPath,
		Network: cfg.Network, RefdataHostPath: cfg.RefdataHostPath}, nil, nil, nil, nil, log)
	p, err := r.Plan(a)
	if err != nil {
		return 1, fmt.Errorf("plan: %w", err)
	}
	kind, why := resolveRuntime(ctx, cfg.Node)
	desc := kind + " (" + why + ")"
	if config.OCI(kind) {
		engine, ewhy := ociEngine(cfg.Node, kind)
		desc += " with " + engine + " (" + ewhy + ")"
	}
	printPlan(out, cfg, a, p, desc)
	if err := startable(a); err != nil {
		fmt.Fprintf(out, "NOT STARTABLE: %v\n", err)
	}
	return 0, nil
}

func printPlan(out io.Writer, cfg config.Config, a *protocol.Assignment, p runner.Plan, runtime string) {
	q := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	fmt.Fprintf(out, "DRY RUN: nothing is downloaded, run, uploaded or reported\n")
	fmt.Fprintf(out, "job %s container %d attempt %s\n", a.JobID, a.Container, cfg.Attempt)
	state := string(a.ContainerState)
	if a.ContainerAttempt != "" {
		state += " (last reported by attempt " + a.ContainerAttempt + ")"
	}
	if state != "" {
		fmt.Fprintf(out, "state:   %s\n", state)
	}
	fmt.Fprintf(out, "image:   %s (container id %s)\n", a.Image, p.ContainerID)
	fmt.Fprintf(out, "runtime: %s\n", runtime)
	fmt.Fprintf(out, "command: %s\n", q(a.Command))
	fmt.Fprintf(out, "env:     %s\n", q(a.Env))
	var total int64
	for _, d := range p.Downloads {
		total += d.Size
	}
	fmt.Fprintf(out, "inputs:  %d files, %d bytes\n", len(p.Downloads), total)
	for i, d := range p.Downloads {
		rel := a.Inputs[i].RelPath
		fmt.Fprintf(out, "  %s (%d bytes, crc64nvme %s)\n    -> %s (in the container: %s/%s)\n",
			d.S3Path, d.Size, d.CRC64NVME, d.Dest, strings.TrimSuffix(a.InputMountPoint, "/"), rel)
	}
	fmt.Fprintf(out, "mounts:\n")
	for _, m := range p.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		fmt.Fprintf(out, "  %s -> %s (%s)\n", m.Source, m.Destination, mode)
	}
	fmt.Fprintf(out, "outputs: every file under %s uploaded to %s\n", a.OutputMountPoint, p.OutputPrefix)
	fmt.Fprintf(out, "logs:    %s\n", strings.Join(p.Logs, ", "))
	fmt.Fprintf(out, "limits:  cpus %d, memory %d bytes, runtime %s, network %s, each log file %d bytes\n",
		a.CPUs, a.MemoryBytes, time.Duration(a.RuntimeSeconds*float64(time.Second)), cfg.Network, cfg.LogMaxBytes)
	fmt.Fprintf(out, "stop:    %s\n", cfg.Budget)
}
