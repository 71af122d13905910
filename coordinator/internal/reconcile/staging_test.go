package reconcile

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/shared/launcher"
)

// stagingAt is refdata r1's staging at condor, launched at t0, last seen at lastSeen.
func stagingAt(state refdata.State, lastSeen time.Time) refdata.Staging {
	st := refdata.Status{Cluster: "condor", State: state, Attempt: 1, LastSeen: lastSeen,
		Transitions: []refdata.Transition{{State: refdata.Created, Time: t0}}}
	if state == refdata.DownloadSubmitted {
		st.Handle, st.LaunchedAt = "7", t0
		st.Transitions = append(st.Transitions, refdata.Transition{State: refdata.DownloadSubmitted, Time: t0})
	}
	return refdata.Staging{ID: "r1", File: "b/ref.tar.gz", Status: st}
}

func TestDecideStaging(t *testing.T) {
	fresh := t0.Add(time.Minute)
	ds := refdata.DownloadSubmitted
	cases := []struct {
		name      string
		now       time.Time
		st        refdata.Staging
		ls        *launcher.JobStatus
		wantAdmin string
		retryable bool
	}{
		{"healthy", fresh, stagingAt(ds, fresh), &launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateRunning, nil, "")}}, "", false},
		{"created fresh", t0.Add(time.Minute), stagingAt(refdata.Created, time.Time{}), nil, "", false},
		{"created stuck", t0.Add(2 * time.Hour), stagingAt(refdata.Created, time.Time{}), nil, "was not handed to the launcher", false},
		{"held", fresh, stagingAt(ds, fresh), &launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateHeld, nil, "disk quota")}}, "held by the compute system: disk quota", true},
		{"killed stager", fresh, stagingAt(ds, fresh), &launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateExited, intp(137), "killed")}}, "exited with code 137 before reporting", true},
		{"removed", fresh, stagingAt(ds, fresh), &launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateRemoved, nil, "")}}, "was removed from the compute system", false},
		{"launcher forgot it", fresh, stagingAt(ds, fresh), &launcher.JobStatus{Err: launcher.ErrNotFound}, "no longer knows", true},
		{"launcher unreachable is not a failure", fresh, stagingAt(ds, fresh), nil, "", false},
		{"silent stager", t0.Add(10 * time.Minute), stagingAt(ds, t0.Add(7*time.Minute)), nil, "last heard from 3m0s ago", true},
		{"never reported", t0.Add(11 * time.Minute), stagingAt(ds, time.Time{}), nil, "never reported within 10m0s", true},
		{"waiting in the queue", t0.Add(11 * time.Minute), stagingAt(ds, time.Time{}), &launcher.JobStatus{Containers: []launcher.ContainerStatus{cs(0, launcher.StateIdle, nil, "")}}, "", false},
		{"past the staging deadline", t0.Add(25 * time.Hour), stagingAt(ds, t0.Add(25*time.Hour-time.Minute)), nil, "more than the staging deadline of 24h0m0s", false},
		{"ended", t0.Add(100 * time.Hour), stagingAt(refdata.Complete, time.Time{}), nil, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := DecideStaging(Config{}, tc.now, tc.st, tc.ls)
			if tc.wantAdmin == "" {
				if f != nil {
					t.Fatalf("unexpected failure %+v", f)
				}
				return
			}
			if f == nil || !strings.Contains(f.AdminError, tc.wantAdmin) || f.Retryable != tc.retryable {
				t.Fatalf("got %+v, want admin error containing %q, retryable %t", f, tc.wantAdmin, tc.retryable)
			}
			if !strings.Contains(f.AdminError, "refdata r1") {
				t.Fatalf("admin error %q does not name the refdata", f.AdminError)
			}
		})
	}
}

// fakeStagings lists fixed stagings.
type fakeStagings []refdata.Staging

func (s fakeStagings) InFlight(context.Context, int) ([]refdata.Staging, error) { return s, nil }

// A staging whose stager was killed is restaged while retries remain, and failed otherwise;
// the launcher is asked once, under the staging task's job ID.
func TestPassStagings(t *testing.T) {
	for _, allow := range []bool{true, false} {
		l := &fakeLauncher{status: map[string]launcher.JobStatus{
			"refdata-r1": {Containers: []launcher.ContainerStatus{cs(0, launcher.StateExited, intp(137), "killed")}},
		}}
		f := &fakeJobs{launcher: l, subs: map[string][]jobs.SubJob{}, failed: map[string]Failure{}, acct: map[string]jobs.Accounting{}, allowRetry: allow}
		r := New(Config{MaxLaunchRetries: 2}, f, f, fakeStagings{stagingAt(refdata.DownloadSubmitted, t0)}, nil,
			func() time.Time { return t0.Add(30 * time.Second) })
		if err := r.Pass(t.Context()); err != nil {
			t.Fatal(err)
		}
		if l.calls != 1 {
			t.Errorf("launcher status calls %d", l.calls)
		}
		_, retried := f.retried["staging/r1"]
		_, failed := f.failed["staging/r1"]
		if retried != allow || failed == allow {
			t.Errorf("allow retry %t: retried %t, failed %t", allow, retried, failed)
		}
	}
}

func intp(n int) *int { return &n }
