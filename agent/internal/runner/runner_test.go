package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/transfer"
)

// journal records what the fakes did, in order, across them.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// index is the position of the first entry with prefix, or -1.
func (j *journal) index(prefix string) int {
	for i, e := range j.list() {
		if strings.HasPrefix(e, prefix) {
			return i
		}
	}
	return -1
}

// fakeReporter is a Reporter. Like the session, Report delivers nothing on a dead context,
// Send takes the event whatever the context, and after a refusal both fail with it.
type fakeReporter struct {
	j *journal

	mu       sync.Mutex
	events   []protocol.Event
	attempts []job.State
	sent     []job.State // the states handed to Send
	refusal  error
	refused  chan struct{}
	// before, when set, runs first (outside the lock); its error is returned.
	before func(ctx context.Context, ev protocol.Event) error
}

func (f *fakeReporter) Report(ctx context.Context, ev protocol.Event) error {
	return f.deliver(ctx, ev, false)
}

func (f *fakeReporter) Send(ctx context.Context, ev protocol.Event) error {
	return f.deliver(ctx, ev, true)
}

func (f *fakeReporter) deliver(ctx context.Context, ev protocol.Event, send bool) error {
	f.mu.Lock()
	f.attempts = append(f.attempts, ev.State)
	if send {
		f.sent = append(f.sent, ev.State)
	}
	before, refusal := f.before, f.refusal
	f.mu.Unlock()
	if refusal != nil {
		return refusal
	}
	if before != nil {
		if err := before(ctx, ev); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil && !send {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	f.j.add("report %s", ev.State)
	return nil
}

// Refused is closed by refuse.
func (f *fakeReporter) Refused() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused == nil {
		f.refused = make(chan struct{})
	}
	return f.refused
}

// refuse acts as the coordinator's refusal of an event already sent: Refused closes, and
// every later Send and Report fails with err.
func (f *fakeReporter) refuse(err error) {
	f.Refused()
	f.mu.Lock()
	f.refusal = err
	ch := f.refused
	f.mu.Unlock()
	close(ch)
}

func (f *fakeReporter) got() []protocol.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func (f *fakeReporter) states() []job.State {
	var out []job.State
	for _, ev := range f.got() {
		out = append(out, ev.State)
	}
	return out
}

// fakeTransfers is a Transfers on the local file system: downloads write fixed content,
// uploads read the file and return its real CRC64/NVME.
type fakeTransfers struct {
	j *journal

	mu        sync.Mutex
	downloads []transfer.Download
	uploaded  map[string]string // S3 path → content
	// download, when set, replaces the download's work; upload, when set, runs before the
	// upload's work (its error is returned).
	download func(ctx context.Context, ds []transfer.Download) error
	upload   func(ctx context.Context, us []transfer.Upload) error
	// short drops the last upload from the result.
	short bool
	// progress, when set, is told the bytes moved, like transfer.Config.OnProgress.
	progress func(path string, bytes int64)
}

func (f *fakeTransfers) moved(path string, bytes int64) {
	f.mu.Lock()
	p := f.progress
	f.mu.Unlock()
	if p != nil {
		p(path, bytes)
	}
}

func (f *fakeTransfers) DownloadAll(ctx context.Context, ds []transfer.Download) error {
	f.mu.Lock()
	f.downloads = append(f.downloads, ds...)
	dl := f.download
	f.mu.Unlock()
	f.j.add("download %d", len(ds))
	if dl != nil {
		return dl(ctx, ds)
	}
	for _, d := range ds {
		if err := os.MkdirAll(filepath.Dir(d.Dest), 0o755); err != nil {
			return err
		}
		f.moved(d.S3Path, d.Size/2)
		if err := os.WriteFile(d.Dest, []byte("content of "+d.S3Path), 0o644); err != nil {
			return err
		}
		f.moved(d.S3Path, d.Size)
	}
	return nil
}

func (f *fakeTransfers) UploadAll(ctx context.Context, us []transfer.Upload) ([]transfer.Uploaded, error) {
	f.mu.Lock()
	up, short := f.upload, f.short
	f.mu.Unlock()
	if up != nil {
		if err := up(ctx, us); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []transfer.Uploaded
	for _, u := range us {
		b, err := os.ReadFile(u.Source)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.uploaded[u.S3Path] = string(b)
		f.mu.Unlock()
		f.moved(u.S3Path, int64(len(b)))
		f.j.add("upload %s", u.S3Path)
		out = append(out, transfer.Uploaded{S3Path: u.S3Path, CRC64NVME: checksum.Encode(checksum.Sum(b)), Size: int64(len(b))})
	}
	if short && len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (f *fakeTransfers) uploads() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.uploaded {
		out[k] = v
	}
	return out
}

// outputUploads are the uploads below the assignment's output dir.
func (f *fakeTransfers) outputUploads() []string {
	var out []string
	for k := range f.uploads() {
		if strings.HasPrefix(k, "bucket/out/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// fakeRuntime is a container.Runtime whose Run calls run with the spec.
type fakeRuntime struct {
	j *journal

	mu      sync.Mutex
	pulled  []string
	specs   []container.Spec
	pullErr error
	pull    func(ctx context.Context) error // when set, the pull's work (after pullErr)
	run     func(ctx context.Context, spec container.Spec) (container.Result, error)
	started chan struct{}
}

var _ container.Runtime = (*fakeRuntime)(nil)

func (f *fakeRuntime) Pull(ctx context.Context, image string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulled = append(f.pulled, image)
	f.j.add("pull %s", image)
	if f.pullErr != nil || f.pull == nil {
		return f.pullErr
	}
	pull := f.pull
	f.mu.Unlock()
	defer f.mu.Lock()
	return pull(ctx)
}

func (f *fakeRuntime) Run(ctx context.Context, spec container.Spec) (container.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	run := f.run
	f.mu.Unlock()
	f.j.add("run")
	close(f.started)
	return run(ctx, spec)
}

func (f *fakeRuntime) Reap(context.Context, bool) ([]container.Leftover, error) { return nil, nil }
func (f *fakeRuntime) Remove(context.Context, string) error                     { return nil }
func (f *fakeRuntime) Known(context.Context, string) bool                       { return false }
func (f *fakeRuntime) PruneImages(context.Context, int64, time.Duration) ([]container.PrunedImage, error) {
	return nil, nil
}

func (f *fakeRuntime) ran() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.specs) > 0
}

// mountSource is the host directory mounted at dest.
func mountSource(spec container.Spec, dest string) string {
	for _, m := range spec.Mounts {
		if m.Destination == dest {
			return m.Source
		}
	}
	return ""
}

// writeOutputs is a container's work: its streams and two output files.
func writeOutputs(spec container.Spec, files map[string]string) error {
	fmt.Fprint(spec.Stdout, "hello stdout\n")
	fmt.Fprint(spec.Stderr, "hello stderr\n")
	out := mountSource(spec, "/out")
	for rel, content := range files {
		p := filepath.Join(out, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

var defaultOutputs = map[string]string{"a.txt": "output a", "sub/b.txt": "output b"}

// exitWith is a container that writes its outputs and ends with res.
func exitWith(res container.Result) func(context.Context, container.Spec) (container.Result, error) {
	return func(ctx context.Context, spec container.Spec) (container.Result, error) {
		if err := writeOutputs(spec, defaultOutputs); err != nil {
			return container.Result{}, err
		}
		return res, nil
	}
}

// waitCanceled is a container that runs until ctx ends.
func waitCanceled(ctx context.Context, spec container.Spec) (container.Result, error) {
	fmt.Fprint(spec.Stdout, "working\n")
	<-ctx.Done()
	return container.Result{ExitCode: -1, Canceled: true}, nil
}

const testImage = "reg.example/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testAssignment() *protocol.Assignment {
	return &protocol.Assignment{
		JobID: "job12345678abc", Container: 1, Image: testImage,
		Command: []string{"/bin/tool", "-i", "/in/x.fa"}, Env: []string{"A=1"},
		Inputs: []protocol.InputFile{
			{S3Path: "bucket/in/x.fa", CRC64NVME: "AAAAAAAAAAA=", Size: 3, RelPath: "x.fa"},
			{S3Path: "bucket/in/d/y.fa", CRC64NVME: "BBBBBBBBBBB=", Size: 4, RelPath: "d/y.fa"},
		},
		InputMountPoint: "/in", OutputMountPoint: "/out", OutputDir: "bucket/out/", LogDir: "logs/job12345678abc/",
		CPUs: 2, MemoryBytes: 1 << 30, RuntimeSeconds: 60, NextSeq: 1,
	}
}

// harness wires a Runner to fakes.
type harness struct {
	j       *journal
	rep     *fakeReporter
	xfer    *fakeTransfers
	rt      *fakeRuntime
	cancels chan protocol.Cancel
	dir     string
	cfg     Config
	a       *protocol.Assignment
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	j := &journal{}
	dir := t.TempDir()
	h := &harness{
		j: j, rep: &fakeReporter{j: j}, xfer: &fakeTransfers{j: j, uploaded: map[string]string{}},
		rt:      &fakeRuntime{j: j, run: exitWith(container.Result{}), started: make(chan struct{})},
		cancels: make(chan protocol.Cancel, 1), dir: dir, a: testAssignment(),
	}
	// HostPath must be applied to the mounts: this one is a different spelling of the same
	// directory, so the fake runtime can still use it.
	h.cfg = Config{WorkDir: filepath.Join(dir, "work"), Attempt: "17.1", Network: container.NetworkNone,
		KillGrace: 3 * time.Second, FinalTimeout: 5 * time.Second,
		HostPath: func(p string) string {
			return dir + "/../" + filepath.Base(dir) + strings.TrimPrefix(p, dir)
		}}
	return h
}

func (h *harness) run(t *testing.T, ctx context.Context) error {
	t.Helper()
	r := New(h.cfg, h.rep, h.xfer, h.rt, h.cancels, slog.New(slog.DiscardHandler))
	h.xfer.mu.Lock()
	h.xfer.progress = r.TransferProgress
	h.xfer.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return r.Run(ctx, h.a)
}

func statesOf(ss ...job.State) []job.State { return ss }

func last(evs []protocol.Event) protocol.Event {
	if len(evs) == 0 {
		return protocol.Event{}
	}
	return evs[len(evs)-1]
}

// checkLogsUploaded checks that both container logs went to the log dir, with the container's
// output, before the final report.
func checkLogsUploaded(t *testing.T, h *harness) {
	t.Helper()
	ups := h.xfer.uploads()
	for _, stream := range []string{"stdout", "stderr"} {
		key := fmt.Sprintf("logs/job12345678abc/container-1-%s.txt", stream)
		if _, ok := ups[key]; !ok {
			t.Errorf("log %s not uploaded (uploads %v)", key, ups)
			continue
		}
		entries := h.j.list()
		final := slices.IndexFunc(entries, func(e string) bool {
			return e == "report "+string(job.Error) || e == "report "+string(job.Complete)
		})
		if i := h.j.index("upload " + key); final < 0 || i > final {
			t.Errorf("journal %v: the log upload must precede the final report", entries)
		}
	}
}

func checkNoLogs(t *testing.T, h *harness) {
	t.Helper()
	for k := range h.xfer.uploads() {
		if strings.HasPrefix(k, "logs/") {
			t.Errorf("log %s uploaded, but the container never ran", k)
		}
	}
}

func TestSuccess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		declobber bool
		prefix    string
	}{
		{"plain", false, "bucket/out/"},
		{"declobber", true, "bucket/out/1/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.a.Declobber = tc.declobber
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			evs := h.rep.got()
			want := statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete)
			if !slices.Equal(h.rep.states(), want) {
				t.Fatalf("states = %v, want %v", h.rep.states(), want)
			}
			if ec := evs[2].ExitCode; ec == nil || *ec != 0 || evs[2].OOMKilled {
				t.Errorf("upload_submitting = %+v, want exit code 0", evs[2])
			}
			wantOut := []protocol.OutputFile{
				{File: tc.prefix + "a.txt", CRC64NVME: checksum.Encode(checksum.Sum([]byte("output a")))},
				{File: tc.prefix + "sub/b.txt", CRC64NVME: checksum.Encode(checksum.Sum([]byte("output b")))},
			}
			if got := evs[4].Outputs; !slices.Equal(got, wantOut) {
				t.Errorf("complete outputs = %+v, want %+v", got, wantOut)
			}
			if evs[4].Error != "" || evs[4].AdminError != "" {
				t.Errorf("complete carries an error: %+v", evs[4])
			}
			ups := h.xfer.uploads()
			if ups[tc.prefix+"a.txt"] != "output a" || ups[tc.prefix+"sub/b.txt"] != "output b" {
				t.Errorf("uploads = %v", ups)
			}
			if ups["logs/job12345678abc/container-1-stdout.txt"] != "hello stdout\n" ||
				ups["logs/job12345678abc/container-1-stderr.txt"] != "hello stderr\n" {
				t.Errorf("log uploads = %v", ups)
			}
			checkLogsUploaded(t, h)
			// Outputs go up after upload_submitted, inputs before job_submitting.
			if jr := h.j; jr.index("upload "+tc.prefix+"a.txt") < jr.index("report upload_submitted") ||
				jr.index("download") > jr.index("report job_submitting") ||
				jr.index("pull") < jr.index("report job_submitting") || jr.index("run") < jr.index("report job_submitted") {
				t.Errorf("order: %v", jr.list())
			}
		})
	}
}

// TestLogsUploadBesideOutputs: on success the container's logs go up while the outputs do,
// not after them (one round of uploads instead of two); each upload once.
func TestLogsUploadBesideOutputs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	logsStarted := make(chan struct{})
	var once sync.Once
	var calls atomic.Int32
	h.xfer.upload = func(ctx context.Context, us []transfer.Upload) error {
		calls.Add(1)
		if len(us) > 0 && strings.HasPrefix(us[0].S3Path, "logs/") {
			once.Do(func() { close(logsStarted) })
			return nil
		}
		select {
		case <-logsStarted:
			return nil
		case <-time.After(time.Minute):
			return errors.New("the logs did not start uploading while the outputs did")
		}
	}
	if err := h.run(t, t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete); !slices.Equal(h.rep.states(), want) {
		t.Fatalf("states = %v, want %v", h.rep.states(), want)
	}
	checkLogsUploaded(t, h)
	if n := calls.Load(); n != 2 {
		t.Errorf("%d upload batches, want 2 (outputs, logs)", n)
	}
}

