package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/shared/job"
)

// fakeJob is a scripted CTS service for one job "j1": every status poll advances the job by one
// step of script; the log grows by the step's log bytes.
type fakeJob struct {
	mu     sync.Mutex
	polls  int
	script []step
	// owner is the user the owner routes accept; admin the token of the admin routes
	// ("" disables them: 404 as for an unknown route).
	owner, admin string
	log          string
	logSeeks     []int64
}

type step struct {
	state      job.State
	containers []job.State // nil: no container change
	log        string      // appended to the log at this step; "-" means no log stored yet
	fail       int         // HTTP status of this poll instead of an answer
}

var t0 = time.Date(2024, 10, 24, 22, 0, 0, 0, time.UTC)

func (f *fakeJob) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	path := strings.TrimPrefix(r.URL.Path, "/services/cts")
	cur := f.script[min(max(f.polls-1, 0), len(f.script)-1)]
	switch path {
	case "/jobs/j1/status", "/admin/jobs/j1":
		admin := strings.HasPrefix(path, "/admin")
		if admin && (f.admin == "" || tok != f.admin) || !admin && tok != f.owner {
			writeCTSError(w, 403, CodeUnauthorized, "Unauthorized", "User may not access job j1")
			return
		}
		f.polls++
		s := f.script[min(f.polls-1, len(f.script)-1)]
		if s.fail != 0 {
			w.WriteHeader(s.fail)
			return
		}
		var ts []map[string]any
		for i, p := range f.script[:min(f.polls, len(f.script))] {
			if p.fail != 0 || i > 0 && p.state == f.script[i-1].state {
				continue
			}
			ts = append(ts, map[string]any{"state": p.state, "time": t0.Add(time.Duration(i) * time.Second)})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "j1", "user": "u", "state": s.state, "transition_times": ts})
	case "/admin/jobs/j1/container":
		if f.admin == "" {
			writeCTSError(w, 404, CodeNotFound, "Not Found", "Not Found")
			return
		}
		if tok != f.admin {
			writeCTSError(w, 403, CodeUnauthorized, "Unauthorized", "not an admin")
			return
		}
		var subs []map[string]any
		for n := range len(f.script[0].containers) {
			var ts []map[string]any
			for i, p := range f.script[:min(f.polls, len(f.script))] {
				if p.containers == nil || i > 0 && f.script[i-1].containers != nil && f.script[i-1].containers[n] == p.containers[n] {
					continue
				}
				// Containers move half a second before the job step that names them (the
				// job's state follows its containers').
				ts = append(ts, map[string]any{"state": p.containers[n], "time": t0.Add(time.Duration(i)*time.Second - 500*time.Millisecond)})
			}
			subs = append(subs, map[string]any{"id": "j1", "sub_id": n, "state": ts[len(ts)-1]["state"], "transition_times": ts})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"subjobs": subs})
	case "/jobs/j1/log/0/stdout":
		seek, _ := strconv.ParseInt(r.URL.Query().Get("seek"), 10, 64)
		f.logSeeks = append(f.logSeeks, seek)
		if cur.log == "-" {
			writeCTSError(w, 404, CodeNoLogs, "No logs available", "Job ID j1 has no logs available")
			return
		}
		f.log += cur.log
		cur.log = ""
		f.script[min(max(f.polls-1, 0), len(f.script)-1)].log = ""
		if seek > 0 && seek >= int64(len(f.log)) {
			writeCTSError(w, 400, CodeIllegalParameter, "Illegal input parameter",
				fmt.Sprintf("Seek parameter %d is >= file size %d", seek, len(f.log)))
			return
		}
		_, _ = w.Write([]byte(f.log[seek:]))
	default:
		writeCTSError(w, 404, CodeNotFound, "Not Found", "Not Found")
	}
}

var fast = Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}

