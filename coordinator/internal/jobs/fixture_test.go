package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}

const (
	toolDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	refimgDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	logDir       = "cts-logs/container_logs"
)

// fakeLauncher is an in-memory Launcher with the contract's idempotency: one launch per
// (JobID, Attempt), whose handle a repeated Submit returns again.
type fakeLauncher struct {
	mu        sync.Mutex
	launched  map[string]string // "job/attempt" -> handle
	requests  []launcher.SubmitRequest
	canceled  []launcher.JobRef
	submitErr error
	cancelErr error
}

func newFakeLauncher() *fakeLauncher { return &fakeLauncher{launched: map[string]string{}} }

func (l *fakeLauncher) Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	if err := req.Validate(); err != nil {
		return launcher.SubmitResponse{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.submitErr != nil {
		return launcher.SubmitResponse{}, l.submitErr
	}
	l.requests = append(l.requests, req)
	key := fmt.Sprintf("%s/%d", req.JobID, req.Attempt)
	if h, ok := l.launched[key]; ok {
		return launcher.SubmitResponse{Handle: h, Existing: true}, nil
	}
	h := fmt.Sprintf("cluster-%d", len(l.launched)+1)
	l.launched[key] = h
	return launcher.SubmitResponse{Handle: h}, nil
}

func (l *fakeLauncher) Cancel(ctx context.Context, ref launcher.JobRef) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancelErr != nil {
		return l.cancelErr
	}
	l.canceled = append(l.canceled, ref)
	return nil
}

// launches returns the number of distinct launches and of Submit calls.
func (l *fakeLauncher) launches() (distinct, calls int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.launched), len(l.requests)
}

func (l *fakeLauncher) cancels() []launcher.JobRef {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]launcher.JobRef(nil), l.canceled...)
}

type fakeNotifier struct{ pokes atomic.Int64 }

func (n *fakeNotifier) Poke() { n.pokes.Add(1) }

// hookStore decorates the real store: before each TransitionJob it may run a hook, which can
// fail the call (a store outage) or act in between (a concurrent writer).
type hookStore struct {
	jobs.Store
	mu   sync.Mutex
	hook func(id string, to job.State) error
}

func (h *hookStore) setHook(f func(id string, to job.State) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hook = f
}

