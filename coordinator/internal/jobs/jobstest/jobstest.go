// Package jobstest is the test fixture of a job's whole lifecycle: the real store on the
// embedded MongoDB, a real S3 behind objects.Objects, a real image manager, and admission,
// launch and ingest wired as the coordinator wires them, with an in-memory launcher. The
// lifecycle packages' tests use it; nothing else may.
package jobstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/coordinator/internal/sites"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

// Digests of the two registered images, and the log folder of the fixture's jobs.
const (
	ToolDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	RefimgDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	LogDir       = "cts-logs/container_logs"
)

// FakeLauncher is an in-memory launch.Launcher with the contract's idempotency: one launch per
// (JobID, Attempt), whose handle a repeated Submit returns again. Hold Mu to read or set its
// fields.
type FakeLauncher struct {
	Mu        sync.Mutex
	Launched  map[string]string // "job/attempt" -> handle
	Requests  []launcher.SubmitRequest
	Canceled  []launcher.JobRef
	SubmitErr error
	CancelErr error
}

// NewFakeLauncher returns a FakeLauncher that launched nothing yet.
func NewFakeLauncher() *FakeLauncher { return &FakeLauncher{Launched: map[string]string{}} }

// Submit launches a job attempt once.
func (l *FakeLauncher) Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	if err := req.Validate(); err != nil {
		return launcher.SubmitResponse{}, err
	}
	l.Mu.Lock()
	defer l.Mu.Unlock()
	if l.SubmitErr != nil {
		return launcher.SubmitResponse{}, l.SubmitErr
	}
	l.Requests = append(l.Requests, req)
	key := fmt.Sprintf("%s/%d", req.JobID, req.Attempt)
	if h, ok := l.Launched[key]; ok {
		return launcher.SubmitResponse{Handle: h, Existing: true}, nil
	}
	h := fmt.Sprintf("cluster-%d", len(l.Launched)+1)
	l.Launched[key] = h
	return launcher.SubmitResponse{Handle: h}, nil
}

// Cancel records the cancel, or fails with CancelErr.
func (l *FakeLauncher) Cancel(ctx context.Context, ref launcher.JobRef) error {
	l.Mu.Lock()
	defer l.Mu.Unlock()
	if l.CancelErr != nil {
		return l.CancelErr
	}
	l.Canceled = append(l.Canceled, ref)
	return nil
}

// Launches returns the number of distinct launches and of Submit calls.
func (l *FakeLauncher) Launches() (distinct, calls int) {
	l.Mu.Lock()
	defer l.Mu.Unlock()
	return len(l.Launched), len(l.Requests)
}

// Cancels returns the cancels so far.
func (l *FakeLauncher) Cancels() []launcher.JobRef {
	l.Mu.Lock()
	defer l.Mu.Unlock()
	return append([]launcher.JobRef(nil), l.Canceled...)
}

// FakeNotifier counts pokes.
type FakeNotifier struct{ Pokes atomic.Int64 }

// Poke counts.
func (n *FakeNotifier) Poke() { n.Pokes.Add(1) }

// HookStore decorates the real store: before each TransitionJob it may run a hook, which can
// fail the call (a store outage) or act in between (a concurrent writer).
type HookStore struct {
	*store.Store
	mu   sync.Mutex
	hook func(id string, to job.State) error
	// GetJobs counts the GetJob calls (the reads a fold makes).
	GetJobs atomic.Int64
}

// GetJob counts the call, then reads the job from the store.
func (h *HookStore) GetJob(ctx context.Context, id string) (*jobs.Job, error) {
	h.GetJobs.Add(1)
	return h.Store.GetJob(ctx, id)
}

// SetHook sets the hook (nil: none).
func (h *HookStore) SetHook(f func(id string, to job.State) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hook = f
}

// TransitionJob runs the hook, then the store's TransitionJob.
func (h *HookStore) TransitionJob(ctx context.Context, id string, from []job.State, t jobs.Transition, u jobs.JobUpdate) (*jobs.Job, error) {
	h.mu.Lock()
	f := h.hook
	h.mu.Unlock()
	if f != nil {
		if err := f(id, t.State); err != nil {
			return nil, err
		}
	}
	return h.Store.TransitionJob(ctx, id, from, t, u)
}

// Once wraps a hook so that it acts on the first call that moves a job to match only.
func Once(match job.State, f func(id string) error) func(string, job.State) error {
	var done atomic.Bool
	return func(id string, to job.State) error {
		if to != match || !done.CompareAndSwap(false, true) {
			return nil
		}
		return f(id)
	}
}

// ErrOutage is the error of an injected store outage.
var ErrOutage = errors.New("store outage (injected)")

