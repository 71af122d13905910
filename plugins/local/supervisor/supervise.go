package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Command is the first argument of every supervisor's command line, whichever binary runs
// it (cts-local-supervisor, or the plugin binary re-executed, which it tells the plugin's
// work apart), so that a supervisor can be told from its agent by its command line:
//
//	cts-local-supervisor __cts_supervise <container_dir> <kill_grace> <agent_path> [agent_args...]
const Command = "__cts_supervise"

// Supervise is the main of a container's supervisor process: a small process between the
// plugin and one agent, in its own session, that outlives the plugin. It exists so that the
// on-disk state stays true when the plugin (or the coordinator hosting it) dies: the
// supervisor, not the plugin, waits for the agent and records its exit status, and it carries
// out Cancel's SIGTERM → grace → SIGKILL on its own clock.
//
// It claims the container directory first (exactly one supervisor ever runs per container),
// starts the agent with the supervisor's own environment in its own process group, records
// its pid, forwards SIGTERM/SIGINT to the agent's group (then SIGKILL after the grace period),
// and when the agent ends kills every process the agent left (see endDescendants) and writes
// the exit record. The agent dies with the supervisor (parent-death signal), so no agent runs
// unrecorded. It returns the supervisor's exit code.
func Supervise(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) < 3 {
		log.Error("usage: " + Command + " <container_dir> <kill_grace> <agent_path> [agent_args...]")
		return 2
	}
	dir, argv := args[0], args[2:]
	grace, err := time.ParseDuration(args[1])
	if err != nil || grace < 0 {
		log.Error("bad kill grace", "value", args[1])
		return 2
	}
	// The parent-death signal set on the agent fires when the thread that started it exits;
	// pinning this goroutine keeps that thread alive for the life of the supervisor.
	runtime.LockOSThread()

	// Install the handlers before anything is visible on disk, so a Cancel that finds our
	// record can signal us safely.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP)
	// Orphans among the agent's descendants become our children (the agent runs `runc run` in
	// a process group of its own, which outlives an agent killed with SIGKILL), so that
	// endDescendants can find and end them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		log.Warn("become the subreaper of the agent's processes", "error", err)
	}

	claim, err := os.OpenFile(filepath.Join(dir, ClaimFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		log.Info("container already claimed by another supervisor", "dir", dir)
		return 0
	}
	if err != nil {
		log.Error("claim container", "error", err)
		return 1
	}
	_ = claim.Close()

	self := ProcRecord{PID: os.Getpid(), Started: time.Now()}
	self.ProcStart, _, _ = ProcStart(self.PID)
	if err := WriteRecord(filepath.Join(dir, SupervisorFile), self); err != nil {
		log.Error("record supervisor", "error", err)
		return 1
	}
	rec := supervise(log, dir, grace, argv, sigs)
	if err := WriteRecord(filepath.Join(dir, ExitFile), rec); err != nil {
		log.Error("record exit", "error", err)
		return 1
	}
	log.Info("agent ended", "reason", rec.Reason, "canceled", rec.Canceled)
	return 0
}

