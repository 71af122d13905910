package refdata_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/launcher"
)

const crc = "KMXYGlfoI4c="

// fakeLauncher records submits and cancels; fail makes Submit fail.
type fakeLauncher struct {
	mu      sync.Mutex
	submits []launcher.SubmitRequest
	cancels []launcher.JobRef
	fail    error
}

func (f *fakeLauncher) Submit(_ context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return launcher.SubmitResponse{}, f.fail
	}
	f.submits = append(f.submits, req)
	return launcher.SubmitResponse{Handle: "h-" + req.JobID}, nil
}

func (f *fakeLauncher) Cancel(_ context.Context, ref launcher.JobRef) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, ref)
	return nil
}

type fixture struct {
	m      *refdata.Manager
	kbase  *fakeLauncher
	other  *fakeLauncher
	active map[string]bool
	objs   map[string]refdata.Object
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	mg := devstack.TestMongo(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.New(t.Context(), store.Config{URI: mg.URI(), Database: "refdata_test", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	if err := st.InitRefdata(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{kbase: &fakeLauncher{}, other: &fakeLauncher{}, active: map[string]bool{},
		objs: map[string]refdata.Object{
			"refs/genome.tar.gz": {Size: 10, CRC64NVME: crc},
			"refs/plain.txt":     {Size: 3, CRC64NVME: crc},
			"refs/nocrc.gz":      {Size: 3},
			"cts-logs/container_logs/j/container-0-stdout.txt": {Size: 3, CRC64NVME: crc},
			"private/bob/db.tar.gz":                            {Size: 3, CRC64NVME: crc},
		}}
	rules, err := access.New(access.Config{LogDir: "cts-logs/container_logs", Read: []string{"refs/"}, Write: []string{"private/{user}/"}})
	if err != nil {
		t.Fatal(err)
	}
	head := func(_ context.Context, p string) (refdata.Object, error) {
		o, ok := f.objs[p]
		if !ok {
			return refdata.Object{}, ctserr.New(ctserr.CodeS3PathNotFound, "The path '%s' was not found", p)
		}
		return o, nil
	}
	f.m = refdata.NewManager(refdata.Config{
		Sites: []refdata.Site{
			{Name: "kbase", Launcher: f.kbase, Env: map[string]string{"SERVICE_ROOT_URL": "http://cts", "REFDATA_HOST_PATH": "/refdata"}},
			{Name: "other", Launcher: f.other},
		},
		Active:  func(context.Context) (map[string]bool, error) { return f.active, nil },
		CanRead: rules.CanRead,
	}, st, head, log)
	return f
}

func code(t *testing.T, err error, want ctserr.Code) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) || ce.Code != want {
		t.Fatalf("err = %v, want app code %d", err, want)
	}
}

func states(rd *refdata.Refdata, site string) []refdata.State {
	var out []refdata.State
	for _, tr := range rd.Status(site).Transitions {
		out = append(out, tr.State)
	}
	return out
}

func TestRegisterRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	for _, c := range []struct {
		name, file, crc string
		unpack          bool
		want            ctserr.Code
	}{
		{"bad path", "/refs/x.gz", crc, false, ctserr.CodeIllegalS3Path},
		{"bad crc", "refs/genome.tar.gz", "short", false, ctserr.CodeIllegalParameter},
		{"unpack of unknown extension", "refs/plain.txt", crc, true, ctserr.CodeIllegalParameter},
		{"missing object", "refs/missing.gz", crc, false, ctserr.CodeS3PathNotFound},
		{"object without crc", "refs/nocrc.gz", crc, false, ctserr.CodeIllegalParameter},
		{"crc mismatch", "refs/genome.tar.gz", "AAAAAAAAAAA=", true, ctserr.CodeChecksumMismatch},
		// Registered data is readable by every job of its images: a container log or another
		// user's folder must not become reference data.
		{"log folder", "cts-logs/container_logs/j/container-0-stdout.txt", crc, false, ctserr.CodeS3PathInaccessible},
		{"another user's folder", "private/bob/db.tar.gz", crc, true, ctserr.CodeS3PathInaccessible},
		{"dot-dot into the log folder", "refs/../cts-logs/container_logs/j/container-0-stdout.txt", crc, false, ctserr.CodeIllegalS3Path},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.m.Register(ctx, "admin", c.file, c.crc, c.unpack)
			code(t, err, c.want)
		})
	}
	t.Run("no active site", func(t *testing.T) {
		f.active = map[string]bool{"kbase": false, "other": false}
		defer func() { f.active = map[string]bool{} }()
		_, err := f.m.Register(ctx, "admin", "refs/genome.tar.gz", crc, true)
		code(t, err, ctserr.CodeJobFlowUnavailable)
	})
	list, err := f.m.List(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("something was recorded: %+v %v", list, err)
	}
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.active["other"] = false
	rd, err := f.m.Register(ctx, "admin", " refs/genome.tar.gz", crc, true)
	if err != nil {
		t.Fatal(err)
	}
	if rd.File != "refs/genome.tar.gz" || len(rd.Statuses) != 1 || rd.Status("kbase").State != refdata.Created {
		t.Fatalf("registered %+v", rd)
	}
	_, err = f.m.Register(ctx, "admin2", "refs/genome.tar.gz", crc, false)
	code(t, err, ctserr.CodeRefdataExists)
	code(t, f.m.Ready(ctx, rd.ID, "kbase"), ctserr.CodeInvalidRefdataState)
	code(t, f.m.Ready(ctx, "nope", "kbase"), ctserr.CodeNoSuchRefdata)

	f.m.StagePending(ctx)
	if len(f.kbase.submits) != 1 || len(f.other.submits) != 0 {
		t.Fatalf("submits kbase %d other %d", len(f.kbase.submits), len(f.other.submits))
	}
	req := f.kbase.submits[0]
	wantEnv := map[string]string{"SERVICE_ROOT_URL": "http://cts", "REFDATA_HOST_PATH": "/refdata",
		"CTS_AGENT_MODE": "refdata", "REFDATA_ID": rd.ID, "REFDATA_S3_PATH": "refs/genome.tar.gz",
		"REFDATA_CRC64NVME": crc, "REFDATA_UNPACK": "true", "REFDATA_CLUSTER": "kbase"}
	if req.JobID != "refdata-"+rd.ID || req.Containers != 1 || req.Attempt != 0 || len(req.Env) != len(wantEnv) {
		t.Fatalf("submit %+v", req)
	}
	for k, v := range wantEnv {
		if req.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, req.Env[k], v)
		}
	}
	if err := req.Validate(); err != nil {
		t.Fatalf("the staging request is not valid for launchers: %v", err)
	}
	// A second pass stages nothing: the site is download_submitted.
	f.m.StagePending(ctx)
	if len(f.kbase.submits) != 1 {
		t.Fatalf("staged twice")
	}
	code(t, f.m.Stage(ctx, rd.ID, "kbase"), ctserr.CodeInvalidRefdataState)
	code(t, f.m.Clean(ctx, rd.ID, "kbase", false), ctserr.CodeInvalidRefdataState)

	code(t, f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Created, refdata.Update{}), ctserr.CodeUnsupportedOperation)
	code(t, f.m.UpdateState(ctx, rd.ID, "other", refdata.Complete, refdata.Update{}), ctserr.CodeNoSuchRefdata)
	code(t, f.m.UpdateState(ctx, "nope", "kbase", refdata.Complete, refdata.Update{}), ctserr.CodeNoSuchRefdata)
	for range 2 { // the second is a resend
		if err := f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Complete, refdata.Update{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.m.Ready(ctx, rd.ID, "kbase"); err != nil {
		t.Fatal(err)
	}
	code(t, f.m.Ready(ctx, rd.ID, "other"), ctserr.CodeInvalidRefdataState)
	got, err := f.m.Get(ctx, rd.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := states(got, "kbase"); len(s) != 3 || s[2] != refdata.Complete || got.Status("kbase").Handle != "h-refdata-"+rd.ID {
		t.Fatalf("transitions %v, status %+v", s, got.Status("kbase"))
	}

	// The other site becomes active: recover adds and stages it.
	code(t, f.m.Recover(ctx, rd.ID, "other"), ctserr.CodeJobFlowInactive)
	f.active["other"] = true
	code(t, f.m.Recover(ctx, rd.ID, "kbase"), ctserr.CodeNoSuchRefdata)
	if err := f.m.Recover(ctx, rd.ID, "other"); err != nil {
		t.Fatal(err)
	}
	f.m.StagePending(ctx)
	if len(f.other.submits) != 1 {
		t.Fatalf("other not staged")
	}
	// The stager fails; recover starts a new attempt.
	if err := f.m.UpdateState(ctx, rd.ID, "other", refdata.Error, refdata.Update{AdminError: "disk full", Traceback: "tb"}); err != nil {
		t.Fatal(err)
	}
	got, _ = f.m.AdminGet(ctx, rd.ID)
	if st := got.Status("other"); st.State != refdata.Error || st.AdminError != "disk full" || st.Error != ctserr.UnexpectedMessage {
		t.Fatalf("error status %+v", st)
	}
	v := got.View()
	if v.Statuses[1].AdminError != "" || v.Statuses[1].Cleaned != nil {
		t.Fatalf("public view shows admin fields: %+v", v.Statuses[1])
	}
	if av := got.AdminView(); av.Statuses[1].AdminError != "disk full" || av.Statuses[1].Cleaned == nil {
		t.Fatalf("admin view: %+v", av.Statuses[1])
	}
	f.objs["refs/genome.tar.gz"] = refdata.Object{Size: 10, CRC64NVME: "AAAAAAAAAAA="}
	code(t, f.m.Recover(ctx, rd.ID, "other"), ctserr.CodeChecksumMismatch)
	f.objs["refs/genome.tar.gz"] = refdata.Object{Size: 10, CRC64NVME: crc}
	if err := f.m.Recover(ctx, rd.ID, "other"); err != nil {
		t.Fatal(err)
	}
	f.m.StagePending(ctx)
	if len(f.other.submits) != 2 || f.other.submits[1].Attempt != 1 {
		t.Fatalf("recover did not start attempt 1: %+v", f.other.submits)
	}
	got, _ = f.m.Get(ctx, rd.ID)
	if st := got.Status("other"); st.State != refdata.DownloadSubmitted || st.AdminError != "" {
		t.Fatalf("recovered status %+v", st)
	}

	// Clean: forced while staging, plain once complete.
	if err := f.m.Clean(ctx, rd.ID, "other", true); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Clean(ctx, rd.ID, "kbase", false); err != nil {
		t.Fatal(err)
	}
	got, _ = f.m.AdminGet(ctx, rd.ID)
	if !got.Status("kbase").Cleaned || !got.Status("other").Cleaned || len(f.kbase.cancels) != 1 {
		t.Fatalf("clean: %+v, cancels %v", got.Statuses, f.kbase.cancels)
	}

	byPath, err := f.m.ByPath(ctx, "refs/genome.tar.gz")
	if err != nil || len(byPath) != 1 || byPath[0].ID != rd.ID {
		t.Fatalf("by path %+v %v", byPath, err)
	}
	_, err = f.m.ByPath(ctx, "/x")
	code(t, err, ctserr.CodeIllegalS3Path)
}

// TestStagerFasterThanRecord: the stager reports complete before download_submitted was
// recorded; both transitions are kept.
func TestStagerFasterThanRecord(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.active["other"] = false
	rd, err := f.m.Register(ctx, "admin", "refs/plain.txt", crc, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Complete, refdata.Update{}); err != nil {
		t.Fatal(err)
	}
	got, _ := f.m.Get(ctx, rd.ID)
	if s := states(got, "kbase"); len(s) != 3 || s[1] != refdata.DownloadSubmitted || s[2] != refdata.Complete {
		t.Fatalf("transitions %v", s)
	}
	// The launcher's late record keeps the state and stores the handle.
	code(t, f.m.Stage(ctx, rd.ID, "kbase"), ctserr.CodeInvalidRefdataState)
}

func TestRunRetriesFailedLauncher(t *testing.T) {
	f := newFixture(t)
	f.active["other"] = false
	f.kbase.fail = launcher.ErrUnavailable
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	m := f.m
	go func() { done <- m.Run(ctx) }()
	rd, err := m.Register(ctx, "admin", "refs/plain.txt", crc, false)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	f.kbase.mu.Lock()
	f.kbase.fail = nil
	f.kbase.mu.Unlock()
	m.Poke()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := m.Get(t.Context(), rd.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status("kbase").State == refdata.DownloadSubmitted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never staged: %+v", got.Statuses)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCanTransition(t *testing.T) {
	for _, c := range []struct {
		from, to refdata.State
		ok       bool
	}{
		{refdata.Created, refdata.DownloadSubmitted, true},
		{refdata.DownloadSubmitted, refdata.Complete, true},
		{refdata.Created, refdata.Complete, false},
		{refdata.Complete, refdata.Error, true},
		{refdata.Error, refdata.Created, true},
		{refdata.Complete, refdata.Created, false},
		{refdata.Complete, refdata.DownloadSubmitted, false},
	} {
		t.Run(string(c.from)+"->"+string(c.to), func(t *testing.T) {
			if got := refdata.CanTransition(c.from, c.to); got != c.ok {
				t.Fatalf("got %t", got)
			}
		})
	}
}
