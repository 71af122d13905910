package store_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/lease"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/internal/signals"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
)

// scanLog records the commands a client sends, each with whether the server can answer it
// from one document: a filter {_id: <string>} first (FerretDB reads that one row; the dev
// stack's proxy narrows a conditional write that names _id to it). Any other filter makes the
// embedded FerretDB read and decode every document of the collection.
type scanLog struct {
	mu   sync.Mutex
	cmds []scanCmd
}

type scanCmd struct {
	name, coll string
	point      bool
}

func (l *scanLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		c := scanCmd{name: e.CommandName}
		c.coll, _ = e.Command.Lookup(e.CommandName).StringValueOK()
		var filter bson.Raw
		switch e.CommandName {
		case "find", "count", "findAndModify":
			filter, _ = e.Command.Lookup("filter").DocumentOK()
			if e.CommandName == "findAndModify" {
				filter, _ = e.Command.Lookup("query").DocumentOK()
			}
		case "aggregate":
			if st, ok := e.Command.Lookup("pipeline").ArrayOK(); ok {
				if first, err := st.IndexErr(0); err == nil {
					if d, ok := first.DocumentOK(); ok {
						filter, _ = d.Lookup("$match").DocumentOK()
					}
				}
			}
		case "update", "delete":
			key, q := "updates", "q"
			if e.CommandName == "delete" {
				key = "deletes"
			}
			if arr, ok := e.Command.Lookup(key).ArrayOK(); ok {
				if first, err := arr.IndexErr(0); err == nil {
					if d, ok := first.DocumentOK(); ok {
						filter, _ = d.Lookup(q).DocumentOK()
					}
				}
			}
		case "insert":
			c.point = true
		default:
			return // handshakes, cursors of the above
		}
		if elems, err := filter.Elements(); err == nil && len(elems) > 0 && elems[0].Key() == "_id" {
			_, c.point = elems[0].Value().StringValueOK()
		}
		l.mu.Lock()
		l.cmds = append(l.cmds, c)
		l.mu.Unlock()
	}}
}

func (l *scanLog) take() []scanCmd {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.cmds
	l.cmds = nil
	return out
}

// idlePass is what one periodic loop of a coordinator asks the store on a site with nothing to
// do, and how often (a dev site's configuration: `cts dev`, the site benchmarks).
type idlePass struct {
	name      string
	perSecond float64
	run       func(ctx context.Context) error
}

// idleCost is what a site at rest asks the store per second: commands, and documents the
// embedded server decodes for them (a point command: one; any other: its collection's size).
type idleCost struct {
	commands, decoded float64
	byPass            []string
}