func TestWait(t *testing.T) {
	t.Parallel()
	running := []job.State{job.JobSubmitted, job.JobSubmitted}
	script := []step{
		{state: job.Created, containers: []job.State{job.Created, job.Created}},
		{state: job.Created},
		{state: job.DownloadSubmitted, containers: []job.State{job.DownloadSubmitted, job.DownloadSubmitted}},
		{fail: 503}, // a restarting service is waited out
		{state: job.JobSubmitted, containers: running},
		{state: job.JobSubmitted, containers: running},
		{state: job.Error, containers: []job.State{job.Error, job.Complete}},
	}
	for _, tc := range []struct {
		name       string
		token      string
		admin      string
		containers bool
		want       []string
	}{
		{"owner, no container route", "owner", "", true, []string{
			"job created", "job download_submitted", "job job_submitted", "job error"}},
		{"owner without containers", "owner", "admin", false, []string{
			"job created", "job download_submitted", "job job_submitted", "job error"}},
		{"admin sees containers in time order", "admin", "admin", true, []string{
			"0 created", "1 created", "job created", "0 download_submitted", "1 download_submitted", "job download_submitted",
			"0 job_submitted", "1 job_submitted", "job job_submitted", "0 error", "1 complete", "job error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeJob{script: append([]step(nil), script...), owner: "owner", admin: tc.admin}
			if tc.token == "admin" {
				f.owner = "someone else"
			}
			c := newTestClient(t, f, tc.token)
			var got []string
			var last time.Time
			polls := 0
			st, err := c.Wait(context.Background(), "j1", WaitOptions{Backoff: fast, Containers: tc.containers,
				OnPoll: func(*JobStatus, []SubJob) { polls++ },
				OnEvent: func(e Event) {
					if e.Time.Before(last) {
						t.Errorf("event %+v before the previous one at %s", e, last)
					}
					last = e.Time
					who := "job"
					if e.Container != nil {
						who = strconv.Itoa(*e.Container)
					}
					got = append(got, who+" "+string(e.State))
				}})
			if err != nil || st.State != job.Error {
				t.Fatalf("Wait = %+v, %v", st, err)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("events\n%v\nwant\n%v", got, tc.want)
			}
			if polls != len(script)-1 {
				t.Errorf("%d polls, want %d", polls, len(script)-1)
			}
		})
	}

	t.Run("neither owner nor admin", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{script: script, owner: "owner", admin: "admin"}
		_, err := newTestClient(t, f, "intruder").Wait(context.Background(), "j1", WaitOptions{Backoff: fast, Containers: true})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Message != "User may not access job j1" {
			t.Errorf("Wait error %v, want the owner route's 403", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{script: []step{{state: job.JobSubmitted}}, owner: "owner"}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		st, err := newTestClient(t, f, "owner").Wait(ctx, "j1", WaitOptions{Backoff: fast})
		if !errors.Is(err, context.DeadlineExceeded) || st == nil || st.State != job.JobSubmitted {
			t.Errorf("Wait = %+v, %v; want the last status and DeadlineExceeded", st, err)
		}
	})
	t.Run("unanswered polls give up after Tolerate", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{script: []step{{fail: 502}}, owner: "owner"}
		_, err := newTestClient(t, f, "owner").Wait(context.Background(), "j1", WaitOptions{Backoff: fast, Tolerate: 30 * time.Millisecond})
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 502 {
			t.Errorf("Wait error %v, want the 502", err)
		}
	})
}

func TestPollFollower(t *testing.T) {
	t.Parallel()
	t.Run("follows a growing log to the job's end", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{owner: "owner", script: []step{
			{state: job.JobSubmitted, log: "-"},
			{state: job.JobSubmitted, log: "ab"},
			{fail: 500},
			{state: job.JobSubmitted, log: "cd"},
			{state: job.JobSubmitted},
			{state: job.UploadSubmitting, log: "ef"},
			{state: job.Complete},
		}}
		c := newTestClient(t, f, "owner")
		var out strings.Builder
		err := (&PollFollower{Client: c, Backoff: fast}).Follow(context.Background(), LogRequest{JobID: "j1"}, &out)
		if err != nil || out.String() != "abcdef" {
			t.Fatalf("Follow = %q, %v", out.String(), err)
		}
		if want := "[0 0 2 4 4 6]"; fmt.Sprint(f.logSeeks) != want {
			t.Errorf("seeks %v, want %s", f.logSeeks, want)
		}
	})
	t.Run("job ended without the log", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{owner: "owner", script: []step{{state: job.JobSubmitted, log: "-"}, {state: job.Canceled, log: "-"}}}
		var out strings.Builder
		err := (&PollFollower{Client: newTestClient(t, f, "owner"), Backoff: fast}).Follow(context.Background(), LogRequest{JobID: "j1"}, &out)
		var ae *APIError
		if !errors.As(err, &ae) || ae.AppCode != CodeNoLogs {
			t.Errorf("Follow error %v, want no logs (40070)", err)
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		t.Parallel()
		f := &fakeJob{owner: "owner", script: []step{{state: job.JobSubmitted}}}
		err := (&PollFollower{Client: newTestClient(t, f, "owner"), Backoff: fast}).Follow(context.Background(), LogRequest{JobID: "j2"}, &strings.Builder{})
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 404 {
			t.Errorf("Follow error %v, want 404", err)
		}
	})
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{}.withDefaults()
	var got []time.Duration
	for _, changed := range []bool{false, false, false, false, false, false, false, true, false} {
		got = append(got, b.next(changed))
	}
	want := "[500ms 750ms 1.125s 1.6875s 2.53125s 3.796875s 5s 500ms 750ms]"
	if fmt.Sprint(got) != want {
		t.Errorf("intervals %v, want %s", got, want)
	}
}