func TestSuccessInputsAndSpec(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var inputSeen string
	h.rt.run = func(ctx context.Context, spec container.Spec) (container.Result, error) {
		b, err := os.ReadFile(filepath.Join(mountSource(spec, "/in"), "d", "y.fa"))
		inputSeen = string(b)
		if err != nil {
			return container.Result{}, err
		}
		return exitWith(container.Result{})(ctx, spec)
	}
	if err := h.run(t, t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if inputSeen != "content of bucket/in/d/y.fa" {
		t.Errorf("the container saw input %q", inputSeen)
	}
	work := h.cfg.WorkDir
	wantDl := []transfer.Download{
		{S3Path: "bucket/in/x.fa", CRC64NVME: "AAAAAAAAAAA=", Size: 3, Dest: filepath.Join(work, "input", "x.fa")},
		{S3Path: "bucket/in/d/y.fa", CRC64NVME: "BBBBBBBBBBB=", Size: 4, Dest: filepath.Join(work, "input", "d", "y.fa")},
	}
	if !slices.Equal(h.xfer.downloads, wantDl) {
		t.Errorf("downloads = %+v, want %+v", h.xfer.downloads, wantDl)
	}
	if !slices.Equal(h.rt.pulled, []string{testImage}) {
		t.Errorf("pulled %v", h.rt.pulled)
	}
	spec := h.rt.specs[0]
	wantMounts := []container.Mount{
		{Source: h.cfg.HostPath(filepath.Join(work, "input")), Destination: "/in", ReadOnly: true},
		{Source: h.cfg.HostPath(filepath.Join(work, "output")), Destination: "/out"},
	}
	if !slices.Equal(spec.Mounts, wantMounts) || !strings.Contains(spec.Mounts[0].Source, "..") {
		t.Errorf("mounts = %+v, want %+v (through HostPath)", spec.Mounts, wantMounts)
	}
	if spec.Image != testImage || !slices.Equal(spec.Command, h.a.Command) || !slices.Equal(spec.Env, h.a.Env) ||
		spec.CPUs != 2 || spec.MemoryBytes != 1<<30 || spec.Timeout != time.Minute || spec.Network != container.NetworkNone ||
		spec.KillGrace != 3*time.Second {
		t.Errorf("spec = %+v", spec)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_+.-]+$`).MatchString(spec.ID) || !strings.Contains(spec.ID, "job12345") {
		t.Errorf("container ID %q", spec.ID)
	}
	fi, err := os.Stat(filepath.Join(work, "output"))
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("output dir mode = %v (%v), want 0777: the container's user is unknown", fi.Mode(), err)
	}
}

func TestContainerIDDependsOnAttempt(t *testing.T) {
	t.Parallel()
	a := testAssignment()
	r1 := New(Config{Attempt: "1.0"}, nil, nil, nil, nil, nil)
	r2 := New(Config{Attempt: "1.1"}, nil, nil, nil, nil, nil)
	id1 := r1.containerID(a)
	if id1 == r2.containerID(a) || id1 != r1.containerID(a) {
		t.Errorf("ids %q %q", r1.containerID(a), r2.containerID(a))
	}
}

func TestUserContainerFailure(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		res     container.Result
		message string
	}{
		// A plain exit code has no user message of its own: the coordinator words it.
		{"exit 3", container.Result{ExitCode: 3}, ""},
		{"timeout", container.Result{ExitCode: 143, TimedOut: true}, "The container ran longer than the job's runtime limit of 1 minute and was stopped. Resubmit the job with a longer runtime."},
		{"timeout, exit 0", container.Result{ExitCode: 0, TimedOut: true}, "runtime limit of 1 minute"},
		{"oom", container.Result{ExitCode: 137, OOMKilled: true}, "The container used more than the job's memory limit of 1.07 GB (1073741824 bytes) and was killed. Resubmit the job with more memory."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.rt.run = exitWith(tc.res)
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			want := statesOf(job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Error)
			if !slices.Equal(h.rep.states(), want) {
				t.Fatalf("states = %v, want %v", h.rep.states(), want)
			}
			evs := h.rep.got()
			if ec := evs[2].ExitCode; ec == nil || *ec != tc.res.ExitCode || evs[2].OOMKilled != tc.res.OOMKilled {
				t.Errorf("error_processing_submitting = %+v", evs[2])
			}
			fin := last(evs)
			if (tc.message == "") != (fin.Error == "") || !strings.Contains(fin.Error, tc.message) || fin.AdminError == "" || fin.OOMKilled != tc.res.OOMKilled ||
				fin.ExitCode == nil || *fin.ExitCode != tc.res.ExitCode || fin.Outputs != nil {
				t.Errorf("final = %+v, want error %q", fin, tc.message)
			}
			if outs := h.xfer.outputUploads(); len(outs) != 0 {
				t.Errorf("outputs of a failed container uploaded: %v", outs)
			}
			checkLogsUploaded(t, h)
		})
	}
}

func TestDownloadChecksumMismatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.xfer.download = func(ctx context.Context, ds []transfer.Download) error {
		return fmt.Errorf("download bucket/in/d/y.fa: %w",
			&checksum.MismatchError{Path: "bucket/in/d/y.fa", Want: "BBBBBBBBBBB=", Got: "CCCCCCCCCCC="})
	}
	if err := h.run(t, t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(h.rep.states(), statesOf(job.Error)) {
		t.Fatalf("states = %v, want a single error", h.rep.states())
	}
	fin := last(h.rep.got())
	if !strings.Contains(fin.Error, "bucket/in/d/y.fa") || !strings.Contains(fin.Error, "checksum") ||
		!strings.Contains(fin.AdminError, "checksum mismatch") {
		t.Errorf("final = %+v", fin)
	}
	if len(h.rt.pulled) != 0 || h.rt.ran() || len(h.xfer.uploads()) != 0 {
		t.Errorf("pulled %v, ran %v, uploads %v: nothing may happen after a bad input", h.rt.pulled, h.rt.ran(), h.xfer.uploads())
	}
}

func TestSystemFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		setup  func(h *harness)
		states []job.State
		// user and admin are substrings of the final event's Error and AdminError.
		user, admin string
		logs        bool
		outputs     bool // the outputs were uploaded before the failure
	}{
		{
			name:   "pull digest mismatch",
			setup:  func(h *harness) { h.rt.pullErr = fmt.Errorf("copy layer: %w", container.ErrDigestMismatch) },
			states: statesOf(job.JobSubmitting, job.Error),
			user:   "its content does not match its digest", admin: "blob digest mismatch",
		},
		{
			name: "image not in its registry",
			setup: func(h *harness) {
				h.rt.pullErr = fmt.Errorf("pull reg/x@sha256:1: %w: manifest unknown", container.ErrImageUnavailable)
			},
			states: statesOf(job.JobSubmitting, job.Error),
			user:   "could not be pulled from its registry (manifest unknown). Nothing ran", admin: "manifest unknown",
		},
		{
			name: "disk full while unpacking",
			setup: func(h *harness) {
				h.rt.pullErr = fmt.Errorf("unpack: %w: write x: no space left on device", container.ErrNoSpace)
			},
			states: statesOf(job.JobSubmitting, job.Error),
			user:   "ran out of disk space while preparing the container image", admin: "no space left on device",
		},
		{
			name: "docker engine gone",
			setup: func(h *harness) {
				h.rt.pullErr = fmt.Errorf("docker GET /images: %w: dial unix /var/run/docker.sock: connect: no such file", container.ErrEngineUnavailable)
			},
			states: statesOf(job.JobSubmitting, job.Error),
			user:   "The container runtime of the compute node is not working", admin: "docker.sock",
		},
		{
			name: "container cannot start",
			setup: func(h *harness) {
				h.rt.run = func(ctx context.Context, spec container.Spec) (container.Result, error) {
					return container.Result{ExitCode: -1}, &container.StartError{ID: spec.ID, Message: `exec: "/bin/tool": not found`}
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.Error),
			user:   `The container could not be started: exec: "/bin/tool": not found. Check the image's entrypoint`, admin: "run container", logs: true,
		},
		{
			name: "runtime failure",
			setup: func(h *harness) {
				h.rt.run = func(context.Context, container.Spec) (container.Result, error) {
					return container.Result{ExitCode: -1}, errors.New("runc: cgroup trouble")
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.Error),
			user:   "An unexpected error occurred.", admin: "cgroup trouble", logs: true,
		},
		{
			name: "runtime reports a cancel nobody asked for",
			setup: func(h *harness) {
				h.rt.run = exitWith(container.Result{ExitCode: 0, Canceled: true})
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.Error),
			user:   "An unexpected error occurred.", admin: "without a cancel", logs: true,
		},
		{
			name: "output symlink",
			setup: func(h *harness) {
				h.rt.run = func(ctx context.Context, spec container.Spec) (container.Result, error) {
					if err := os.Symlink("/etc/passwd", filepath.Join(mountSource(spec, "/out"), "link")); err != nil {
						return container.Result{}, err
					}
					return exitWith(container.Result{})(ctx, spec)
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			user:   "Output link is not a regular file", admin: "link", logs: true,
		},
		{
			name: "output name invalid in S3",
			setup: func(h *harness) {
				h.rt.run = func(ctx context.Context, spec container.Spec) (container.Result, error) {
					if err := writeOutputs(spec, map[string]string{"bad;name.txt": "x", "ok.txt": "y"}); err != nil {
						return container.Result{}, err
					}
					return container.Result{}, nil
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			user:   "Output file name bad;name.txt cannot be stored in S3", admin: "bad;name.txt", logs: true,
		},
		{
			name: "output upload fails",
			setup: func(h *harness) {
				h.xfer.upload = func(ctx context.Context, us []transfer.Upload) error {
					if strings.HasPrefix(us[0].S3Path, "bucket/out/") {
						return fmt.Errorf("put: %w", transfer.ErrAccessDenied)
					}
					return nil
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			user:   "An unexpected error occurred.", admin: "s3 access denied", logs: true,
		},
		{
			name:   "transfers report fewer uploads than asked",
			setup:  func(h *harness) { h.xfer.short = true },
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			user:   "An unexpected error occurred.", admin: "1 of 2 files", logs: true, outputs: true,
		},
		{
			name: "log upload fails after success",
			setup: func(h *harness) {
				h.xfer.upload = func(ctx context.Context, us []transfer.Upload) error {
					if len(us) > 0 && strings.HasPrefix(us[0].S3Path, "logs/") {
						return errors.New("log bucket gone")
					}
					return nil
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			user:   "The container's logs could not be saved.", admin: "log bucket gone", outputs: true,
		},
		{
			name: "panic in output upload",
			setup: func(h *harness) {
				h.xfer.upload = func(context.Context, []transfer.Upload) error { panic("boom in transfers") }
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			user:   "An unexpected error occurred.", admin: "agent panic: boom in transfers",
		},
		{
			name: "panic in download",
			setup: func(h *harness) {
				h.xfer.download = func(context.Context, []transfer.Download) error { panic("boom in download") }
			},
			states: statesOf(job.Error),
			user:   "An unexpected error occurred.", admin: "agent panic: boom in download",
		},
		{
			name: "panic in the runtime",
			setup: func(h *harness) {
				h.rt.run = func(context.Context, container.Spec) (container.Result, error) { panic("boom in runtime") }
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.Error),
			user:   "An unexpected error occurred.", admin: "agent panic: boom in runtime", logs: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.setup(h)
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v (the final report was delivered, so Run must return nil)", err)
			}
			if !slices.Equal(h.rep.states(), tc.states) {
				t.Fatalf("states = %v, want %v", h.rep.states(), tc.states)
			}
			fin := last(h.rep.got())
			if !strings.Contains(fin.Error, tc.user) || !strings.Contains(fin.AdminError, tc.admin) {
				t.Errorf("final error = %q / admin %q, want %q / %q", fin.Error, fin.AdminError, tc.user, tc.admin)
			}
			if fin.Outputs != nil {
				t.Errorf("a failed container reported outputs: %+v", fin.Outputs)
			}
			if outs := h.xfer.outputUploads(); len(outs) != 0 && !tc.outputs {
				t.Errorf("outputs uploaded: %v", outs)
			}
			if tc.logs {
				checkLogsUploaded(t, h)
			}
		})
	}
}

func TestUnsafeInputPath(t *testing.T) {
	t.Parallel()
	for _, rel := range []string{"../x", "/abs", "a/../../x", "", ".", ".."} {
		t.Run(fmt.Sprintf("%q", rel), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.a.Inputs[1].RelPath = rel
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !slices.Equal(h.rep.states(), statesOf(job.Error)) {
				t.Fatalf("states = %v, want a single error", h.rep.states())
			}
			if fin := last(h.rep.got()); !strings.Contains(fin.AdminError, "unsafe input path") {
				t.Errorf("final = %+v", fin)
			}
			if len(h.xfer.downloads) != 0 || h.rt.ran() {
				t.Errorf("downloads %v, ran %v", h.xfer.downloads, h.rt.ran())
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	cancelled := func(h *harness) { h.cancels <- protocol.Cancel{Reason: "user request"} }
	cases := []struct {
		name   string
		setup  func(h *harness)
		states []job.State
		logs   bool
	}{
		{
			name: "while the container runs",
			setup: func(h *harness) {
				h.rt.run = waitCanceled
				go func() { <-h.rt.started; cancelled(h) }()
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.Error),
			logs:   true,
		},
		{
			name: "while downloading",
			setup: func(h *harness) {
				h.xfer.download = func(ctx context.Context, ds []transfer.Download) error {
					cancelled(h)
					<-ctx.Done()
					return fmt.Errorf("get: %w", ctx.Err())
				}
			},
			states: statesOf(job.Error),
		},
		{
			name: "while job_submitted is being reported",
			setup: func(h *harness) {
				h.rep.before = func(ctx context.Context, ev protocol.Event) error {
					if ev.State == job.JobSubmitted {
						cancelled(h)
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				}
			},
			states: statesOf(job.JobSubmitting, job.Error),
		},
		{
			name: "while uploading outputs",
			setup: func(h *harness) {
				h.xfer.upload = func(ctx context.Context, us []transfer.Upload) error {
					if strings.HasPrefix(us[0].S3Path, "bucket/out/") {
						cancelled(h)
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				}
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Error),
			logs:   true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.setup(h)
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !slices.Equal(h.rep.states(), tc.states) {
				t.Fatalf("states = %v, want %v", h.rep.states(), tc.states)
			}
			fin := last(h.rep.got())
			if fin.Error != "The job was canceled." || !strings.Contains(fin.AdminError, "user request") {
				t.Errorf("final = %+v", fin)
			}
			if tc.logs {
				checkLogsUploaded(t, h)
			} else {
				checkNoLogs(t, h)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		setup  func(h *harness, stop func())
		states []job.State
		logs   bool
	}{
		{
			name: "while the container runs",
			setup: func(h *harness, stop func()) {
				h.rt.run = waitCanceled
				go func() { <-h.rt.started; stop() }()
			},
			states: statesOf(job.JobSubmitting, job.JobSubmitted, job.Error),
			logs:   true,
		},
		{
			name: "while job_submitting is sent",
			setup: func(h *harness, stop func()) {
				h.rep.before = func(ctx context.Context, ev protocol.Event) error {
					if ev.State == job.JobSubmitting {
						stop()
					}
					return nil
				}
			},
			// The state was handed over (the session delivers it before the final one); the
			// container never starts.
			states: statesOf(job.JobSubmitting, job.Error),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			ctx, stop := context.WithCancelCause(t.Context())
			tc.setup(h, func() { stop(ErrShutdown) })
			if err := h.run(t, ctx); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !slices.Equal(h.rep.states(), tc.states) {
				t.Fatalf("states = %v, want %v", h.rep.states(), tc.states)
			}
			fin := last(h.rep.got())
			if !strings.Contains(fin.Error, "stopped by the compute system") || fin.AdminError == "" {
				t.Errorf("final = %+v", fin)
			}
			if tc.logs {
				checkLogsUploaded(t, h)
			} else if h.rt.ran() {
				t.Error("the container started after the stop")
			}
		})
	}
}

func TestOnlyTheFinalStateWaitsForItsAcknowledgement(t *testing.T) {
	t.Parallel()
	// The states before the final one record progress: they are sent without waiting; the
	// final one is reported (acknowledged, with every state before it).
	cases := []struct {
		name string
		res  container.Result
		sent []job.State
		last job.State
	}{
		{"success", container.Result{}, statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted), job.Complete},
		{"exit 3", container.Result{ExitCode: 3}, statesOf(job.JobSubmitting, job.JobSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted), job.Error},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.rt.run = exitWith(tc.res)
			if err := h.run(t, t.Context()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			h.rep.mu.Lock()
			sent, attempts := slices.Clone(h.rep.sent), slices.Clone(h.rep.attempts)
			h.rep.mu.Unlock()
			if !slices.Equal(sent, tc.sent) {
				t.Errorf("sent without waiting: %v, want %v", sent, tc.sent)
			}
			if want := append(slices.Clone(tc.sent), tc.last); !slices.Equal(attempts, want) {
				t.Errorf("handed to the reporter: %v, want %v (the last one reported)", attempts, want)
			}
		})
	}
}

func TestRefusalOfASentStateStopsTheRun(t *testing.T) {
	t.Parallel()
	// The coordinator refuses a state the runner sent without waiting (the job was canceled
	// or relaunched meanwhile): the run stops where it is, stops the container if it runs,
	// uploads nothing more and ends with the refusal.
	refusal := errors.New("refused by the coordinator: Job job12345678abc is canceling")
	cases := []struct {
		name      string
		setup     func(h *harness)
		delivered []job.State // accepted by the reporter before the refusal
		ran       bool
	}{
		{
			name: "while the image is pulled",
			setup: func(h *harness) {
				h.rep.before = func(ctx context.Context, ev protocol.Event) error {
					if ev.State == job.JobSubmitting {
						// The pull that follows sees the run's context end.
						go h.rep.refuse(refusal)
					}
					return nil
				}
				h.rt.pull = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
			},
			delivered: statesOf(job.JobSubmitting),
		},
		{
			name: "while the container runs",
			setup: func(h *harness) {
				h.rt.run = waitCanceled
				go func() { <-h.rt.started; h.rep.refuse(refusal) }()
			},
			delivered: statesOf(job.JobSubmitting, job.JobSubmitted),
			ran:       true,
		},
		{
			name: "while the outputs go up",
			setup: func(h *harness) {
				h.xfer.upload = func(ctx context.Context, us []transfer.Upload) error {
					if strings.HasPrefix(us[0].S3Path, "bucket/out/") {
						h.rep.refuse(refusal)
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				}
			},
			delivered: statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted),
			ran:       true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.setup(h)
			start := time.Now()
			err := h.run(t, t.Context())
			if !errors.Is(err, refusal) {
				t.Fatalf("Run = %v, want the refusal", err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("Run took %s after the refusal", d)
			}
			if got := h.rep.states(); !slices.Equal(got, tc.delivered) {
				t.Errorf("delivered %v, want %v and nothing after the refusal", got, tc.delivered)
			}
			if h.rt.ran() != tc.ran {
				t.Errorf("ran = %v, want %v", h.rt.ran(), tc.ran)
			}
			if outs := h.xfer.outputUploads(); len(outs) != 0 {
				t.Errorf("outputs uploaded after the refusal: %v", outs)
			}
			for k := range h.xfer.uploads() {
				if strings.HasPrefix(k, "logs/") && tc.name != "while the outputs go up" {
					t.Errorf("log %s uploaded after the refusal", k)
				}
			}
		})
	}
}

func TestUnreachableStopsTheContainer(t *testing.T) {
	t.Parallel()
	// The coordinator stays unreachable while the container runs: the run stops the container
	// and ends with ErrUnreachable without waiting to deliver anything; its final event is
	// handed to the reporter on an ended context (the session journals it).
	h := newHarness(t)
	h.rt.run = waitCanceled
	unreachable := make(chan struct{})
	h.cfg.Unreachable = unreachable
	go func() { <-h.rt.started; close(unreachable) }()
	start := time.Now()
	err := h.run(t, t.Context())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Run = %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run took %s after the coordinator was declared unreachable", d)
	}
	if got := h.rep.states(); !slices.Equal(got, statesOf(job.JobSubmitting, job.JobSubmitted)) {
		t.Errorf("delivered %v, want only the states before the loss", got)
	}
	h.rep.mu.Lock()
	attempts := slices.Clone(h.rep.attempts)
	h.rep.mu.Unlock()
	if attempts[len(attempts)-1] != job.Error {
		t.Errorf("the final error was not handed to the reporter (attempts %v)", attempts)
	}
	checkNoLogs(t, h)
}

func TestReporterFailureStopsReporting(t *testing.T) {
	t.Parallel()
	errRefused := errors.New("refused by the coordinator")
	cases := []struct {
		name     string
		failOn   job.State
		attempts []job.State
		ran      bool
	}{
		{"job_submitting", job.JobSubmitting, statesOf(job.JobSubmitting), false},
		{"job_submitted", job.JobSubmitted, statesOf(job.JobSubmitting, job.JobSubmitted), false},
		{"upload_submitting", job.UploadSubmitting, statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting), true},
		{"complete", job.Complete, statesOf(job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.rep.before = func(ctx context.Context, ev protocol.Event) error {
				if ev.State == tc.failOn {
					return errRefused
				}
				return nil
			}
			err := h.run(t, t.Context())
			if !errors.Is(err, errRefused) {
				t.Fatalf("Run = %v, want the reporter's error", err)
			}
			h.rep.mu.Lock()
			attempts := slices.Clone(h.rep.attempts)
			h.rep.mu.Unlock()
			if !slices.Equal(attempts, tc.attempts) {
				t.Errorf("report attempts = %v, want %v (nothing after the refusal)", attempts, tc.attempts)
			}
			if h.rt.ran() != tc.ran {
				t.Errorf("ran = %v", h.rt.ran())
			}
		})
	}
}

func TestFinalReportTimeout(t *testing.T) {
	t.Parallel()
	t.Run("a run that ends by itself is not bounded by FinalTimeout", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.cfg.FinalTimeout = 50 * time.Millisecond
		h.rep.before = func(ctx context.Context, ev protocol.Event) error {
			if ev.State == job.Complete {
				time.Sleep(300 * time.Millisecond) // the coordinator is slow to come back
			}
			return nil
		}
		if err := h.run(t, t.Context()); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if s := h.rep.states(); s[len(s)-1] != job.Complete {
			t.Errorf("states = %v", s)
		}
	})
	t.Run("after a shutdown the final report is bounded", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.cfg.FinalTimeout = 200 * time.Millisecond
		h.rt.run = waitCanceled
		h.rep.before = func(ctx context.Context, ev protocol.Event) error {
			if ev.State == job.Error {
				<-ctx.Done() // the coordinator never answers
				return ctx.Err()
			}
			return nil
		}
		ctx, stop := context.WithCancelCause(t.Context())
		go func() { <-h.rt.started; stop(ErrShutdown) }()
		start := time.Now()
		err := h.run(t, ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want the abandoned final report's error", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Run took %s", d)
		}
	})
}

func TestFinalContext(t *testing.T) {
	t.Parallel()
	// A grace far longer than the test: the context must outlive the run's own end.
	runCtx, cancelRun := context.WithCancel(t.Context())
	ctx, cancel := finalContext(runCtx, time.Hour)
	defer cancel()
	time.Sleep(50 * time.Millisecond) // any wait will do: the grace has not started
	if ctx.Err() != nil {
		t.Fatal("the final context ended while the run's was live")
	}
	cancelRun()
	if ctx.Err() != nil {
		t.Fatal("the final context ended with the run's, without the grace")
	}
	// A short grace: it ends once the grace after the run's end is over (however late the
	// machine gets to it), and cancel ends it at once.
	runCtx2, cancelRun2 := context.WithCancel(t.Context())
	short, cancelShort := finalContext(runCtx2, 10*time.Millisecond)
	defer cancelShort()
	cancelRun2()
	select {
	case <-short.Done():
	case <-time.After(time.Minute):
		t.Fatal("the final context outlived its timeout after the run's ended")
	}
	cancel()
	if ctx.Err() == nil {
		t.Error("cancel did not end the final context")
	}
}

func TestRunLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		h := newHarness(t)
		if err := h.run(t, t.Context()); err != nil {
			t.Fatal(err)
		}
		h = newHarness(t)
		h.rt.run = waitCanceled
		go func() { <-h.rt.started; h.cancels <- protocol.Cancel{} }()
		if err := h.run(t, t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