// TestIdleSiteReadsNeitherHistoryNorCancels: a site at rest, with nothing to do, costs the
// store the same commands, and the embedded server the same documents decoded, whether it ran
// nothing or has a history of finished jobs, and canceled jobs whose stop signals were just
// sent and which wait for the cleaner. Before, the stop signals' poll (twice a second) read
// every signal kept (15 minutes of them): 600 canceled jobs made a dev site idle at 5 to 11 %
// of a core in FerretDB's decoding.
func TestIdleSiteReadsNeitherHistoryNorCancels(t *testing.T) {
	var log scanLog
	s, db, uri := newMonitoredStore(t, log.monitor())
	ctx := t.Context()
	if err := s.InitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	// The metrics count through a client of their own, monitored the same way.
	cc, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(log.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Disconnect(context.Background()) })
	counter := store.NewCounter(cc.Database(db.Name()))
	bus := signals.New(signals.Config{}, s, "r1", nil)
	holder := lease.Holder{Name: "r1", Incarnation: 1}
	leaseNames := []string{"submitter", "notifier", "reconciler", "cleaner"}
	passes := []idlePass{
		{"stop signals' poll (500 ms)", 2, bus.Poll},
		{"live data interests (500 ms)", 2, func(ctx context.Context) error {
			_, err := s.Interests(ctx, time.Now())
			return err
		}},
		{"submitter (1 s)", 1, func(ctx context.Context) error {
			if _, err := s.JobsInStates(ctx, []job.State{job.Created, job.Canceling}, 200); err != nil {
				return err
			}
			_, err := s.RefdataWithState(ctx, refdata.Created, 100)
			return err
		}},
		{"a lease's renewal (4 leases, 5 s)", float64(len(leaseNames)) / 5, func(ctx context.Context) error {
			now := time.Now()
			_, err := s.AcquireLease(ctx, leaseNames[0], holder, now, now.Add(15*time.Second))
			return err
		}},
		{"notifier (10 s)", 1.0 / 10, func(ctx context.Context) error {
			_, err := s.UnsentTransitions(ctx, time.Now(), 1000)
			return err
		}},
		{"agents' presence (10 s)", 1.0 / 10, func(ctx context.Context) error {
			return s.PutPresence(ctx, "r1", time.Now(), nil)
		}},
		{"metrics (15 s)", 1.0 / 15, func(ctx context.Context) error {
			if _, err := counter.CountJobsByState(ctx); err != nil {
				return err
			}
			_, err := counter.CountUnsentTransitions(ctx)
			return err
		}},
		{"reconciler (30 s)", 1.0 / 30, func(ctx context.Context) error {
			if _, err := s.UnfinishedJobs(ctx, 4000); err != nil {
				return err
			}
			if _, err := s.Presence(ctx); err != nil {
				return err
			}
			for _, st := range []refdata.State{refdata.Created, refdata.DownloadSubmitted} {
				if _, err := s.RefdataWithState(ctx, st, 500); err != nil {
					return err
				}
			}
			_, err := s.JobsToAccount(ctx, time.Now().Add(-time.Hour), 500)
			return err
		}},
	}
	for _, name := range leaseNames {
		if _, err := s.AcquireLease(ctx, name, holder, time.Now(), time.Now().Add(15*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	measure := func(what string) idleCost {
		t.Helper()
		var c idleCost
		sizes := map[string]float64{}
		for _, p := range passes {
			// Once to settle what a first pass does once (the bus's first read), then measured.
			if err := p.run(ctx); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			log.take()
			if err := p.run(ctx); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			var cmds, decoded float64
			var scans []string
			for _, cmd := range log.take() {
				cmds++
				if cmd.point {
					decoded++
					continue
				}
				n, ok := sizes[cmd.coll]
				if !ok {
					k, err := db.Collection(cmd.coll).CountDocuments(ctx, bson.D{})
					if err != nil {
						t.Fatal(err)
					}
					n = float64(k)
					sizes[cmd.coll] = n
				}
				decoded += n
				scans = append(scans, fmt.Sprintf("%s %s (%.0f)", cmd.name, cmd.coll, n))
			}
			sort.Strings(scans)
			c.commands += cmds * p.perSecond
			c.decoded += decoded * p.perSecond
			c.byPass = append(c.byPass, fmt.Sprintf("%s: %.0f commands, %.0f documents decoded; scans: %s",
				p.name, cmds, decoded, strings.Join(scans, ", ")))
		}
		t.Logf("%s: %.2f commands and %.1f documents decoded per second at rest:\n  %s", what, c.commands, c.decoded,
			strings.Join(c.byPass, "\n  "))
		return c
	}
	fresh := measure("fresh site")

	// A history: finished jobs, imported as the site benchmarks seed them (cleaned, notified).
	const history, canceled = 500, 40
	end := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Millisecond)
	var js []*jobs.Job
	var subs [][]jobs.SubJob
	for i := range history {
		at := end.Add(time.Duration(i-history) * time.Millisecond)
		j := newJob(fmt.Sprint("h", i), "alice", "kbase", at)
		j.State, j.Cleaned, j.Launch = job.Complete, true, &jobs.Launch{Site: "kbase", Handle: "h"}
		j.Transitions = []jobs.Transition{{State: job.Created, Time: at.Add(-time.Second), TransID: j.ID + "-0", NotifSent: true},
			{State: job.Complete, Time: at, TransID: j.ID + "-1", NotifSent: true}}
		js, subs = append(js, j), append(subs, []jobs.SubJob{{SubID: 0, State: job.Complete}})
	}
	if err := s.ImportFinishedJobs(ctx, js, subs); err != nil {
		t.Fatal(err)
	}
	// Canceled jobs, as a burst of cancels leaves them: launched, canceled (their agents told
	// through a stop signal), notified, accounted, waiting for the cleaner.
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range canceled {
		id := fmt.Sprint("c", i)
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", now.Add(-time.Minute)), []jobs.SubJob{{SubID: 0, State: job.Created}}); err != nil {
			t.Fatal(err)
		}
		move(t, s, id, job.Created, job.DownloadSubmitted, now.Add(-50*time.Second), jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "h"}})
		move(t, s, id, job.DownloadSubmitted, job.Canceling, now.Add(-40*time.Second), jobs.JobUpdate{})
		if err := bus.Publish(ctx, id, "the job was canceled"); err != nil {
			t.Fatal(err)
		}
		j := move(t, s, id, job.Canceling, job.Canceled, now.Add(-30*time.Second), jobs.JobUpdate{})
		markAll(t, s, j)
		if err := s.SetAccounting(ctx, id, jobs.Accounting{CPUHours: ptr(0.0)}); err != nil {
			t.Fatal(err)
		}
	}
	if dirty, err := s.DirtyJobs(ctx, time.Now(), 0); err != nil || len(dirty) != canceled {
		t.Fatalf("%d jobs wait for the cleaner (%v), want %d", len(dirty), err, canceled)
	}
	busy := measure(fmt.Sprintf("%d finished jobs, %d canceled ones waiting for the cleaner", history, canceled))

	if busy.commands != fresh.commands {
		t.Errorf("a site at rest sends %.2f MongoDB commands a second with %d finished and %d canceled jobs, %.2f fresh: want the same",
			busy.commands, history, canceled, fresh.commands)
	}
	if busy.decoded > fresh.decoded+1 {
		t.Errorf("a site at rest has the server decode %.1f documents a second with %d finished and %d canceled jobs, %.1f fresh: "+
			"want no more (its history and its canceled jobs read by no periodic pass)", busy.decoded, history, canceled, fresh.decoded)
	}
}
