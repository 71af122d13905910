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
			return withArg("job ID", true, func(c *cli, cl *client.Client, id string) error {
				return waitJob(c, cl, id, w)
			})
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
	prog := &progressPoller{cl: cl, id: id}
	switch {
	case w.json:
		enc := json.NewEncoder(c.stdout)
		enc.SetEscapeHTML(false)
		opts.OnEvent = func(e client.Event) { _ = enc.Encode(e) }
		opts.OnPoll = func(st *client.JobStatus, _ []client.SubJob) {
			for _, p := range prog.changed(prog.poll(ctx, st)) {
				_ = enc.Encode(progressEvent{JobID: id, Container: p.Container, Progress: progressOf(p), Time: p.Updated})
			}
		}
	case isTerminal(c.stdout, c.getenv):
		live = &liveView{w: c.stdout, id: id, start: start}
		opts.OnPoll = func(st *client.JobStatus, subs []client.SubJob) {
			live.progress = prog.poll(ctx, st)
			live.draw(st, subs)
		}
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
	// progress is the containers' latest transfer progress, drawn under the states.
	progress []client.ContainerProgress
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
	lines = append(lines, progressLines(v.progress)...)
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

// progressPoller fetches the containers' transfer progress for cts wait. The route is best
// effort: a service without it (404, an older one) or that refuses it is not asked again,
// silently; a transient failure keeps the last answer.
type progressPoller struct {
	cl   *client.Client
	id   string
	off  bool
	cur  []client.ContainerProgress
	sent map[int]progressBody // what --json printed last, per container
}

// poll returns the latest progress, or nil once the job has ended (transfers are over).
func (p *progressPoller) poll(ctx context.Context, st *client.JobStatus) []client.ContainerProgress {
	if p.off || st.State.Terminal() {
		return nil
	}
	ps, err := p.cl.Progress(ctx, p.id)
	var ae *client.APIError
	switch {
	case err == nil:
		p.cur = ps
	case errors.As(err, &ae) && ae.StatusCode < 500:
		p.off, p.cur = true, nil
	}
	return p.cur
}

// changed returns the entries of ps that differ from what it returned before.
func (p *progressPoller) changed(ps []client.ContainerProgress) []client.ContainerProgress {
	if p.sent == nil {
		p.sent = map[int]progressBody{}
	}
	var out []client.ContainerProgress
	for _, cp := range ps {
		b := progressOf(cp)
		if prev, ok := p.sent[cp.Container]; ok && prev == b {
			continue
		}
		p.sent[cp.Container] = b
		out = append(out, cp)
	}
	return out
}

// progressEvent is a --json line of cts wait for a container's transfer progress; state
// changes are client.Event lines (they have "state" where these have "progress").
type progressEvent struct {
	JobID     string       `json:"job_id"`
	Container int          `json:"container"`
	Progress  progressBody `json:"progress"`
	Time      time.Time    `json:"time"`
}

type progressBody struct {
	Phase      string `json:"phase"`
	BytesDone  int64  `json:"bytes_done"`
	BytesTotal int64  `json:"bytes_total"`
	FilesDone  int    `json:"files_done"`
	FilesTotal int    `json:"files_total"`
}

func progressOf(p client.ContainerProgress) progressBody {
	return progressBody{Phase: p.Phase, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, FilesDone: p.FilesDone, FilesTotal: p.FilesTotal}
}

// maxProgressLines is how many containers' progress the live view lists one per line; more
// are summed up on one line.
const maxProgressLines = 12

// progressLines renders the transfer progress for the live view:
//
//	container 0  downloading  12.3 MiB / 40.0 MiB  3/4 files
func progressLines(ps []client.ContainerProgress) []string {
	if len(ps) == 0 {
		return nil
	}
	if len(ps) > maxProgressLines {
		var done, total int64
		moving := 0
		for _, p := range ps {
			done, total = done+p.BytesDone, total+p.BytesTotal
			if p.BytesDone < p.BytesTotal || p.FilesDone < p.FilesTotal {
				moving++
			}
		}
		return []string{fmt.Sprintf("  transfers: %d containers, %d in progress, %s / %s", len(ps), moving, formatBytes(done), formatBytes(total))}
	}
	lines := []string{"  transfers:"}
	for _, p := range ps {
		lines = append(lines, fmt.Sprintf("    container %d  %s  %s / %s  %d/%d files", p.Container, phaseVerb(p),
			formatBytes(p.BytesDone), formatBytes(p.BytesTotal), p.FilesDone, p.FilesTotal))
	}
	return lines
}

// phaseVerb says what a container's transfer is doing: "downloading", then "downloaded" once
// every file is in ("uploading", "uploaded" likewise).
func phaseVerb(p client.ContainerProgress) string {
	finished := p.BytesDone >= p.BytesTotal && p.FilesDone >= p.FilesTotal
	switch {
	case p.Phase == "download" && finished:
		return "downloaded"
	case p.Phase == "download":
		return "downloading"
	case p.Phase == "upload" && finished:
		return "uploaded"
	case p.Phase == "upload":
		return "uploading"
	}
	return p.Phase
}

// formatBytes renders a byte count with a binary unit: "512 B", "12.3 MiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || u == "TiB" {
			return fmt.Sprintf("%.1f %s", v, u)
		}
	}
	return fmt.Sprintf("%d B", n) // not reached
}
