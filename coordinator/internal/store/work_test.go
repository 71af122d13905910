package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
)

// workDocs returns the work documents by job ID.
func workDocs(t *testing.T, db *mongo.Database) map[string]bson.M {
	t.Helper()
	cur, err := db.Collection("job_work").Find(t.Context(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var all []bson.M
	if err := cur.All(t.Context(), &all); err != nil {
		t.Fatal(err)
	}
	out := map[string]bson.M{}
	for _, d := range all {
		out[fmt.Sprint(d["_id"])] = d
	}
	return out
}

func move(t *testing.T, s *store.Store, id string, from, to job.State, at time.Time, u jobs.JobUpdate) *jobs.Job {
	t.Helper()
	j, err := s.TransitionJob(t.Context(), id, []job.State{from}, jobs.Transition{State: to, Time: at}, u)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func markAll(t *testing.T, s *store.Store, j *jobs.Job) {
	t.Helper()
	for _, tr := range j.Transitions {
		if err := s.MarkNotified(t.Context(), j.ID, tr.TransID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWorkDocumentLifecycle follows one job's work document: written with the job, following
// its transitions, kept once it ended while a notification or its accounting waits, gone
// when nothing is left to do.
func TestWorkDocumentLifecycle(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("w", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	check := func(state job.State, v int, unsent, account bool) {
		t.Helper()
		w, ok := workDocs(t, db)["w"]
		if !ok {
			t.Fatalf("no work document, want one in %s", state)
		}
		if w["state"] != string(state) || fmt.Sprint(w["v"]) != fmt.Sprint(v) || w["unsent"] != unsent || w["account"] != account {
			t.Fatalf("work document %v, want state %s, v %d, unsent %v, account %v", w, state, v, unsent, account)
		}
	}
	// A job that has not ended: unsent is the due queue's (the work document does not keep it).
	check(job.Created, 1, false, false)
	j := move(t, s, "w", job.Created, job.DownloadSubmitted, t0.Add(time.Second), jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "h"}})
	check(job.DownloadSubmitted, 2, false, false)
	markAll(t, s, j)
	check(job.DownloadSubmitted, 2, false, false)
	j = move(t, s, "w", job.DownloadSubmitted, job.Complete, t0.Add(2*time.Second), jobs.JobUpdate{})
	check(job.Complete, 3, true, true)
	markAll(t, s, j)
	check(job.Complete, 3, false, true)
	if err := s.SetAccounting(ctx, "w", jobs.Accounting{CPUHours: ptr(0.5)}); err != nil {
		t.Fatal(err)
	}
	if w, ok := workDocs(t, db)["w"]; ok {
		t.Fatalf("work document %v of a job with nothing left to do", w)
	}
	// Not launched: no accounting to wait for.
	if err := s.CreateJob(ctx, newJob("x", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	markAll(t, s, move(t, s, "x", job.Created, job.Canceled, t0.Add(time.Second), jobs.JobUpdate{}))
	if w, ok := workDocs(t, db)["x"]; ok {
		t.Fatalf("work document %v of a canceled, notified job", w)
	}
	// A finished job created as such (a seeded history) has none once notified.
	done := fullJob()
	done.ID = "done"
	for i := range done.Transitions {
		done.Transitions[i].NotifSent = true
	}
	if err := s.CreateJob(ctx, done, nil); err != nil {
		t.Fatal(err)
	}
	if w, ok := workDocs(t, db)["done"]; ok {
		t.Fatalf("work document %v of a finished job", w)
	}
}

// TestStaleWorkDocumentsAreRepaired plays a coordinator that crashed between a transition and
// its work document's update, and one whose CreateJob failed after its work document: readers
// repair the first and drop the second once its grace has passed.
func TestStaleWorkDocumentsAreRepaired(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("s", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	// The "crash": the job moves, its work document stays behind.
	tr := bson.D{{Key: "state", Value: job.Canceling}, {Key: "time", Value: t0.Add(time.Second)}, {Key: "trans_id", Value: "x"}, {Key: "notif_sent", Value: false}}
	if _, err := db.Collection("jobs").UpdateOne(ctx, bson.D{{Key: "_id", Value: "s"}}, bson.D{
		{Key: "$set", Value: bson.D{{Key: "state", Value: job.Canceling}}},
		{Key: "$push", Value: bson.D{{Key: "transition_times", Value: tr}}},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.JobsInState(ctx, job.Created, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("JobsInState(created) = %d jobs, %v; want none (the job is canceling)", len(got), err)
	}
	got, err = s.JobsInState(ctx, job.Canceling, 0)
	if err != nil || len(got) != 1 || got[0].ID != "s" {
		t.Fatalf("JobsInState(canceling) after the repair = %v, %v; want job s", got, err)
	}
	// An orphan: a work document whose job was never written.
	orphan := bson.D{{Key: "_id", Value: "o"}, {Key: "state", Value: job.Created}, {Key: "t", Value: t0}, {Key: "v", Value: 1},
		{Key: "unsent", Value: true}, {Key: "account", Value: false}, {Key: "created", Value: time.Now()}}
	// CreateJob writes the due queue's copy, then the work document, then the job.
	for _, coll := range []string{"job_due", "job_work"} {
		if _, err := db.Collection(coll).InsertOne(ctx, orphan); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.JobsInState(ctx, job.Created, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := workDocs(t, db)["o"]; !ok {
		t.Fatal("a fresh orphan was deleted: its job may be on its way")
	}
	if _, err := db.Collection("job_due").UpdateOne(ctx, bson.D{{Key: "_id", Value: "o"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "created", Value: time.Now().Add(-time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JobsInState(ctx, job.Created, 0); err != nil {
		t.Fatal(err)
	}
	for _, coll := range []string{"job_due", "job_work"} {
		if n, err := db.Collection(coll).CountDocuments(ctx, bson.D{{Key: "_id", Value: "o"}}); err != nil || n != 0 {
			t.Fatalf("an old orphan's document in %s was kept (%d, %v)", coll, n, err)
		}
	}
}

// TestMarksOfARunningJobCrash plays a coordinator that crashed between the notifier's marks of
// a running job and its due copy's sync (the work document is not written for them): the
// notifier's next read finds nothing to send and drops the due copy, the reconciler finds the
// work document in step, and the job's next transition is notified.
func TestMarksOfARunningJobCrash(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("m", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	move(t, s, "m", job.Created, job.DownloadSubmitted, t0.Add(time.Second), jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "h"}})
	before := workDocs(t, db)["m"]
	// The "crash": the marks written, the due copy left as it was.
	for i := range 2 {
		if _, err := db.Collection("jobs").UpdateOne(ctx, bson.D{{Key: "_id", Value: "m"}},
			bson.D{{Key: "$set", Value: bson.D{{Key: fmt.Sprintf("transition_times.%d.notif_sent", i), Value: true}}}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.UnsentTransitions(ctx, t0.Add(time.Hour), 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("unsent transitions after the crash: %d jobs, %v; want none", len(got), err)
	}
	if n, err := db.Collection("job_due").CountDocuments(ctx, bson.D{{Key: "_id", Value: "m"}}); err != nil || n != 0 {
		t.Fatalf("the stale due copy was kept (%d, %v)", n, err)
	}
	if _, err := s.UnfinishedJobs(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if after := workDocs(t, db)["m"]; !reflect.DeepEqual(after, before) {
		t.Fatalf("work document %v, want it as the transition left it: %v", after, before)
	}
	j := move(t, s, "m", job.DownloadSubmitted, job.JobSubmitting, t0.Add(2*time.Second), jobs.JobUpdate{})
	got, err = s.UnsentTransitions(ctx, t0.Add(time.Hour), 0)
	if err != nil || len(got) != 1 || len(got[0].Transitions) != 1 || got[0].Transitions[0].TransID != j.Transitions[2].TransID {
		t.Fatalf("unsent transitions after the next move: %v, %v; want the job's third transition", got, err)
	}
}

// TestJobsToAccount finds launched jobs that ended within the window and have no accounting,
// and settles the work documents of jobs whose window passed.
func TestJobsToAccount(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	now := time.Now().UTC()
	for _, id := range []string{"old", "recent", "unlaunched"} {
		at := now.Add(-time.Minute)
		if id == "old" {
			at = now.Add(-3 * time.Hour)
		}
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", at), nil); err != nil {
			t.Fatal(err)
		}
		u := jobs.JobUpdate{}
		if id != "unlaunched" {
			u.Launch = &jobs.Launch{Site: "kbase", Handle: id}
		}
		move(t, s, id, job.Created, job.DownloadSubmitted, at, u)
		markAll(t, s, move(t, s, id, job.DownloadSubmitted, job.Error, at, jobs.JobUpdate{}))
	}
	got, err := s.JobsToAccount(ctx, now.Add(-time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "recent" {
		t.Fatalf("JobsToAccount = %v, want [recent]", got)
	}
	w := workDocs(t, db)
	if _, ok := w["old"]; ok {
		t.Error("the work document of a job past the accounting window was kept")
	}
	if _, ok := w["unlaunched"]; ok {
		t.Error("a job never launched waits for accounting")
	}
	if err := s.SetAccounting(ctx, "recent", jobs.Accounting{}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.JobsToAccount(ctx, now.Add(-time.Hour), 0); err != nil || len(got) != 0 {
		t.Fatalf("JobsToAccount after SetAccounting = %v, %v; want none", got, err)
	}
	if len(workDocs(t, db)) != 0 {
		t.Fatalf("work documents left: %v", workDocs(t, db))
	}
}

// TestCounter counts what the metrics show through the store's own writes.
func TestCounter(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	c := store.NewCounter(db)
	if st, err := c.CountJobsByState(ctx); err != nil || len(st) != 0 {
		t.Fatalf("empty store: %v, %v", st, err)
	}
	for i, to := range []job.State{"", job.DownloadSubmitted, job.Complete, job.Complete, job.Error} {
		id := fmt.Sprint("c", i)
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", t0), nil); err != nil {
			t.Fatal(err)
		}
		if to != "" {
			j := move(t, s, id, job.Created, to, t0.Add(time.Second), jobs.JobUpdate{})
			if i == 2 {
				markAll(t, s, j)
			}
		}
	}
	st, err := c.CountJobsByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[job.State]int64{job.Created: 1, job.DownloadSubmitted: 1, job.Complete: 2, job.Error: 1}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("CountJobsByState = %v, want %v", st, want)
	}
	// c0: 1, c1: 2, c2: 0 (marked), c3: 2, c4: 2.
	if n, err := c.CountUnsentTransitions(ctx); err != nil || n != 7 {
		t.Fatalf("CountUnsentTransitions = %d, %v; want 7", n, err)
	}
}

// TestMigration opens a store on a database written in the layout before version 2 (the
// Python service's: ObjectIDs, no work documents), with a migration that crashed halfway:
// every job and sub-job is found by its ID afterwards, with all its fields, the passes find
// the unfinished jobs, and the counts include the finished ones.
func TestMigration(t *testing.T) {
	m := devstack.TestMongo(t)
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	db := c.Database(testDB)
	ctx := t.Context()
	// Version 1 documents, written as the old store wrote them (it let the driver pick _id).
	var jobDocs, subDocs []any
	for i, st := range []job.State{job.Created, job.JobSubmitted, job.Complete, job.Complete, job.Error} {
		j := newJob(fmt.Sprint("m", i), "alice", "kbase", t0)
		j.State = st
		if st.Terminal() {
			j.Transitions = append(j.Transitions, jobs.Transition{State: st, Time: t0, TransID: j.ID + "-t1", NotifSent: true})
			j.Transitions[0].NotifSent = true
		}
		raw := v1Doc(t, j)
		jobDocs = append(jobDocs, raw)
		for n := range 2 {
			subDocs = append(subDocs, bson.D{{Key: "id", Value: j.ID}, {Key: "sub_id", Value: n}, {Key: "state", Value: st},
				{Key: "transition_times", Value: bson.A{}}, {Key: "last_seq", Value: 0}})
		}
	}
	if _, err := db.Collection("jobs").InsertMany(ctx, jobDocs); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("subjobs").InsertMany(ctx, subDocs); err != nil {
		t.Fatal(err)
	}
	// A migration that crashed after staging m4 and deleting its old document.
	var m4 bson.D
	if err := db.Collection("jobs").FindOne(ctx, bson.D{{Key: "id", Value: "m4"}}).Decode(&m4); err != nil {
		t.Fatal(err)
	}
	for i := range m4 {
		if m4[i].Key == "_id" {
			m4[i].Value = "m4"
		}
	}
	if _, err := db.Collection("jobs_rekey").InsertOne(ctx, m4); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("jobs").DeleteOne(ctx, bson.D{{Key: "id", Value: "m4"}}); err != nil {
		t.Fatal(err)
	}

	s, err := store.New(ctx, store.Config{URI: m.URI(), Database: testDB, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for i := range 5 {
		id := fmt.Sprint("m", i)
		j, err := s.GetJob(ctx, id)
		if err != nil {
			t.Fatalf("job %s after the migration: %v", id, err)
		}
		if j.User != "alice" || j.Input.NumContainers != 2 {
			t.Errorf("job %s lost fields: %+v", id, j)
		}
		subs, err := s.GetSubJobs(ctx, id)
		if err != nil || len(subs) != 2 {
			t.Fatalf("sub-jobs of %s: %v, %v", id, subs, err)
		}
	}
	for coll, want := range map[string]int64{"jobs": 5, "subjobs": 10, "jobs_rekey": 0, "subjobs_rekey": 0} {
		n, err := db.Collection(coll).CountDocuments(ctx, bson.D{})
		if err != nil || n != want {
			t.Errorf("%s: %d documents (%v), want %d", coll, n, err, want)
		}
	}
	var ids []string
	for _, st := range []job.State{job.Created, job.JobSubmitted} {
		js, err := s.JobsInState(ctx, st, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			ids = append(ids, j.ID)
		}
	}
	sort.Strings(ids)
	if !reflect.DeepEqual(ids, []string{"m0", "m1"}) {
		t.Errorf("unfinished jobs found: %v, want [m0 m1]", ids)
	}
	st, err := store.NewCounter(db).CountJobsByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (map[job.State]int64{job.Created: 1, job.JobSubmitted: 1, job.Complete: 2, job.Error: 1}); !reflect.DeepEqual(st, want) {
		t.Errorf("counts after the migration %v, want %v", st, want)
	}
	var listed []string
	js, err := s.ListJobs(ctx, jobs.ListFilter{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range js {
		listed = append(listed, j.ID)
	}
	sort.Strings(listed)
	if !reflect.DeepEqual(listed, []string{"m0", "m1", "m2", "m3", "m4"}) {
		t.Errorf("jobs listed after the migration: %v, want m0-m4", listed)
	}
	// A second start finds the current version and leaves everything as it is.
	s2, err := store.New(ctx, store.Config{URI: m.URI(), Database: testDB, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_ = s2.Close(ctx)
}

// v1Doc is j as the store wrote it before version 2: without _id (the driver adds an ObjectID).
func v1Doc(t *testing.T, j *jobs.Job) bson.D {
	t.Helper()
	s, db := newStore(t) // a scratch store renders the document exactly
	if err := s.CreateJob(t.Context(), j, nil); err != nil {
		t.Fatal(err)
	}
	var d bson.D
	if err := db.Collection("jobs").FindOne(t.Context(), bson.D{{Key: "_id", Value: j.ID}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	out := bson.D{}
	for _, e := range d {
		if e.Key != "_id" {
			out = append(out, e)
		}
	}
	return out
}

// TestPassesReadOnlyWhatIsDue pins the cost of the submitter's and the notifier's questions:
// with many jobs running (notified, nothing for either pass to do) and one job just created,
// the documents their queries have the server filter (every document of each collection
// queried by anything but _id: the embedded server decodes them all) are the due ones, not
// every unfinished job.
func TestPassesReadOnlyWhatIsDue(t *testing.T) {
	ctx := t.Context()
	var (
		mu    sync.Mutex
		scans []string // collections queried by a filter other than _id
	)
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName != "find" && e.CommandName != "aggregate" {
			return
		}
		coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
		if f, ok := e.Command.Lookup("filter").DocumentOK(); ok {
			if elems, _ := f.Elements(); len(elems) == 1 && elems[0].Key() == "_id" {
				return
			}
		}
		mu.Lock()
		scans = append(scans, coll)
		mu.Unlock()
	}}
	s, db, _ := newMonitoredStore(t, mon)

	const running = 30
	for i := range running {
		id := fmt.Sprint("r", i)
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", t0), nil); err != nil {
			t.Fatal(err)
		}
		j := move(t, s, id, job.Created, job.DownloadSubmitted, t0.Add(time.Second), jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "h"}})
		markAll(t, s, j)
	}
	if err := s.CreateJob(ctx, newJob("new", "alice", "kbase", t0.Add(time.Minute)), nil); err != nil {
		t.Fatal(err)
	}
	// decoded runs pass and returns how many documents its filtered queries made the server
	// decode (the collections' sizes when each was queried, after the pass: passes only
	// shrink them here).
	decoded := func(pass func() error) int {
		t.Helper()
		mu.Lock()
		scans = nil
		mu.Unlock()
		if err := pass(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, coll := range scans {
			k, err := db.Collection(coll).CountDocuments(ctx, bson.D{})
			if err != nil {
				t.Fatal(err)
			}
			n += int(k)
		}
		return n
	}
	submitter := decoded(func() error {
		js, err := s.JobsInState(ctx, job.Created, 100)
		if err == nil && (len(js) != 1 || js[0].ID != "new") {
			err = fmt.Errorf("created jobs %v, want [new]", js)
		}
		if err == nil {
			_, err = s.JobsInState(ctx, job.Canceling, 100)
		}
		return err
	})
	notifier := decoded(func() error {
		js, err := s.UnsentTransitions(ctx, time.Now(), 1000)
		if err == nil && (len(js) != 1 || js[0].ID != "new") {
			err = fmt.Errorf("jobs with unsent transitions %v, want [new]", js)
		}
		return err
	})
	// One job is due; each query may decode it (two for the submitter's two states).
	if submitter > 2 || notifier > 1 {
		t.Fatalf("with %d jobs running and 1 due, the submitter's pass decoded %d documents and the notifier's %d; want at most 2 and 1",
			running, submitter, notifier)
	}
}

// TestDueQueueMigration: a database of schema version 4 (no due queue) gets the jobs the
// submitter and the notifier act on queued at start, and loses the work documents' index on
// unsent, which nothing queries any more.
func TestDueQueueMigration(t *testing.T) {
	s, db, uri := newStoreURI(t)
	ctx := t.Context()
	for _, id := range []string{"created", "unsent", "quiet"} {
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", t0), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"unsent", "quiet"} {
		j := move(t, s, id, job.Created, job.DownloadSubmitted, t0.Add(time.Second), jobs.JobUpdate{Launch: &jobs.Launch{Site: "kbase", Handle: "h"}})
		if id == "quiet" {
			markAll(t, s, j)
		}
	}
	if err := db.Collection("job_due").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	setField(t, db, "schema", "store", "version", 4)
	if _, err := db.Collection("job_work").Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "unsent", Value: 1}, {Key: "t", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	s2, err := store.New(ctx, store.Config{URI: uri, Database: testDB, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	created, err := s2.JobsInState(ctx, job.Created, 0)
	if err != nil || len(created) != 1 || created[0].ID != "created" {
		t.Fatalf("created jobs after the migration: %v, %v; want [created]", created, err)
	}
	unsent, err := s2.UnsentTransitions(ctx, time.Now(), 0)
	var ids []string
	for _, j := range unsent {
		ids = append(ids, j.ID)
	}
	sort.Strings(ids)
	if err != nil || !reflect.DeepEqual(ids, []string{"created", "unsent"}) {
		t.Fatalf("jobs with unsent transitions after the migration: %v, %v; want [created unsent]", ids, err)
	}
	if n, err := db.Collection("job_due").CountDocuments(ctx, bson.D{{Key: "_id", Value: "quiet"}}); err != nil || n != 0 {
		t.Errorf("a job with nothing due was queued (%d, %v)", n, err)
	}
	specs, err := db.Collection("job_work").Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		if sp.Name == "unsent_1_t_1" {
			t.Error("the migration kept the index unsent_1_t_1 of job_work")
		}
	}
}
