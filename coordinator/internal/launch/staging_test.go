package launch_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/staging"
)

// TestStaging launches reference data staging tasks through the submitter pass, with the real
// records (refdata.Manager on the store), and takes them back: the reconciler's fail and
// restage, an admin's recover and clean.
func TestStaging(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if err := f.Store.InitRefdata(ctx); err != nil {
		t.Fatal(err)
	}
	crc := f.Put(t, "inputs/ref/genome.fa", []byte(">g\nACGT\n"))
	mgr := refdata.NewManager(refdata.Config{Sites: []string{"kbase"}}, f.Store,
		func(ctx context.Context, p string) (refdata.Object, error) {
			m, err := f.Objs.Head(ctx, p)
			return refdata.Object{Size: m.Size, CRC64NVME: m.CRC64NVME}, err
		}, discard())
	f.Stagings = mgr
	l := f.NewLaunch(nil)
	rd, err := mgr.Register(ctx, "root", "inputs/ref/genome.fa", crc, false)
	if err != nil {
		t.Fatal(err)
	}
	status := func() refdata.Status {
		t.Helper()
		got, err := mgr.AdminGet(ctx, rd.ID)
		if err != nil {
			t.Fatal(err)
		}
		return *got.Status("kbase")
	}
	inFlight := func() refdata.Staging { return refdata.Staging{ID: rd.ID, File: rd.File, Status: status()} }
	lastRequest := func() launcher.SubmitRequest {
		f.Launcher.Mu.Lock()
		defer f.Launcher.Mu.Unlock()
		return f.Launcher.Requests[len(f.Launcher.Requests)-1]
	}

	// A launcher that is down leaves the staging created; the next pass launches it.
	f.Launcher.Mu.Lock()
	f.Launcher.SubmitErr = launcher.ErrUnavailable
	f.Launcher.Mu.Unlock()
	if err := l.Pass(ctx); !errors.Is(err, launcher.ErrUnavailable) {
		t.Fatalf("pass with the launcher down = %v", err)
	}
	if st := status(); st.State != refdata.Created {
		t.Fatalf("state %s after a failed launch", st.State)
	}
	f.Launcher.Mu.Lock()
	f.Launcher.SubmitErr = nil
	f.Launcher.Mu.Unlock()
	if err := l.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	req := lastRequest()
	wantEnv := map[string]string{
		"SERVICE_ROOT_URL": "http://coordinator.example:5000", "S3_URL": f.S3.Endpoint, "S3_ACCESS_KEY": f.S3.AccessKey,
		"TOKEN_PATH": "/etc/cts/token", staging.EnvAgentMode: staging.ModeRefdata, staging.EnvID: rd.ID,
		staging.EnvS3Path: "inputs/ref/genome.fa", staging.EnvCRC64NVME: crc, staging.EnvUnpack: "false",
		staging.EnvCluster: "kbase", staging.EnvAttempt: "0",
	}
	if req.JobID != staging.JobID(rd.ID) || req.Attempt != 0 || req.Containers != 1 || req.User != "root" || !reflect.DeepEqual(req.Env, wantEnv) {
		t.Fatalf("staging request %+v\nwant env %v", req, wantEnv)
	}
	st := status()
	if st.State != refdata.DownloadSubmitted || st.Handle == "" {
		t.Fatalf("launched staging %+v", st)
	}
	// A second pass launches nothing more.
	if err := l.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, calls := f.Launcher.Launches(); calls != 1 {
		t.Fatalf("%d submit calls after two passes", calls)
	}

	// The reconciler's restage: a new attempt, the old task stopped.
	old := st.Handle
	if ok, err := l.RetryStaging(ctx, inFlight(), "held", 2); err != nil || !ok {
		t.Fatalf("retry = %t, %v", ok, err)
	}
	if cs := f.Launcher.Cancels(); len(cs) != 1 || cs[0] != (launcher.JobRef{JobID: staging.JobID(rd.ID), Handle: old}) {
		t.Fatalf("cancels %+v", cs)
	}
	if err := l.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if req := lastRequest(); req.Attempt != 1 || req.Env[staging.EnvAttempt] != "1" {
		t.Fatalf("restaged request %+v", req)
	}
	// The reconciler's fail: error, the task stopped.
	if ok, err := l.FailStaging(ctx, inFlight(), "the stager was silent"); err != nil || !ok {
		t.Fatalf("fail = %t, %v", ok, err)
	}
	if st := status(); st.State != refdata.Error || st.AdminError != "the stager was silent" || len(f.Launcher.Cancels()) != 2 {
		t.Fatalf("failed staging %+v, cancels %v", st, f.Launcher.Cancels())
	}
	// An admin's recover launches attempt 2.
	if err := l.RecoverStaging(ctx, rd.ID, "kbase"); err != nil {
		t.Fatal(err)
	}
	if err := l.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if req := lastRequest(); req.Attempt != 2 {
		t.Fatalf("recovered request %+v", req)
	}
	// Recovering it while it runs stops the running task.
	running := status().Handle
	if err := l.RecoverStaging(ctx, rd.ID, "kbase"); err != nil {
		t.Fatal(err)
	}
	if cs := f.Launcher.Cancels(); cs[len(cs)-1].Handle != running {
		t.Fatalf("the stuck task %s was not stopped: %+v", running, cs)
	}
	if err := l.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	// Clean refuses a running staging without force; force stops it.
	if err := l.CleanStaging(ctx, rd.ID, "kbase", false); err == nil {
		t.Fatal("clean of a running staging without force succeeded")
	}
	if err := l.CleanStaging(ctx, rd.ID, "kbase", true); err != nil {
		t.Fatal(err)
	}
	if st := status(); !st.Cleaned || f.Launcher.Cancels()[len(f.Launcher.Cancels())-1].Handle != st.Handle {
		t.Fatalf("cleaned staging %+v", st)
	}
}
