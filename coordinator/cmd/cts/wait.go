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
	"sync"
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
	fs.BoolVar(&w.noContainers, "no-containers", false, "do not show each container's state")
}

func waitCommand() *command {
	return &command{name: "wait", args: "JOB [FLAGS]",
		summary: "wait for a job to end, showing its state changes, each container's, and the transfers' progress as they happen",
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
				_ = enc.Encode(progressEvent{JobID: id, Container: p.Container, Progress: progressOf(p), Time: p.Updated.Time})
			}
		}
	case isTerminal(c.stdout, c.getenv):
		live = &liveView{w: c.stdout, id: id, start: start, rates: &prog.rates}
		opts.OnPoll = func(st *client.JobStatus, subs []client.SubJob) {
			ps := prog.poll(ctx, st)
			live.update(st, subs, ps)
		}
		// Polls slow down to one every 5 s while nothing changes: redraw every second
		// meanwhile, so the elapsed time and the ETAs keep moving.
		stop := live.tick(time.Second)
		defer stop()
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
	if live != nil {
		live.stop()
	}
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

// liveView redraws the job's progress in place on a terminal: at every poll, and every
// second between polls (tick) so the elapsed time never freezes. It is safe for concurrent
// use.
type liveView struct {
	w     io.Writer
	id    string
	start time.Time
	// now is the clock (tests set it).
	now func() time.Time

	mu    sync.Mutex
	lines int
	st    *client.JobStatus
	subs  []client.SubJob
	// progress is the containers' latest transfer progress, drawn under the states, and rates
	// their measured transfer rates.
	progress []client.ContainerProgress
	rates    *rateKeeper
	stopped  bool
	ticker   sync.WaitGroup
	quit     chan struct{}
}

// update records a poll's answer and redraws.
func (v *liveView) update(st *client.JobStatus, subs []client.SubJob, ps []client.ContainerProgress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st, v.subs, v.progress = st, subs, ps
	v.drawLocked()
}

// tick redraws every d until the returned function (or stop) is called.
func (v *liveView) tick(d time.Duration) func() {
	v.quit = make(chan struct{})
	v.ticker.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-v.quit:
				return
			case <-t.C:
				v.mu.Lock()
				v.drawLocked()
				v.mu.Unlock()
			}
		}
	})
	return v.stop
}

// stop ends the ticking and waits for it; the view is not drawn again. It is idempotent.
func (v *liveView) stop() {
	v.mu.Lock()
	if v.stopped {
		v.mu.Unlock()
		return
	}
	v.stopped = true
	v.mu.Unlock()
	if v.quit != nil {
		close(v.quit)
	}
	v.ticker.Wait()
}

