package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// TestTouchSubJobs: heartbeats (of agents that left), with TouchSubJob's rules.
func TestTouchSubJobs(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	var subs []jobs.SubJob
	for n := range 4 {
		subs = append(subs, jobs.SubJob{SubID: n, State: job.DownloadSubmitted})
	}
	if err := s.CreateJob(ctx, newJob("j1", "alice", "kbase", t0), subs); err != nil {
		t.Fatal(err)
	}
	for n, attempt := range map[int]string{0: "A", 2: "C", 3: "D"} {
		if _, err := s.TransitionSubJob(ctx, "j1", n, []job.State{job.DownloadSubmitted}, jobs.Transition{State: job.JobSubmitting, Time: t0},
			jobs.SubJobUpdate{}, jobs.Seq{Attempt: attempt, Seq: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TouchSubJob(ctx, "j1", 3, "D", t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := s.TouchSubJobs(ctx, []jobs.Touch{
		{JobID: "j1", Sub: 0, Attempt: "A", At: t0.Add(time.Minute)},     // the current attempt
		{JobID: "j1", Sub: 1, Attempt: "B", At: t0.Add(2 * time.Minute)}, // a sub-job without attempt yet
		{JobID: "j1", Sub: 2, Attempt: "Z", At: t0.Add(time.Minute)},     // a replaced attempt: ignored
		{JobID: "j1", Sub: 3, Attempt: "D", At: t0.Add(time.Minute)},     // never backwards
		{JobID: "j1", Sub: 9, Attempt: "A", At: t0},                      // missing: ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("matched %d, want 3", n)
	}
	got, err := s.GetSubJobs(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	// Each heartbeat's own time.
	for i, want := range []time.Time{t0.Add(time.Minute), t0.Add(2 * time.Minute), t0, t0.Add(5 * time.Hour)} { // sub-job 2: its transition's
		if want = want.Truncate(time.Millisecond); !got[i].LastSeen.Equal(want) {
			t.Errorf("sub-job %d: last_seen = %v, want %v", i, got[i].LastSeen, want)
		}
	}
	if n, err := s.TouchSubJobs(ctx, nil); n != 0 || err != nil {
		t.Fatalf("no heartbeats = %d, %v", n, err)
	}
}

// TestPresence: the agents connected to a replica are recorded in a few point writes whatever
// their number (2,000 a document), none of them a query over the sub-jobs or any filter but
// _id, and read back with the record's time (those that left with their own); a shorter list
// deletes the documents a longer one wrote.
func TestPresence(t *testing.T) {
	ctx := t.Context()
	var (
		mu   sync.Mutex
		cmds []string
	)
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		switch e.CommandName {
		case "update", "delete", "find", "insert", "findAndModify", "aggregate":
		default:
			return
		}
		coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
		mu.Lock()
		cmds = append(cmds, e.CommandName+" "+coll)
		mu.Unlock()
	}}
	s, _, _ := newMonitoredStore(t, mon)
	commands := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := cmds
		cmds = nil
		return out
	}
	var agents []jobs.Touch
	for i := range 4500 {
		agents = append(agents, jobs.Touch{JobID: fmt.Sprintf("job%03d", i/100), Sub: i % 100, Attempt: fmt.Sprint("att-", i)})
	}
	commands()
	if err := s.PutPresence(ctx, "r1#1", t0, agents); err != nil {
		t.Fatal(err)
	}
	got := commands()
	// 3 documents, the delete that finds no fourth, and the first call's prune of old records.
	if strings.Join(got, ",") != "update presence,update presence,update presence,delete presence,delete presence" {
		t.Fatalf("commands %v, want three point writes and two deletes of presence records only", got)
	}
	ts, err := s.Presence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 4500 {
		t.Fatalf("%d agents read back, want 4500", len(ts))
	}
	byKey := map[string]time.Time{}
	for _, tc := range ts {
		byKey[fmt.Sprint(tc.JobID, "/", tc.Sub, "/", tc.Attempt)] = tc.At
	}
	if at := byKey["job044/99/att-4499"]; !at.Equal(t0.Truncate(time.Millisecond)) {
		t.Fatalf("agent 4499 read back at %v, want %v", at, t0)
	}

	// Fewer agents, one of them gone at t0+1m: one document, the other two deleted.
	later := t0.Add(2 * time.Minute)
	short := append([]jobs.Touch{}, agents[:1000]...)
	short = append(short, jobs.Touch{JobID: "job010", Sub: 0, Attempt: "att-1000", At: t0.Add(time.Minute)})
	commands()
	if err := s.PutPresence(ctx, "r1#1", later, short); err != nil {
		t.Fatal(err)
	}
	if got := commands(); strings.Join(got, ",") != "update presence,delete presence,delete presence,delete presence" {
		t.Fatalf("commands %v, want one write and the deletes of the two documents no longer needed", got)
	}
	ts, err = s.Presence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gone := 0
	for _, tc := range ts {
		switch {
		case tc.JobID == "job010" && tc.Attempt == "att-1000":
			gone++
			if !tc.At.Equal(t0.Add(time.Minute).Truncate(time.Millisecond)) {
				t.Errorf("the agent that left is read back at %v, want when it left", tc.At)
			}
		case !tc.At.Equal(later.Truncate(time.Millisecond)):
			t.Errorf("%+v: want the record's time", tc)
		}
	}
	if len(ts) != 1001 || gone != 1 {
		t.Fatalf("%d agents read back (%d gone), want 1001 (1)", len(ts), gone)
	}
	// Another replica's record adds to it.
	if err := s.PutPresence(ctx, "r2#1", later, agents[4000:]); err != nil {
		t.Fatal(err)
	}
	if ts, err = s.Presence(ctx); err != nil || len(ts) != 1501 {
		t.Fatalf("%d agents read back with a second replica (%v), want 1501", len(ts), err)
	}
}
