package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
)

// commandLog records the commands a store sends, as "<command> <collection>".
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *commandLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
		l.mu.Lock()
		l.cmds = append(l.cmds, e.CommandName+" "+coll)
		l.mu.Unlock()
	}}
}

// during returns the commands f sent.
func (l *commandLog) during(t *testing.T, f func() error) []string {
	t.Helper()
	l.mu.Lock()
	l.cmds = nil
	l.mu.Unlock()
	if err := f(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string(nil), l.cmds...)
	sort.Strings(out)
	return out
}

// writesTo counts the commands of cmds other than reads that name coll.
func writesTo(cmds []string, coll string) int {
	n := 0
	for _, c := range cmds {
		name, on, _ := strings.Cut(c, " ")
		if on == coll && name != "find" && name != "aggregate" {
			n++
		}
	}
	return n
}

// TestCommandsPerChange pins the MongoDB commands a submit, the submitter's transition, the
// notifier and the accounting cost the store, in the job's life on a site: every command is
// a round trip, and on the embedded FerretDB (one command at a time) each write rewrites its
// document whole.
func TestCommandsPerChange(t *testing.T) {
	var log commandLog
	s, _, _ := newMonitoredStore(t, log.monitor())
	ctx := t.Context()
	at := t0.Truncate(time.Second)
	// A first job writes the job list's head and directories of this second (once per process).
	first := newJob("first", "alice", "kbase", at)
	if err := s.CreateJob(ctx, first, []jobs.SubJob{{SubID: 0, State: job.Created}}); err != nil {
		t.Fatal(err)
	}
	markAll(t, s, first)
	check := func(what string, cmds []string, max int) {
		t.Helper()
		t.Logf("%s: %d commands: %v", what, len(cmds), cmds)
		if len(cmds) > max {
			t.Errorf("%s: %d commands, want at most %d: %v", what, len(cmds), max, cmds)
		}
	}

	// A submit: the sub-jobs, the due and work documents and the job inserted, the job's view
	// inserted (it is the job's first) and its entry in the two lists (every job's, the user's)
	// in one update command of two statements (7 commands when they were two).
	cmds := log.during(t, func() error {
		return s.CreateJob(ctx, newJob("a", "alice", "kbase", at.Add(100*time.Millisecond)), []jobs.SubJob{{SubID: 0, State: job.Created}})
	})
	check("create", cmds, 6)
	if n := writesTo(cmds, "job_views"); n != 1 {
		t.Errorf("create wrote the job's view with %d commands, want 1 (an insert)", n)
	}
	if n := writesTo(cmds, "job_list"); n != 1 {
		t.Errorf("create wrote the job list with %d commands, want 1", n)
	}

	// The submitter's transition: the job, its view and entries, its due and work documents.
	cmds = log.during(t, func() error {
		_, err := s.TransitionJob(ctx, "a", []job.State{job.Created}, jobs.Transition{State: job.DownloadSubmitted, Time: at.Add(200 * time.Millisecond)},
			jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "h"}})
		return err
	})
	check("transition", cmds, 5)
	if n := writesTo(cmds, "job_list"); n != 1 {
		t.Errorf("the transition wrote the job list with %d commands, want 1", n)
	}

	// The notifier: the due queue, the job, then its two transitions marked in one update
	// (whose positions the read found), and the due copy deleted; the work document of a job
	// that has not ended does not hold the marks (it was 5 commands with its update). The
	// job list shows no marks: nothing of it is written.
	cmds = log.during(t, func() error {
		js, err := s.UnsentTransitions(ctx, at.Add(time.Hour), 10)
		if err != nil {
			return err
		}
		for _, j := range js {
			var ids []string
			for _, tr := range j.Transitions {
				ids = append(ids, tr.TransID)
			}
			if err := s.MarkNotified(ctx, j.ID, ids...); err != nil {
				return err
			}
		}
		return nil
	})
	check("notify", cmds, 4)
	for _, coll := range []string{"job_list", "job_views", "job_work"} {
		if n := writesTo(cmds, coll); n != 0 {
			t.Errorf("notification wrote %s %d times, want never", coll, n)
		}
	}
	if n := writesTo(cmds, "jobs"); n != 1 {
		t.Errorf("notification updated the job %d times, want once", n)
	}

	// The accounting of a job that ended: its view, not its entries (time, state, site and
	// image are unchanged).
	// A transition of a job with nothing due (its transitions sent): the due queue's copy is
	// inserted, not first looked for by a conditional update.
	cmds = log.during(t, func() error {
		_, err := s.TransitionJob(ctx, "a", []job.State{job.DownloadSubmitted}, jobs.Transition{State: job.JobSubmitting, Time: at.Add(300 * time.Millisecond)}, jobs.JobUpdate{})
		return err
	})
	check("transition of a job with nothing due", cmds, 5)
	if n := writesTo(cmds, "job_due"); n != 1 {
		t.Errorf("the transition wrote the due queue with %d commands, want 1 (an insert)", n)
	}
	// A transition in another second (whose directories another job wrote): the entries move
	// to another bucket of both lists, put in the new and taken out of the old ones, all in
	// the one command (four when each was one). The job ends: the cleaner's queue and the
	// count of finished jobs too.
	if err := s.CreateJob(ctx, newJob("b", "alice", "kbase", at.Add(1400*time.Millisecond)), nil); err != nil {
		t.Fatal(err)
	}
	cmds = log.during(t, func() error {
		_, err := s.TransitionJob(ctx, "a", []job.State{job.JobSubmitting}, jobs.Transition{State: job.Canceled, Time: at.Add(1400 * time.Millisecond)}, jobs.JobUpdate{})
		return err
	})
	check("transition to an end in another second", cmds, 7)
	if n := writesTo(cmds, "job_list"); n != 1 {
		t.Errorf("the transition wrote the job list with %d commands, want 1", n)
	}
	if got := fmt.Sprint(listIDs(t, s, jobs.ListFilter{User: "alice", Limit: 5})); strings.Count(got, "a:") != 1 || !strings.Contains(got, "a:canceled") {
		t.Errorf("alice's jobs after the move: %v, want a listed once, canceled", got)
	}
	cmds = log.during(t, func() error { return s.SetAccounting(ctx, "a", jobs.Accounting{CPUHours: ptr(1.5)}) })
	check("accounting", cmds, 4)
	if n := writesTo(cmds, "job_list"); n != 0 {
		t.Errorf("accounting wrote the job list %d times, want never", n)
	}
	if n := writesTo(cmds, "job_views"); n != 1 {
		t.Errorf("accounting wrote the job's view %d times, want once", n)
	}
}