// Fixture is a job's lifecycle over real MongoDB and S3 and a fake launcher.
type Fixture struct {
	S3       *devstack.S3
	DB       *mongo.Database
	Store    *HookStore
	Objs     *objects.Objects
	Imgs     *images.Manager
	Launcher *FakeLauncher
	Notify   *FakeNotifier
	Sites    *sites.Directory

	// The lifecycle, as Wire built it.
	Mover     *jobs.Mover
	Records   *jobs.Records
	Admission *admission.Service
	Ingest    *ingest.Service
	Launch    *launch.Service

	// CRCA and CRCB are the CRCs of the input objects inputs/in/a.txt and b.txt.
	CRCA, CRCB string
	// Stagings, when set before NewLaunch, are the reference data stagings it launches.
	Stagings launch.Stagings
}

// InputA and InputB are the contents of inputs/in/a.txt and b.txt.
var InputA, InputB = []byte("input file a\n"), []byte("input file b, a bit longer\n")

// New returns a fixture with two registered images (kbase/tool:1, and kbase/refimg:1 which
// needs reference data r1), the two inputs in S3, and two sites: kbase (4 CPUs, 2 GB, 60
// minutes) and staffonly.
func New(t *testing.T) *Fixture {
	t.Helper()
	ctx := t.Context()
	s3srv := devstack.TestS3(t, "inputs", "outputs", "cts-logs")
	mg := devstack.TestMongo(t)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := store.New(sctx, store.Config{URI: mg.URI(), Database: "jobs_test", Logger: Discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	mc, err := mongo.Connect(options.Client().ApplyURI(mg.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })

	f := &Fixture{
		S3:       s3srv,
		DB:       mc.Database("jobs_test"),
		Store:    &HookStore{Store: st},
		Objs:     objects.New(objects.NewClient(objects.Config{Endpoint: s3srv.Endpoint, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey, Region: s3srv.Region})),
		Imgs:     images.NewManager(st),
		Launcher: NewFakeLauncher(),
		Notify:   &FakeNotifier{},
	}
	f.Sites = sites.New([]sites.Site{
		{Name: "kbase", CPUsPerNode: 4, MemoryPerNodeGB: 2, MaxRuntimeMin: 60, WorkerEnv: map[string]string{"TOKEN_PATH": "/etc/cts/token"}},
		{Name: "staffonly", RequireStaff: true},
	}, f.Store, nil, Discard())
	for _, img := range []images.Image{
		{Name: "docker.io/kbase/tool", Tag: "1", Digest: ToolDigest, Entrypoint: []string{"/bin/tool", "run"},
			RegisteredBy: "admin", RegisteredOn: time.Now(), URLs: []string{"https://example.org"}, UsageNotes: "notes"},
		{Name: "docker.io/kbase/refimg", Tag: "1", Digest: RefimgDigest, Entrypoint: []string{"/x"}, RefdataID: "r1",
			RegisteredBy: "admin", RegisteredOn: time.Now()},
	} {
		if err := st.SaveImage(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway's shutdown waits for idle keep-alive connections: drop ours before it
	// stops (cleanups run last-registered first).
	t.Cleanup(func() {
		if hc, ok := f.Objs.Client().Options().HTTPClient.(*http.Client); ok {
			hc.CloseIdleConnections()
		}
	})
	f.CRCA = f.Put(t, "inputs/in/a.txt", InputA)
	f.CRCB = f.Put(t, "inputs/in/b.txt", InputB)
	f.Wire(f.Notify)
	return f
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Wire (re)builds the lifecycle over the fixture with notify as the outbox's notifier.
func (f *Fixture) Wire(notify jobs.Notifier) {
	f.Mover = jobs.NewMover(f.Store, notify, Discard())
	f.Records = jobs.NewRecords(f.Store)
	f.Ingest = ingest.New(ingest.Config{LogDir: LogDir}, f.Store, f.Mover, f.Objs, Discard())
	f.Launch = f.NewLaunch(nil)
	f.Admission = f.newAdmission(nil, notify)
}

// NewLaunch returns a launch.Service over the fixture (the kbase and staffonly sites on the
// fake launcher); mod may change its configuration.
func (f *Fixture) NewLaunch(mod func(*launch.Config)) *launch.Service {
	cfg := launch.Config{
		ServiceURL: "http://coordinator.example:5000", S3URL: f.S3.Endpoint, S3AccessKey: f.S3.AccessKey,
		LogDir: LogDir, SubmitInterval: time.Hour,
		Sites: []launch.Site{
			{Name: "kbase", Launcher: f.Launcher, WorkerEnv: map[string]string{"TOKEN_PATH": "/etc/cts/token"}},
			{Name: "staffonly", Launcher: f.Launcher},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	return launch.New(cfg, launch.Deps{Store: f.Store, Mover: f.Mover, Fold: f.Ingest, Stagings: f.Stagings, Log: Discard()})
}

// NewAdmission returns an admission.Service over the fixture (a CPU-hour cap of 5, no
// reference data); mod may change its configuration.
func (f *Fixture) NewAdmission(mod func(*admission.Config)) *admission.Service {
	return f.newAdmission(mod, f.Notify)
}

func (f *Fixture) newAdmission(mod func(*admission.Config), notify jobs.Notifier) *admission.Service {
	cfg := admission.Config{LogDir: LogDir, MaxCPUHours: 5}
	if mod != nil {
		mod(&cfg)
	}
	return admission.New(cfg, admission.Deps{Store: f.Store, Sites: f.Sites, Objects: f.Objs, Images: f.Imgs,
		Notify: notify, Submitter: f.Launch, Log: Discard()})
}

// Put uploads body with its CRC64/NVME, as agents do, and returns the CRC.
func (f *Fixture) Put(t *testing.T, path string, body []byte) string {
	t.Helper()
	bucket, key, _ := strings.Cut(path, "/")
	crc := checksum.Encode(checksum.Sum(body))
	_, err := f.Objs.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumCRC64NVME: aws.String(crc),
	})
	if err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
	return crc
}

// BaseInput is a valid 2-container job over the two inputs.
const BaseInput = `{
  "cluster": "kbase",
  "image": "kbase/tool:1",
  "params": {
    "input_mount_point": "/in",
    "output_mount_point": "/out",
    "args": ["--out", "/out", {"type": "input_files", "input_files_format": "space_separated_list"}],
    "environment": {"CONTAINER": {"type": "container_number"}}
  },
  "num_containers": 2,
  "cpus": 1,
  "memory": "10MB",
  "runtime": 60,
  "output_dir": "outputs/run1",
  "input_files": ["inputs/in/a.txt", "inputs/in/b.txt"]
}`

// Input decodes BaseInput as the API does, then applies mod.
func Input(t *testing.T, mod func(*jobinput.JobInput)) *jobinput.JobInput {
	t.Helper()
	opts := jobinput.DefaultOptions()
	opts.Sites = []string{"kbase", "staffonly"}
	in, err := jobinput.Decode(strings.NewReader(BaseInput), opts)
	if err != nil {
		t.Fatalf("decode the base input: %v", err)
	}
	if mod != nil {
		mod(in)
	}
	return in
}

// The users of the fixture's jobs.
var (
	Alice = jobs.User{Name: "alice"}
	Bob   = jobs.User{Name: "bob"}
	Admin = jobs.User{Name: "root", Admin: true, Staff: true}
)

// Submit records a job of Alice's and runs one submitter pass, so the job is
// download_submitted.
func (f *Fixture) Submit(t *testing.T, mod func(*jobinput.JobInput)) string {
	t.Helper()
	id, err := f.Admission.Submit(t.Context(), Alice, Input(t, mod))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Launch.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.DownloadSubmitted)
	return id
}

// Job reads job id from the store.
func (f *Fixture) Job(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := f.Store.GetJob(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// WantState fails the test unless job id is in state want, and returns the job.
func (f *Fixture) WantState(t *testing.T, id string, want job.State) *jobs.Job {
	t.Helper()
	j := f.Job(t, id)
	if j.State != want {
		t.Fatalf("job %s is %s, want %s (error %q, admin error %q)", id, j.State, want, j.Error, j.AdminError)
	}
	return j
}

// Count returns the number of documents in a collection.
func (f *Fixture) Count(t *testing.T, coll string) int64 {
	t.Helper()
	n, err := f.DB.Collection(coll).CountDocuments(t.Context(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Agent reports events of one container attempt with increasing sequence numbers, through
// the fixture's ingest.
type Agent struct {
	f         *Fixture
	jobID     string
	container int
	attempt   string
	seq       int64
	// Launch is the launch attempt the agent's credential is for (0, the first launch).
	Launch int
}

// Agent returns the agent of one container attempt.
func (f *Fixture) Agent(jobID string, container int, attempt string) *Agent {
	return &Agent{f: f, jobID: jobID, container: container, attempt: attempt}
}

// Send applies the next event and returns its error.
func (a *Agent) Send(ctx context.Context, ev protocol.Event) error {
	a.seq++
	ev.Seq = a.seq
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	return a.f.Ingest.ApplyEvent(ctx, ingest.Agent{JobID: a.jobID, Container: a.container, Attempt: a.attempt, Launch: a.Launch}, ev)
}

// Walk applies the plain events for states, failing the test on any error.
func (a *Agent) Walk(t *testing.T, states ...job.State) {
	t.Helper()
	for _, st := range states {
		ev := protocol.Event{State: st}
		if st == job.UploadSubmitting || st == job.ErrorProcessingSubmitting {
			code := 0
			if st == job.ErrorProcessingSubmitting {
				code = 1
			}
			ev.ExitCode = &code
		}
		if err := a.Send(t.Context(), ev); err != nil {
			t.Fatalf("container %d event %s: %v", a.container, st, err)
		}
	}
}

// Running are the events that take a container from download_submitted to exit 0.
var Running = []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted}

// WantCTSErr fails the test unless err is a *ctserr.Error with code and, if msg is not
// empty, that message.
func WantCTSErr(t *testing.T, err error, code ctserr.Code, msg string) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ctserr.Error", err, err)
	}
	if ce.Code != code || (msg != "" && ce.Message != msg) {
		t.Fatalf("got code %d message %q,\nwant %d %q", ce.Code, ce.Message, code, msg)
	}
}
