package launch_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

func TestSubmitterSubmitsOnce(t *testing.T) {
	f := newFixture(t)
	id, err := f.Admission.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.Launch.Pass(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	j := f.WantState(t, id, job.DownloadSubmitted)
	distinct, calls := f.Launcher.Launches()
	if distinct != 1 || calls != 1 {
		t.Fatalf("%d launches in %d calls, want 1 in 1", distinct, calls)
	}
	req := f.Launcher.Requests[0]
	if req.JobID != id || req.Attempt != 0 || req.Containers != 2 || req.CPUs != 1 || req.MemoryBytes != 10_000_000 ||
		req.RuntimeSeconds != 60 || req.User != "alice" || req.BatchName != "cts-"+id || req.DiskBytes < 1<<30 {
		t.Fatalf("submit request %+v", req)
	}
	wantEnv := map[string]string{
		"JOB_ID": id, "SERVICE_ROOT_URL": "http://coordinator.example:5000", "S3_URL": f.S3.Endpoint,
		"S3_ACCESS_KEY": f.S3.AccessKey, "S3_ERROR_LOG_PATH": logDir + "/" + id, "TOKEN_PATH": "/etc/cts/token",
	}
	if !reflect.DeepEqual(req.Env, wantEnv) {
		t.Fatalf("worker env %v\nwant %v", req.Env, wantEnv)
	}
	for _, v := range req.Env {
		if strings.Contains(v, f.S3.SecretKey) {
			t.Fatal("the S3 secret reached the worker environment")
		}
	}
	if j.Launch == nil || j.Launch.Site != "kbase" || j.Launch.Handle != f.Launcher.Launched[id+"/0"] {
		t.Fatalf("launch %+v", j.Launch)
	}
	if n := len(j.Transitions); n != 2 || j.Transitions[1].State != job.DownloadSubmitted {
		t.Fatalf("transitions %+v", j.Transitions)
	}
}

// A crash between the launcher's Submit and the recorded transition (simulated by a store
// failure there) leaves the job created; the next pass submits again, and the launcher's
// idempotency makes that the same launch.
func TestSubmitterCrashBetweenSubmitAndRecord(t *testing.T) {
	f := newFixture(t)
	f.Store.SetHook(once(job.DownloadSubmitted, func(string) error { return errOutage }))
	id, err := f.Admission.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Launch.Pass(t.Context()); !errors.Is(err, errOutage) {
		t.Fatalf("first pass = %v, want the injected outage", err)
	}
	f.WantState(t, id, job.Created)
	if err := f.Launch.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	j := f.WantState(t, id, job.DownloadSubmitted)
	distinct, calls := f.Launcher.Launches()
	if distinct != 1 || calls != 2 {
		t.Fatalf("%d launches in %d calls, want 1 launch in 2 calls", distinct, calls)
	}
	if j.Launch.Handle != "cluster-1" {
		t.Fatalf("handle %q, want the first launch's", j.Launch.Handle)
	}
}

func TestSubmitterLauncherDown(t *testing.T) {
	f := newFixture(t)
	f.Launcher.SubmitErr = launcher.ErrUnavailable
	id, err := f.Admission.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Launch.Pass(t.Context()); !errors.Is(err, launcher.ErrUnavailable) {
		t.Fatalf("pass = %v, want the launcher's error", err)
	}
	f.WantState(t, id, job.Created)
	f.Launcher.Mu.Lock()
	f.Launcher.SubmitErr = nil
	f.Launcher.Mu.Unlock()
	if err := f.Launch.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id, job.DownloadSubmitted)
}

func TestRunSubmitterWakesOnSubmit(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Launch.RunSubmitter(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSubmitter = %v", err)
		}
	})
	id, err := f.Admission.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	// The interval is an hour: only the poke of Submit can move the job this soon.
	deadline := time.Now().Add(10 * time.Second)
	for f.Job(t, id).State != job.DownloadSubmitted {
		if time.Now().After(deadline) {
			t.Fatal("the submitter did not pick the job up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A job stored for a site that is no longer configured ends in error instead of waiting
// forever.
func TestSubmitterUnknownSite(t *testing.T) {
	f := newFixture(t)
	id, err := f.Admission.Submit(t.Context(), alice, input(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	other := f.NewLaunch(func(c *launch.Config) { c.Sites = c.Sites[1:] })
	if err := other.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	j := f.WantState(t, id, job.Error)
	if j.Error != "An unexpected error occurred." || j.AdminError != `site "kbase" is not configured` {
		t.Fatalf("errors %q / %q", j.Error, j.AdminError)
	}
}