// supervise runs the agent to its end and returns its exit record.
func supervise(log *slog.Logger, dir string, grace time.Duration, argv []string, sigs <-chan os.Signal) ExitRecord {
	canceled := func() bool {
		select {
		case <-sigs:
			return true
		default:
			return Exists(filepath.Join(dir, CancelFile))
		}
	}
	if canceled() {
		return ExitRecord{Canceled: true, Reason: "canceled before the agent started", Ended: time.Now()}
	}

	open := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	}
	stdout, err := open(StdoutFile)
	if err != nil {
		return startFailed(err)
	}
	defer func() { _ = stdout.Close() }()
	stderr, err := open(StderrFile)
	if err != nil {
		return startFailed(err)
	}
	defer func() { _ = stderr.Close() }()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return startFailed(err)
	}
	pid := cmd.Process.Pid
	agent := ProcRecord{PID: pid, Started: started}
	agent.ProcStart, _, _ = ProcStart(pid)
	if err := WriteRecord(filepath.Join(dir, PIDFile), agent); err != nil {
		log.Error("record agent pid", "error", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	stopping := false
	var kill <-chan time.Time
	stop := func() {
		if stopping {
			return
		}
		stopping = true
		log.Info("stopping agent", "pid", pid, "grace", grace)
		if err := SignalGroup(pid, syscall.SIGTERM); err != nil {
			log.Error("stop agent", "error", err)
		}
		kill = time.After(grace)
	}
	// A Cancel may have written its marker while we started the agent, before it could find
	// our record.
	if canceled() {
		stop()
	}
	for {
		select {
		case <-sigs:
			stop()
		case <-kill:
			kill = nil
			log.Info("grace period over, killing agent", "pid", pid)
			if err := SignalGroup(pid, syscall.SIGKILL); err != nil {
				log.Error("kill agent", "error", err)
			}
		case err := <-done:
			// Whatever the agent left behind ends with it: first its process group, then
			// every other descendant (a `runc run` still creating or running the container
			// would otherwise create or keep it after the reap below).
			_ = SignalGroup(pid, syscall.SIGKILL)
			left := endDescendants(log, pid, descendantsWait)
			rec := exitFromWait(cmd.ProcessState, err)
			rec.Started = started
			rec.Canceled = stopping || Exists(filepath.Join(dir, CancelFile))
			if rec.Signal != "" || left > 0 {
				// Killed (the grace ran out, or someone sent SIGKILL) or ended without
				// waiting for its processes: its container, runtime state and work data are
				// left behind. The agent's own reaper removes them now rather than at the
				// next agent's start on this node; nothing of the agent runs any more, so
				// nothing can create them after the reap.
				reap(log, dir, argv, stdout, stderr)
			}
			return rec
		}
	}
}

// descendantsWait bounds endDescendants: a process stuck in the kernel (uninterruptible
// sleep) may ignore SIGKILL for a while; the reap still runs after it.
const descendantsWait = 30 * time.Second

// endDescendants kills (SIGKILL) and waits for every child of this process, over and over:
// as a subreaper we inherit the orphans of each one we kill (a killed `runc run` hands us the
// container's init, whose death ends every process of the container). It returns how many
// of them were outside the agent's process group (group), which the agent should have
// waited for, and gives up after wait.
func endDescendants(log *slog.Logger, group int, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	outside := map[int]bool{}
	for {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return len(outside)
		}
		if time.Now().After(deadline) {
			log.Error("processes of the agent outlived SIGKILL", "processes", len(kids), "first_pid", kids[0].pid)
			return len(outside)
		}
		for _, k := range kids {
			if k.pgrp != group && !outside[k.pid] {
				outside[k.pid] = true
				log.Info("killing a process the agent left", "pid", k.pid)
			}
			_ = SignalProcess(k.pid, syscall.SIGKILL)
		}
		for _, k := range kids {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(k.pid, &ws, syscall.WNOHANG, nil)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReapTimeout bounds the reap (`<agent> reap --yes`) after a killed agent.
const ReapTimeout = 2 * time.Minute

// reap runs `<agent> reap --yes` with the agent's environment, which removes what dead agents
// left on the node (this one's included, and never a live agent's).
func reap(log *slog.Logger, dir string, argv []string, stdout, stderr *os.File) {
	ctx, cancel := context.WithTimeout(context.Background(), ReapTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], "reap", "--yes")
	cmd.Dir = dir
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		log.Error("reap after the agent was killed", "error", err)
		return
	}
	log.Info("reaped what the killed agent left")
}

// startFailed is the exit record of an agent that could not be started (127, like a shell).
func startFailed(err error) ExitRecord {
	code := 127
	return ExitRecord{ExitCode: &code, Reason: fmt.Sprintf("start agent: %v", err), Ended: time.Now()}
}

// exitFromWait turns the agent's wait status into an exit record.
func exitFromWait(ps *os.ProcessState, waitErr error) ExitRecord {
	rec := ExitRecord{Ended: time.Now()}
	if ps == nil {
		rec.Reason = fmt.Sprintf("wait for agent: %v", waitErr)
		return rec
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		code := 128 + int(ws.Signal())
		rec.ExitCode, rec.Signal = &code, ws.Signal().String()
		rec.Reason = "killed by signal: " + ws.Signal().String()
	default:
		code := ps.ExitCode()
		rec.ExitCode = &code
		rec.Reason = fmt.Sprintf("exit code %d", code)
	}
	return rec
}
