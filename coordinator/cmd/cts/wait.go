package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/shared/job"
)

// waitFlags configure cts wait and cts submit --wait.
type waitFlags struct {
	wait         bool
	json         bool
	timeout      time.Duration
	noContainers bool
}

// pollBackoff paces the polls of wait and logs -f (zero: 0.5 s growing to 5 s); tests shorten it.
var pollBackoff client.Backoff

func (w *waitFlags) register(fs *flag.FlagSet, submit bool) {
	if submit {
		fs.BoolVar(&w.wait, "wait", false, "wait for the job to end, showing its progress (exit codes as for cts wait)")
		fs.BoolVar(&w.json, "json", false, `print {"job_id": ...} as JSON (and, with --wait, one JSON object per state change)`)
	} else {
		fs.BoolVar(&w.json, "json", false, "print one JSON object per state change (for scripts) instead of the live view")
	}
	fs.DurationVar(&w.timeout, "timeout", 0, "give up waiting after this long (e.g. 30m; 0 waits forever): exit code 5")
	fs.BoolVar(&w.noContainers, "no-containers", false, "do not show each container's state (admins see them by default)")
}

func waitCommand() *command {
	return &command{name: "wait", args: "JOB [FLAGS]",
		summary: "wait for a job to end, showing its state changes (and each container's, for admins) as they happen",
		setup: func(fs *flag.FlagSet) func(*cli, []string) error {
			w := &waitFlags{}
			w.register(fs, false)
			return func(c *cli, args []string) error {
				id, err := oneArg(args, "job ID")
				if err != nil {
					return err
				}
				cl, err := c.client(true)
				if err != nil {
					return err
				}
				return waitJob(c, cl, id, w)
			}
		}}
}

// isTerminal reports whether w is a terminal that can redraw in place.
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok || getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// waitJob waits for the job and maps its end to the exit code: 0 complete, 3 error, 4
// canceled, 5 timeout.
func waitJob(c *cli, cl *client.Client, id string, w *waitFlags) error {
	ctx := c.ctx
	if w.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.timeout)
		defer cancel()
	}
	opts := client.WaitOptions{Containers: !w.noContainers, Backoff: pollBackoff}
	start := time.Now()
	var live *liveView
	switch {
	case w.json:
		enc := json.NewEncoder(c.stdout)
		enc.SetEscapeHTML(false)
		opts.OnEvent = func(e client.Event) { _ = enc.Encode(e) }
	case isTerminal(c.stdout, c.getenv):
		live = &liveView{w: c.stdout, id: id, start: start}
		opts.OnPoll = live.draw
	default:
		opts.OnEvent = func(e client.Event) {
			if e.Container != nil {
				fmt.Fprintf(c.stdout, "%s  container %d  %s\n", formatTime(e.Time), *e.Container, e.State)
			} else {
				fmt.Fprintf(c.stdout, "%s  %s\n", formatTime(e.Time), e.State)
			}
		}
	}
	st, err := cl.Wait(ctx, id, opts)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && c.ctx.Err() == nil {
			state := job.State("unknown")
			if st != nil {
				state = st.State
			}
			return &exitError{code: exitTimeout, msg: fmt.Sprintf("timed out after %s: job %s is still %s", w.timeout, id, state)}
		}
		return err
	}
	elapsed := time.Since(start).Round(100 * time.Millisecond)
	switch st.State {
	case job.Complete:
		if !w.json {
			msg := fmt.Sprintf("job %s complete", id)
			if j, err := cl.Job(c.ctx, id); err == nil && j.OutputFileCount != nil {
				msg += fmt.Sprintf(": %d output files", *j.OutputFileCount)
			}
			fmt.Fprintf(c.stderr, "%s (waited %s)\n", msg, elapsed)
		}
		return nil
	case job.Canceled:
		return &exitError{code: exitCanceled, msg: fmt.Sprintf("job %s was canceled", id)}
	default:
		msg := fmt.Sprintf("job %s ended in %s", id, st.State)
		if j, err := cl.Job(c.ctx, id); err == nil && j.Error != "" {
			msg += ": " + j.Error
		}
		return &exitError{code: exitJobError, msg: msg}
	}
}

// liveView redraws the job's progress in place on a terminal.
type liveView struct {
	w     io.Writer
	id    string
	start time.Time
	lines int
}

func (v *liveView) draw(st *client.JobStatus, subs []client.SubJob) {
	var b strings.Builder
	if v.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", v.lines) // up to the first line, clear below
	}
	lines := v.render(st, subs)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	v.lines = len(lines)
	_, _ = io.WriteString(v.w, b.String())
}

func (v *liveView) render(st *client.JobStatus, subs []client.SubJob) []string {
	lines := []string{fmt.Sprintf("job %s  %s  (%s)", v.id, st.State, time.Since(v.start).Round(time.Second))}
	for _, t := range st.Transitions {
		lines = append(lines, fmt.Sprintf("  %-28s %s", t.State, formatTime(t.Time)))
	}
	if len(subs) == 0 {
		return lines
	}
	if len(subs) <= 12 {
		lines = append(lines, "  containers:")
		for _, s := range subs {
			l := fmt.Sprintf("    %-4d %-28s", s.SubID, s.State)
			if s.ExitCode != nil {
				l += fmt.Sprintf(" exit %d", *s.ExitCode)
			}
			lines = append(lines, strings.TrimRight(l, " "))
		}
		return lines
	}
	counts := map[job.State]int{}
	for _, s := range subs {
		counts[s.State]++
	}
	var parts []string
	for st, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, st))
	}
	sort.Strings(parts)
	return append(lines, fmt.Sprintf("  %d containers: %s", len(subs), strings.Join(parts, ", ")))
}

func logsCommand() *command {
	return &command{name: "logs", args: "JOB [-f] [--container N] [--stderr]",
		summary: "print a container's log; -f follows it until the job ends",
		setup: func(fs *flag.FlagSet) func(*cli, []string) error {
			follow := fs.Bool("f", false, "follow: keep printing the log as it grows until the job ends")
			fs.BoolVar(follow, "follow", false, "same as -f")
			container := fs.Int("container", 0, "container number")
			stderr := fs.Bool("stderr", false, "the container's stderr instead of its stdout")
			return func(c *cli, args []string) error {
				id, err := oneArg(args, "job ID")
				if err != nil {
					return err
				}
				if *container < 0 {
					return usagef("--container %d: want >= 0", *container)
				}
				cl, err := c.client(true)
				if err != nil {
					return err
				}
				req := client.LogRequest{JobID: id, Container: *container, Stream: client.Stdout}
				if *stderr {
					req.Stream = client.Stderr
				}
				if *follow {
					return newFollower(c, cl, req).Follow(c.ctx, req, c.stdout)
				}
				rc, err := cl.Log(c.ctx, req)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.Copy(c.stdout, rc)
				return err
			}
		}}
}

// newFollower chooses where cts logs -f reads from: the live route, falling back to polling the
// log route on services without it. Its notices (live lines were shown, so the stored log was
// not) go to stderr with the command that prints the complete log.
var newFollower = func(c *cli, cl *client.Client, req client.LogRequest) client.LogFollower {
	hint := "cts logs " + req.JobID
	if req.Container != 0 {
		hint += fmt.Sprintf(" --container %d", req.Container)
	}
	if req.Stream == client.Stderr {
		hint += " --stderr"
	}
	return &client.LiveFollower{Client: cl, Backoff: pollBackoff, Notice: func(msg string) {
		fmt.Fprintf(c.stderr, "cts logs: %s; the complete log: %s\n", msg, hint)
	}}
}