// TestSubJobsReadByCount: the sub-jobs of a job the store read or wrote are read one point
// read each, none past the last (a store that never saw the job reads until one is missing).
func TestSubJobsReadByCount(t *testing.T) {
	var log commandLog
	s, _, uri := newMonitoredStore(t, log.monitor())
	ctx := t.Context()
	j := newJob("two", "alice", "kbase", t0)
	j.Input.NumContainers = 2
	if err := s.CreateJob(ctx, j, []jobs.SubJob{{SubID: 0, State: job.Created}, {SubID: 1, State: job.Created}}); err != nil {
		t.Fatal(err)
	}
	var subs []jobs.SubJob
	cmds := log.during(t, func() (err error) {
		subs, err = s.GetSubJobs(ctx, "two")
		return err
	})
	if len(subs) != 2 || fmt.Sprint(cmds) != "[find subjobs find subjobs]" {
		t.Errorf("sub-jobs of a job the store wrote: %d, commands %v; want 2 in two reads", len(subs), cmds)
	}
	// Another store (another replica, or after a restart): until it reads the job, it reads
	// until a sub-job is missing.
	other, err := store.NewMonitored(ctx, store.Config{URI: uri, Database: testDB, Logger: slog.New(slog.DiscardHandler)}, log.monitor())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.WithoutCancel(ctx))
	cmds = log.during(t, func() (err error) {
		subs, err = other.GetSubJobs(ctx, "two")
		return err
	})
	if len(subs) != 2 || len(cmds) != 3 {
		t.Errorf("sub-jobs of a job the store never saw: %d, commands %v; want 2 in three reads", len(subs), cmds)
	}
	if _, err := other.GetJob(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	cmds = log.during(t, func() (err error) {
		subs, err = other.GetSubJobs(ctx, "two")
		return err
	})
	if len(subs) != 2 || len(cmds) != 2 {
		t.Errorf("sub-jobs of a job the store read: %d, commands %v; want 2 in two reads", len(subs), cmds)
	}
}

// TestJobListBucketsStaySmall: a job list bucket holds the jobs changed within one second, so
// a busy minute does not make one document that every change rewrites whole.
func TestJobListBucketsStaySmall(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	at := t0.Truncate(time.Minute)
	const n = 120 // two a second for a minute
	for i := range n {
		if err := s.CreateJob(ctx, newJob(fmt.Sprint("j", i), "alice", "kbase", at.Add(time.Duration(i)*500*time.Millisecond)), nil); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := db.Collection("job_list").Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID string            `bson:"_id"`
		E  map[string]string `bson:"e"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	largest, listed := 0, 0
	for _, d := range docs {
		largest = max(largest, len(d.E))
		listed += len(d.E)
	}
	if listed != 2*n {
		t.Fatalf("%d entries in the job list, want %d (every job's and alice's)", listed, 2*n)
	}
	if largest > 2 {
		t.Errorf("a job list bucket holds %d entries of %d jobs changed two a second, want at most 2", largest, n)
	}
	if got := listIDs(t, s, jobs.ListFilter{User: "alice", Limit: 5}); len(got) != 5 || got[0] != fmt.Sprint("j", n-1)+":created" {
		t.Errorf("alice's newest 5 jobs: %v", got)
	}
}

// TestSubmitterAsksOnce: the submitter's question (created and canceling jobs) is one query
// of the due queue, then a read of each job found.
func TestSubmitterAsksOnce(t *testing.T) {
	var log commandLog
	s, _, _ := newMonitoredStore(t, log.monitor())
	ctx := t.Context()
	for _, id := range []string{"c", "x"} {
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", t0), nil); err != nil {
			t.Fatal(err)
		}
	}
	move(t, s, "x", job.Created, job.Canceling, t0.Add(time.Second), jobs.JobUpdate{})
	var got []*jobs.Job
	cmds := log.during(t, func() (err error) {
		got, err = s.JobsInStates(ctx, []job.State{job.Created, job.Canceling}, 10)
		return err
	})
	if len(got) != 2 || got[0].ID != "c" || got[1].ID != "x" {
		t.Fatalf("created and canceling jobs: %v, want c then x", got)
	}
	if want := []string{"find job_due", "find jobs", "find jobs"}; fmt.Sprint(cmds) != fmt.Sprint(want) {
		t.Errorf("commands %v, want %v", cmds, want)
	}
}