func (v *liveView) drawLocked() {
	if v.st == nil || v.stopped {
		return
	}
	v.draw(v.st, v.subs)
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

func (v *liveView) clock() time.Time {
	if v.now != nil {
		return v.now()
	}
	return time.Now()
}

// stateLabel is how the live view names a state: the plain words a person reads, with the
// state's name where they differ.
func stateLabel(s job.State) string {
	switch s {
	case job.JobSubmitted:
		return "running (job_submitted)"
	case job.DownloadSubmitted:
		return "starting, downloading inputs (download_submitted)"
	case job.JobSubmitting:
		return "inputs in, starting containers (job_submitting)"
	case job.UploadSubmitting, job.UploadSubmitted:
		return "uploading outputs (" + string(s) + ")"
	}
	return string(s)
}

func (v *liveView) render(st *client.JobStatus, subs []client.SubJob) []string {
	lines := []string{fmt.Sprintf("job %s  %s  (%s)", v.id, stateLabel(st.State), v.clock().Sub(v.start).Round(time.Second))}
	for _, t := range st.Transitions {
		lines = append(lines, fmt.Sprintf("  %-28s %s", t.State, formatTime(t.Time.Time)))
	}
	lines = append(lines, progressLines(v.progress, v.clock(), v.rates)...)
	if len(subs) == 0 {
		return lines
	}
	if len(subs) <= 12 {
		lines = append(lines, "  containers:")
		for _, s := range subs {
			state := string(s.State)
			if s.State == job.JobSubmitted {
				state = "running"
			}
			l := fmt.Sprintf("    %-4d %-28s", s.SubID, state)
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
// silently; a transient failure keeps the last answer. It keeps each container's transfer
// rate, measured between the reports it sees.
type progressPoller struct {
	cl    *client.Client
	id    string
	off   bool
	cur   []client.ContainerProgress
	sent  map[int]progressBody // what --json printed last, per container
	rates rateKeeper
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
		for _, cp := range ps {
			p.rates.observe(cp)
		}
	case errors.As(err, &ae) && ae.StatusCode < 500:
		p.off, p.cur = true, nil
	}
	return p.cur
}

// rateKeeper measures each container's transfer rate from successive progress reports: the
// bytes moved between two reports over the time between them (as the coordinator received
// them), smoothed over the last few reports. A new phase, or fewer bytes than before (a
// transfer that started again), starts the measure afresh.
type rateKeeper struct {
	mu sync.Mutex
	m  map[int]*rateSample
}

type rateSample struct {
	phase string
	bytes int64
	at    time.Time
	rate  float64 // bytes per second; 0 until two reports were seen
}

// rateWeight is the weight of the newest measure in the smoothed rate.
const rateWeight = 0.5

func (r *rateKeeper) observe(p client.ContainerProgress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[int]*rateSample{}
	}
	at := p.Updated.Time
	if at.IsZero() {
		at = time.Now()
	}
	s := r.m[p.Container]
	if s == nil || s.phase != p.Phase || p.BytesDone < s.bytes {
		r.m[p.Container] = &rateSample{phase: p.Phase, bytes: p.BytesDone, at: at}
		return
	}
	dt := at.Sub(s.at).Seconds()
	if dt <= 0 {
		return // the same report again
	}
	inst := float64(p.BytesDone-s.bytes) / dt
	if s.rate == 0 {
		s.rate = inst
	} else {
		s.rate = rateWeight*inst + (1-rateWeight)*s.rate
	}
	s.bytes, s.at = p.BytesDone, at
}

// rate returns the container's rate in bytes per second, and when it was last measured.
func (r *rateKeeper) rate(container int) (float64, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.m[container]; s != nil {
		return s.rate, s.at
	}
	return 0, time.Time{}
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

// progressLines renders the transfer progress for the live view, with each container's
// percentage and, while it moves, its rate and the time left at that rate:
//
//	container 0  downloading  12.3 MiB / 40.0 MiB  31%  5.2 MiB/s  ETA 6s  3/4 files
func progressLines(ps []client.ContainerProgress, now time.Time, rates ...*rateKeeper) []string {
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
		return []string{fmt.Sprintf("  transfers: %d containers, %d in progress, %s / %s  %s", len(ps), moving, formatBytes(done),
			formatBytes(total), percent(done, total))}
	}
	lines := []string{"  transfers:"}
	for _, p := range ps {
		l := fmt.Sprintf("    container %d  %s  %s / %s  %s", p.Container, phaseVerb(p),
			formatBytes(p.BytesDone), formatBytes(p.BytesTotal), percent(p.BytesDone, p.BytesTotal))
		if len(rates) > 0 && rates[0] != nil && p.BytesDone < p.BytesTotal {
			if r, at := rates[0].rate(p.Container); r > 0 {
				// The time left at the measured rate, counted from the last report: it keeps
				// going down between reports.
				left := time.Duration(float64(p.BytesTotal-p.BytesDone)/r*float64(time.Second)) - now.Sub(at)
				l += fmt.Sprintf("  %s/s  ETA %s", formatBytes(int64(r)), max(0, left).Round(time.Second))
			}
		}
		lines = append(lines, l+fmt.Sprintf("  %d/%d files", p.FilesDone, p.FilesTotal))
	}
	return lines
}

// percent renders done/total as "31%" ("-" when the total is unknown).
func percent(done, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", min(100, done*100/total))
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