func (h *hookStore) TransitionJob(ctx context.Context, id string, from []job.State, t jobs.Transition, u jobs.JobUpdate) (*jobs.Job, error) {
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

// once wraps a hook so that it acts on the first matching call only.
func once(match job.State, f func(id string) error) func(string, job.State) error {
	var done atomic.Bool
	return func(id string, to job.State) error {
		if to != match || !done.CompareAndSwap(false, true) {
			return nil
		}
		return f(id)
	}
}

var errOutage = errors.New("store outage (injected)")

// fixture is the real store on an embedded MongoDB, a real S3 behind objects.Objects, a real
// image manager, and a fake launcher.
type fixture struct {
	s3       *devstack.S3
	db       *mongo.Database
	store    *hookStore
	objs     *objects.Objects
	imgs     *images.Manager
	launcher *fakeLauncher
	notify   *fakeNotifier
	svc      *jobs.Service
	// crcA and crcB are the CRCs of the input objects inputs/in/a.txt and b.txt.
	crcA, crcB string
}

var inputA, inputB = []byte("input file a\n"), []byte("input file b, a bit longer\n")

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	s3srv := devstack.TestS3(t, "inputs", "outputs", "cts-logs")
	mg := devstack.TestMongo(t)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := store.New(sctx, store.Config{URI: mg.URI(), Database: "jobs_test", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	mc, err := mongo.Connect(options.Client().ApplyURI(mg.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })

	f := &fixture{
		s3:       s3srv,
		db:       mc.Database("jobs_test"),
		store:    &hookStore{Store: st},
		objs:     objects.New(objects.NewClient(objects.Config{Endpoint: s3srv.Endpoint, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey, Region: s3srv.Region})),
		imgs:     images.NewManager(st),
		launcher: newFakeLauncher(),
		notify:   &fakeNotifier{},
	}
	for _, img := range []images.Image{
		{Name: "docker.io/kbase/tool", Tag: "1", Digest: toolDigest, Entrypoint: []string{"/bin/tool", "run"},
			RegisteredBy: "admin", RegisteredOn: time.Now(), URLs: []string{"https://example.org"}, UsageNotes: "notes"},
		{Name: "docker.io/kbase/refimg", Tag: "1", Digest: refimgDigest, Entrypoint: []string{"/x"}, RefdataID: "r1",
			RegisteredBy: "admin", RegisteredOn: time.Now()},
	} {
		if err := st.SaveImage(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway's shutdown waits for idle keep-alive connections: drop ours before it
	// stops (cleanups run last-registered first).
	t.Cleanup(func() {
		if hc, ok := f.objs.Client().Options().HTTPClient.(*http.Client); ok {
			hc.CloseIdleConnections()
		}
	})
	f.crcA = f.put(t, "inputs/in/a.txt", inputA)
	f.crcB = f.put(t, "inputs/in/b.txt", inputB)
	f.svc = f.service(nil)
	return f
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// service returns a Service over the fixture; mod may change the configuration.
func (f *fixture) service(mod func(*jobs.Config)) *jobs.Service {
	cfg := jobs.Config{
		ServiceURL: "http://coordinator.example:5000", S3URL: f.s3.Endpoint, S3AccessKey: f.s3.AccessKey,
		LogDir: logDir, MaxCPUHours: 5, SubmitInterval: time.Hour,
		Sites: []jobs.Site{
			{Name: "kbase", Launcher: f.launcher, CPUsPerNode: 4, MemoryPerNodeGB: 2, MaxRuntimeMin: 60,
				WorkerEnv: map[string]string{"TOKEN_PATH": "/etc/cts/token"}},
			{Name: "staffonly", Launcher: f.launcher, RequireStaff: true},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	return jobs.New(cfg, f.store, f.objs, f.imgs, f.notify, discard())
}

// put uploads body with its CRC64/NVME, as agents do, and returns the CRC.
func (f *fixture) put(t *testing.T, path string, body []byte) string {
	t.Helper()
	bucket, key, _ := strings.Cut(path, "/")
	crc := checksum.Encode(checksum.Sum(body))
	_, err := f.objs.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumCRC64NVME: aws.String(crc),
	})
	if err != nil {
		t.Fatalf("put %s: %v", path, err)
	}
	return crc
}

// baseInput is a valid 2-container job over the two inputs.
const baseInput = `{
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

// input decodes baseInput as the API does, then applies mod.
func input(t *testing.T, mod func(*jobinput.JobInput)) *jobinput.JobInput {
	t.Helper()
	opts := jobinput.DefaultOptions()
	opts.Sites = []string{"kbase", "staffonly"}
	in, err := jobinput.Decode(strings.NewReader(baseInput), opts)
	if err != nil {
		t.Fatalf("decode the base input: %v", err)
	}
	if mod != nil {
		mod(in)
	}
	return in
}

var (
	alice = jobs.User{Name: "alice"}
	bob   = jobs.User{Name: "bob"}
	admin = jobs.User{Name: "root", Admin: true, Staff: true}
)

// submit records a job and runs one submitter pass, so the job is download_submitted.
func (f *fixture) submit(t *testing.T, mod func(*jobinput.JobInput)) string {
	t.Helper()
	id, err := f.svc.Submit(t.Context(), alice, input(t, mod))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SubmitPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, id, job.DownloadSubmitted)
	return id
}

func (f *fixture) job(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := f.store.GetJob(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (f *fixture) wantState(t *testing.T, id string, want job.State) *jobs.Job {
	t.Helper()
	j := f.job(t, id)
	if j.State != want {
		t.Fatalf("job %s is %s, want %s (error %q, admin error %q)", id, j.State, want, j.Error, j.AdminError)
	}
	return j
}

// count returns the number of documents in a collection.
func (f *fixture) count(t *testing.T, coll string) int64 {
	t.Helper()
	n, err := f.db.Collection(coll).CountDocuments(t.Context(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// agent reports events of one container attempt with increasing sequence numbers.
type agent struct {
	f         *fixture
	jobID     string
	container int
	attempt   string
	seq       int64
}

func (f *fixture) agent(jobID string, container int, attempt string) *agent {
	return &agent{f: f, jobID: jobID, container: container, attempt: attempt}
}

// send applies the next event and returns its error.
func (a *agent) send(ctx context.Context, ev protocol.Event) error {
	a.seq++
	ev.Seq = a.seq
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	return a.f.svc.ApplyEvent(ctx, a.jobID, a.container, a.attempt, ev)
}

// walk applies the plain events for states, failing the test on any error.
func (a *agent) walk(t *testing.T, states ...job.State) {
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
		if err := a.send(t.Context(), ev); err != nil {
			t.Fatalf("container %d event %s: %v", a.container, st, err)
		}
	}
}

// running are the events that take a container from download_submitted to exit 0.
var running = []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted}

func wantCTSErr(t *testing.T, err error, code ctserr.Code, msg string) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ctserr.Error", err, err)
	}
	if ce.Code != code || (msg != "" && ce.Message != msg) {
		t.Fatalf("got code %d message %q,\nwant %d %q", ce.Code, ce.Message, code, msg)
	}
}
