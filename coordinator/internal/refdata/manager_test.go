package refdata_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/internal/store"
)

const crc = "KMXYGlfoI4c="

type fixture struct {
	m      *refdata.Manager
	active map[string]bool
	objs   map[string]refdata.Object
	pokes  atomic.Int64
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
	f := &fixture{active: map[string]bool{},
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
		Sites:   []string{"kbase", "other"},
		Active:  func(context.Context) (map[string]bool, error) { return f.active, nil },
		CanRead: rules.CanRead,
		Poke:    func() { f.pokes.Add(1) },
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

func intp(n int) *int { return &n }

// TestLifecycle walks the record side of a staging: registration, the launch, the stager's
// heartbeat and reports, failures, restages and recovers as new attempts, clean.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.active["other"] = false
	rd, err := f.m.Register(ctx, "admin", " refs/genome.tar.gz", crc, true)
	if err != nil {
		t.Fatal(err)
	}
	if rd.File != "refs/genome.tar.gz" || len(rd.Statuses) != 1 || rd.Status("kbase").State != refdata.Created || f.pokes.Load() != 1 {
		t.Fatalf("registered %+v (pokes %d)", rd, f.pokes.Load())
	}
	_, err = f.m.Register(ctx, "admin2", "refs/genome.tar.gz", crc, false)
	code(t, err, ctserr.CodeRefdataExists)
	code(t, f.m.Ready(ctx, rd.ID, "kbase"), ctserr.CodeInvalidRefdataState)
	code(t, f.m.Ready(ctx, "nope", "kbase"), ctserr.CodeNoSuchRefdata)

	tasks, err := f.m.Pending(ctx, 0)
	want := refdata.Task{ID: rd.ID, Site: "kbase", Attempt: 0, File: "refs/genome.tar.gz", CRC64NVME: crc, Unpack: true, User: "admin"}
	if err != nil || len(tasks) != 1 || tasks[0] != want {
		t.Fatalf("pending %+v, %v; want %+v", tasks, err, want)
	}
	if ok, err := f.m.Launched(ctx, rd.ID, "kbase", 0, "h1"); err != nil || !ok {
		t.Fatalf("launched = %t, %v", ok, err)
	}
	if tasks, _ := f.m.Pending(ctx, 0); len(tasks) != 0 {
		t.Fatalf("still pending after the launch: %+v", tasks)
	}
	got, _ := f.m.Get(ctx, rd.ID)
	if st := got.Status("kbase"); st.State != refdata.DownloadSubmitted || st.Handle != "h1" || st.LaunchedAt.IsZero() || !st.LastSeen.IsZero() {
		t.Fatalf("launched status %+v", st)
	}

	// The stager's heartbeat: download_submitted again records when it was seen, nothing else.
	if err := f.m.UpdateState(ctx, rd.ID, "kbase", refdata.DownloadSubmitted, refdata.Update{Attempt: intp(0)}); err != nil {
		t.Fatal(err)
	}
	got, _ = f.m.Get(ctx, rd.ID)
	if st := got.Status("kbase"); st.LastSeen.IsZero() || len(st.Transitions) != 2 {
		t.Fatalf("after a heartbeat: %+v", st)
	}
	code(t, f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Complete, refdata.Update{Attempt: intp(5)}), ctserr.CodeInvalidRefdataState)
	code(t, f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Created, refdata.Update{}), ctserr.CodeUnsupportedOperation)
	code(t, f.m.UpdateState(ctx, rd.ID, "other", refdata.Complete, refdata.Update{}), ctserr.CodeNoSuchRefdata)
	code(t, f.m.UpdateState(ctx, "nope", "kbase", refdata.Complete, refdata.Update{}), ctserr.CodeNoSuchRefdata)
	for range 2 { // the second is a resend
		if err := f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Complete, refdata.Update{Attempt: intp(0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.m.Ready(ctx, rd.ID, "kbase"); err != nil {
		t.Fatal(err)
	}
	code(t, f.m.Ready(ctx, rd.ID, "other"), ctserr.CodeInvalidRefdataState)
	got, _ = f.m.Get(ctx, rd.ID)
	if s := states(got, "kbase"); len(s) != 3 || s[2] != refdata.Complete {
		t.Fatalf("transitions %v", s)
	}
	// A complete staging is not recovered, failed or restaged.
	code(t, errOf(f.m.Recover(ctx, rd.ID, "kbase")), ctserr.CodeNoSuchRefdata)
	if ok, err := f.m.Fail(ctx, rd.ID, "kbase", 0, "x"); ok || err != nil {
		t.Fatalf("fail of a complete staging = %t, %v", ok, err)
	}

	// The other site becomes active: recover adds it.
	code(t, errOf(f.m.Recover(ctx, rd.ID, "other")), ctserr.CodeJobFlowInactive)
	f.active["other"] = true
	if before, err := f.m.Recover(ctx, rd.ID, "other"); err != nil || before != nil {
		t.Fatalf("recover of a missing site = %+v, %v", before, err)
	}
	if ok, _ := f.m.Launched(ctx, rd.ID, "other", 0, "h2"); !ok {
		t.Fatal("other not launched")
	}
	// The reconciler fails it once; a second verdict on the same attempt changes nothing.
	if ok, err := f.m.Fail(ctx, rd.ID, "other", 0, "the stager was killed"); err != nil || !ok {
		t.Fatalf("fail = %t, %v", ok, err)
	}
	if ok, _ := f.m.Fail(ctx, rd.ID, "other", 0, "again"); ok {
		t.Fatal("failed twice")
	}
	got, _ = f.m.AdminGet(ctx, rd.ID)
	if st := got.Status("other"); st.State != refdata.Error || st.AdminError != "the stager was killed" || st.Error != ctserr.UnexpectedMessage {
		t.Fatalf("error status %+v", st)
	}
	v := got.View()
	if v.Statuses[1].AdminError != "" || v.Statuses[1].Cleaned != nil {
		t.Fatalf("public view shows admin fields: %+v", v.Statuses[1])
	}
	if av := got.AdminView(); av.Statuses[1].AdminError != "the stager was killed" || av.Statuses[1].Cleaned == nil {
		t.Fatalf("admin view: %+v", av.Statuses[1])
	}
	// Recover starts attempt 1; the object must still have its CRC.
	f.objs["refs/genome.tar.gz"] = refdata.Object{Size: 10, CRC64NVME: "AAAAAAAAAAA="}
	code(t, errOf(f.m.Recover(ctx, rd.ID, "other")), ctserr.CodeChecksumMismatch)
	f.objs["refs/genome.tar.gz"] = refdata.Object{Size: 10, CRC64NVME: crc}
	before, err := f.m.Recover(ctx, rd.ID, "other")
	if err != nil || before == nil || before.State != refdata.Error || before.Handle != "h2" {
		t.Fatalf("recover = %+v, %v", before, err)
	}
	tasks, _ = f.m.Pending(ctx, 0)
	if len(tasks) != 1 || tasks[0].Attempt != 1 {
		t.Fatalf("pending after recover %+v", tasks)
	}
	// A launch of the replaced attempt, and its reports, are refused.
	if ok, _ := f.m.Launched(ctx, rd.ID, "other", 0, "late"); ok {
		t.Fatal("a replaced attempt's launch was recorded")
	}
	code(t, f.m.UpdateState(ctx, rd.ID, "other", refdata.Error, refdata.Update{Attempt: intp(0), AdminError: "late"}), ctserr.CodeInvalidRefdataState)
	if ok, _ := f.m.Launched(ctx, rd.ID, "other", 1, "h3"); !ok {
		t.Fatal("attempt 1 not launched")
	}

	// An infrastructure failure restages as a new attempt, within the retries allowed.
	if ok, err := f.m.Restage(ctx, rd.ID, "other", 1, "held: disk quota", 1); err != nil || !ok {
		t.Fatalf("restage = %t, %v", ok, err)
	}
	got, _ = f.m.AdminGet(ctx, rd.ID)
	st := got.Status("other")
	if st.State != refdata.Created || st.Attempt != 2 || st.Handle != "" || len(st.Retries) != 1 ||
		!strings.Contains(st.Retries[0], "attempt 1 (h3): held: disk quota") {
		t.Fatalf("restaged status %+v", st)
	}
	if s := states(got, "other"); s[len(s)-2] != refdata.Error || s[len(s)-1] != refdata.Created {
		t.Fatalf("restage transitions %v: want through error back to created", s)
	}
	if ok, _ := f.m.Restage(ctx, rd.ID, "other", 2, "again", 1); ok {
		t.Fatal("restaged past the retries allowed")
	}
	// An admin recovers a staging stuck in download_submitted.
	if ok, _ := f.m.Launched(ctx, rd.ID, "other", 2, "h4"); !ok {
		t.Fatal("attempt 2 not launched")
	}
	before, err = f.m.Recover(ctx, rd.ID, "other")
	if err != nil || before.State != refdata.DownloadSubmitted || before.Handle != "h4" {
		t.Fatalf("recover of a stuck staging = %+v, %v", before, err)
	}

	// Clean: forced while staging, plain once ended.
	code(t, errOf(f.m.Cleanable(ctx, rd.ID, "other", false)), ctserr.CodeInvalidRefdataState)
	for _, site := range []string{"other", "kbase"} {
		if _, err := f.m.Cleanable(ctx, rd.ID, site, site == "other"); err != nil {
			t.Fatal(err)
		}
		if err := f.m.MarkCleaned(ctx, rd.ID, site); err != nil {
			t.Fatal(err)
		}
	}
	got, _ = f.m.AdminGet(ctx, rd.ID)
	if !got.Status("kbase").Cleaned || !got.Status("other").Cleaned {
		t.Fatalf("clean: %+v", got.Statuses)
	}

	byPath, err := f.m.ByPath(ctx, "refs/genome.tar.gz")
	if err != nil || len(byPath) != 1 || byPath[0].ID != rd.ID {
		t.Fatalf("by path %+v %v", byPath, err)
	}
	_, err = f.m.ByPath(ctx, "/x")
	code(t, err, ctserr.CodeIllegalS3Path)
}

// errOf keeps the error of a two-valued call.
func errOf[T any](_ T, err error) error { return err }

// TestStagerFasterThanRecord: the stager reports complete before download_submitted was
// recorded; both transitions are kept, and the late launch record keeps the state.
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
	if ok, err := f.m.Launched(ctx, rd.ID, "kbase", 0, "h1"); err != nil || !ok {
		t.Fatalf("launched = %t, %v", ok, err)
	}
	got, _ := f.m.Get(ctx, rd.ID)
	if s := states(got, "kbase"); len(s) != 3 || s[1] != refdata.DownloadSubmitted || s[2] != refdata.Complete || got.Status("kbase").Handle != "h1" {
		t.Fatalf("transitions %v, status %+v", s, got.Status("kbase"))
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
		{refdata.DownloadSubmitted, refdata.DownloadSubmitted, true}, // the stager's heartbeat
	} {
		t.Run(string(c.from)+"->"+string(c.to), func(t *testing.T) {
			if got := refdata.CanTransition(c.from, c.to); got != c.ok {
				t.Fatalf("got %t", got)
			}
		})
	}
}

// TestStagerBoundToItsAttempt performs a stager's attacks with its own credential: reporting
// for another attempt (in the body, or as a replaced task), and undoing a staging that ended.
// Only its own attempt's reports apply.
func TestStagerBoundToItsAttempt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.active["other"] = false
	rd, err := f.m.Register(ctx, "admin", "refs/plain.txt", crc, false)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := f.m.Launched(ctx, rd.ID, "kbase", 0, "h1"); err != nil || !ok {
		t.Fatalf("launched = %t, %v", ok, err)
	}
	// A body naming another attempt than the credential's.
	code(t, f.m.StagerUpdate(ctx, rd.ID, "kbase", 0, refdata.Complete, refdata.Update{Attempt: intp(1)}), ctserr.CodeUnauthorized)
	// A credential of an attempt that is not the current one.
	code(t, f.m.StagerUpdate(ctx, rd.ID, "kbase", 3, refdata.Complete, refdata.Update{}), ctserr.CodeInvalidRefdataState)
	for range 2 { // the second is a resend
		if err := f.m.StagerUpdate(ctx, rd.ID, "kbase", 0, refdata.Complete, refdata.Update{}); err != nil {
			t.Fatal(err)
		}
	}
	// The ended staging: its stager may not turn it into an error (admins and the reconciler
	// may).
	code(t, f.m.StagerUpdate(ctx, rd.ID, "kbase", 0, refdata.Error, refdata.Update{AdminError: "undo"}), ctserr.CodeInvalidRefdataState)
	got, _ := f.m.Get(ctx, rd.ID)
	if st := got.Status("kbase"); st.State != refdata.Complete || st.AdminError != "" {
		t.Fatalf("status after the stager's attacks: %+v", st)
	}
	if err := f.m.UpdateState(ctx, rd.ID, "kbase", refdata.Error, refdata.Update{AdminError: "admin says"}); err != nil {
		t.Fatal(err)
	}
}
