package store_test

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
)

// listIDs lists f and returns the jobs' IDs and states.
func listIDs(t *testing.T, s *store.Store, f jobs.ListFilter) []string {
	t.Helper()
	js, err := s.ListJobs(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, j := range js {
		out = append(out, j.ID+":"+string(j.State))
	}
	return out
}

func setField(t *testing.T, db *mongo.Database, coll, id, field string, v any) {
	t.Helper()
	if _, err := db.Collection(coll).UpdateOne(t.Context(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: v}}}}); err != nil {
		t.Fatal(err)
	}
}

// TestJobListFollowsChanges: a job is listed once, where its last change puts it, with what
// each kind of change wrote, across minutes, hours and days of the list's tree.
func TestJobListFollowsChanges(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("a", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, newJob("b", "bob", "kbase", t0.Add(time.Second)), nil); err != nil {
		t.Fatal(err)
	}
	if got, want := listIDs(t, s, jobs.ListFilter{}), []string{"b:created", "a:created"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after create: %v, want %v", got, want)
	}
	steps := []struct {
		to job.State
		at time.Duration
	}{
		{job.DownloadSubmitted, 30 * time.Second}, // the same minute
		{job.JobSubmitting, 2 * time.Minute},      // another minute
		{job.JobSubmitted, 3 * time.Hour},         // another hour
		{job.Error, 50 * 24 * time.Hour},          // another top slot
	}
	prev := job.Created
	for _, st := range steps {
		at := t0.Add(st.at)
		if _, err := s.TransitionJob(ctx, "a", []job.State{prev}, jobs.Transition{State: st.to, Time: at},
			jobs.JobUpdate{Error: "e-" + string(st.to)}); err != nil {
			t.Fatal(err)
		}
		prev = st.to
		want := []string{"a:" + string(st.to), "b:created"}
		if got := listIDs(t, s, jobs.ListFilter{}); !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s at +%s: %v, want %v", st.to, st.at, got, want)
		}
		if got := listIDs(t, s, jobs.ListFilter{User: "alice", State: st.to}); !reflect.DeepEqual(got, want[:1]) {
			t.Fatalf("alice's %s jobs after %s: %v, want %v", st.to, st.to, got, want[:1])
		}
		if got := listIDs(t, s, jobs.ListFilter{User: "alice", Before: at}); len(got) != 0 {
			t.Fatalf("alice's jobs before her job's last change at +%s: %v, want none", st.at, got)
		}
		if got := listIDs(t, s, jobs.ListFilter{After: at}); !reflect.DeepEqual(got, want[:1]) {
			t.Fatalf("jobs since +%s: %v, want %v", st.at, got, want[:1])
		}
	}
	// Changes that are not transitions reach the list too.
	if err := s.SetAccounting(ctx, "a", jobs.Accounting{CPUHours: ptr(2.5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateAdminMeta(ctx, "a", map[string]any{"k": "v"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCleaned(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	js, err := s.ListJobs(ctx, jobs.ListFilter{User: "alice"})
	if err != nil || len(js) != 1 {
		t.Fatalf("alice's jobs: %v, %v", js, err)
	}
	a := js[0]
	if a.CPUHours == nil || *a.CPUHours != 2.5 || a.AdminMeta["k"] != "v" || !a.Cleaned || a.Error != "e-error" || len(a.Transitions) != 5 {
		t.Errorf("listed job a = %+v, want its accounting, admin meta, cleaned flag, error and 5 transitions", a)
	}
	// Notification marks are not in what the list shows (GET /jobs renders transitions
	// without them) and do not write it: the job stays listed as it was.
	for _, tr := range a.Transitions {
		if err := s.MarkNotified(ctx, "a", tr.TransID); err != nil {
			t.Fatal(err)
		}
	}
	js, err = s.ListJobs(ctx, jobs.ListFilter{User: "alice"})
	if err != nil || len(js) != 1 || js[0].ID != "a" || !reflect.DeepEqual(js[0], a) {
		t.Fatalf("alice's jobs after notification: %+v, %v; want job a as before", js, err)
	}
}

// TestJobListSkipsAndRepairsStaleEntries: entries a crash or a race left behind are never
// listed, and a job whose copy in the list was lost is listed again after the repairs.
func TestJobListSkipsAndRepairsStaleEntries(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("a", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(10 * time.Minute)
	if _, err := s.TransitionJob(ctx, "a", []job.State{job.Created}, jobs.Transition{State: job.Canceling, Time: later}, jobs.JobUpdate{}); err != nil {
		t.Fatal(err)
	}
	// A writer that stopped before removing the entry of the job's previous time.
	for _, u := range []string{"", "alice"} {
		setField(t, db, "job_list", store.ListBucketID(u, t0), store.ListField("a"), store.ListEntry(1, t0, job.Created, "kbase", "ghcr.io/kbase/tool"))
	}
	want := []string{"a:canceling"}
	for _, f := range []jobs.ListFilter{{}, {User: "alice"}} {
		if got := listIDs(t, s, f); !reflect.DeepEqual(got, want) {
			t.Fatalf("with a stale entry left at the old time: %v, want %v", got, want)
		}
	}
	if got := listIDs(t, s, jobs.ListFilter{State: job.Created}); len(got) != 0 {
		t.Fatalf("created jobs with a stale entry left: %v, want none", got)
	}
	// A slow writer that put an older entry over the newer one in the same bucket: the job is
	// missing from that read, and listed again once the reader put the entry back.
	for _, u := range []string{"", "alice"} {
		setField(t, db, "job_list", store.ListBucketID(u, later), store.ListField("a"), store.ListEntry(1, later.Add(-time.Millisecond), job.Created, "kbase", "ghcr.io/kbase/tool"))
	}
	_ = listIDs(t, s, jobs.ListFilter{})
	for _, f := range []jobs.ListFilter{{}, {User: "alice"}} {
		if got := listIDs(t, s, f); !reflect.DeepEqual(got, want) {
			t.Fatalf("after an older entry overwrote the job's own: %v, want %v", got, want)
		}
	}
	// A crash between the job's change and the list: the job moved, neither its list entries
	// nor its work document followed; the next periodic pass repairs both.
	tr := bson.D{{Key: "state", Value: job.Error}, {Key: "time", Value: later.Add(time.Hour)}, {Key: "trans_id", Value: "x"}, {Key: "notif_sent", Value: false}}
	if _, err := db.Collection("jobs").UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{
		{Key: "$set", Value: bson.D{{Key: "state", Value: job.Error}, {Key: "_update_time", Value: later.Add(time.Hour)}}},
		{Key: "$push", Value: bson.D{{Key: "transition_times", Value: tr}}},
		{Key: "$inc", Value: bson.D{{Key: "_lv", Value: 1}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JobsInState(ctx, job.Canceling, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := listIDs(t, s, jobs.ListFilter{User: "alice"}), []string{"a:error"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the pass repaired the crash: %v, want %v", got, want)
	}
}

// TestJobListMigration: a database of schema version 2 (no job list) gets every job listed at
// start, and loses the index version 2 kept for the notifier.
func TestJobListMigration(t *testing.T) {
	s, db, uri := newStoreURI(t)
	ctx := t.Context()
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("m%d", i)
		if err := s.CreateJob(ctx, newJob(id, fmt.Sprintf("u%d", i%2), "kbase", t0.Add(time.Duration(i)*time.Hour)), nil); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id + ":created"}, want...)
	}
	for _, c := range []string{"job_list", "job_views"} {
		if err := db.Collection(c).Drop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	setField(t, db, "schema", "store", "version", 2)
	if _, err := db.Collection("jobs").Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "transition_times.time", Value: -1}}}); err != nil {
		t.Fatal(err)
	}
	s2, err := store.New(ctx, store.Config{URI: uri, Database: testDB, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	if got := listIDs(t, s2, jobs.ListFilter{}); !reflect.DeepEqual(got, want) {
		t.Errorf("after the migration: %v, want %v", got, want)
	}
	if got := listIDs(t, s2, jobs.ListFilter{User: "u1"}); !reflect.DeepEqual(got, []string{"m5:created", "m3:created", "m1:created"}) {
		t.Errorf("u1's jobs after the migration: %v", got)
	}
	specs, err := db.Collection("jobs").Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		if sp.Name == "transition_times.time_-1" {
			t.Error("the migration kept the index transition_times.time_-1")
		}
	}
}

// TestJobListWaitsForAWriter: a list read between a writer's two writes (the job's view
// already rewritten, its entry not yet) still lists the job: the reader walks again once the
// writer is done, whether the job stays in its bucket (its second) or moves to another.
func TestJobListWaitsForAWriter(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	if err := s.CreateJob(ctx, newJob("a", "alice", "kbase", t0), nil); err != nil {
		t.Fatal(err)
	}
	entryAt := func(u string, at time.Time) string {
		var b struct {
			E map[string]string `bson:"e"`
		}
		if err := db.Collection("job_list").FindOne(ctx, bson.D{{Key: "_id", Value: store.ListBucketID(u, at)}}).Decode(&b); err != nil {
			t.Fatal(err)
		}
		for k, v := range b.E {
			if k == store.ListField("a")[len("e."):] {
				return v
			}
		}
		t.Fatalf("no entry of job a in the bucket of %v", at)
		return ""
	}
	users := []string{"", "alice"}
	cur := t0 // the job's time as its list index has it
	old := map[string]string{}
	for _, u := range users {
		old[u] = entryAt(u, cur)
	}
	for _, tc := range []struct {
		name  string
		state job.State
		at    time.Time
	}{
		{"same bucket", job.Canceling, cur.Add(100 * time.Millisecond)}, // the same second
		{"another bucket", job.Canceled, cur.Add(10 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := jobs.ListFilter{}
			before := listIDs(t, s, prev)
			from := job.Created
			if tc.state == job.Canceled {
				from = job.Canceling
			}
			if _, err := s.TransitionJob(ctx, "a", []job.State{from}, jobs.Transition{State: tc.state, Time: tc.at}, jobs.JobUpdate{}); err != nil {
				t.Fatal(err)
			}
			// Back to the writer's half-way point: the view is new, the entries are as before.
			written := map[string]string{}
			for _, u := range users {
				written[u] = entryAt(u, tc.at)
				if store.ListBucketID(u, tc.at) != store.ListBucketID(u, cur) {
					if _, err := db.Collection("job_list").UpdateOne(ctx, bson.D{{Key: "_id", Value: store.ListBucketID(u, tc.at)}},
						bson.D{{Key: "$unset", Value: bson.D{{Key: store.ListField("a"), Value: ""}}}}); err != nil {
						t.Fatal(err)
					}
				}
				setField(t, db, "job_list", store.ListBucketID(u, cur), store.ListField("a"), old[u])
			}
			// The writer finishes while the reader waits.
			retries := 0
			s.SetListRetryHook(func(int) {
				retries++
				for _, u := range users {
					setField(t, db, "job_list", store.ListBucketID(u, tc.at), store.ListField("a"), written[u])
				}
			})
			defer s.SetListRetryHook(nil)
			if same := store.ListBucketID("", tc.at) == store.ListBucketID("", cur); same != (tc.name == "same bucket") {
				t.Fatalf("case %q: the job's two times are in the same bucket: %v", tc.name, same)
			}
			want := []string{"a:" + string(tc.state)}
			if got := listIDs(t, s, jobs.ListFilter{User: "alice"}); !reflect.DeepEqual(got, want) {
				t.Fatalf("listed %v while the job's list entry was being rewritten (before: %v), want %v", got, before, want)
			}
			if retries == 0 {
				t.Fatal("the list was not walked again")
			}
			for _, u := range users {
				old[u] = written[u]
			}
			cur = tc.at
		})
	}
}

// TestJobListLayoutMigration: a database of schema version 5 (the job list in minute
// buckets) gets its list written again in the buckets of this version at start; what the old
// layout left is gone.
func TestJobListLayoutMigration(t *testing.T) {
	s, db, uri := newStoreURI(t)
	ctx := t.Context()
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("m%d", i)
		if err := s.CreateJob(ctx, newJob(id, "alice", "kbase", t0.Add(time.Duration(i)*20*time.Second)), nil); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id + ":created"}, want...)
	}
	// The old layout: one minute bucket under level 0, directories one level lower.
	if err := db.Collection("job_list").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	minute := t0.UnixMilli() / 60_000
	old := []any{
		bson.D{{Key: "_id", Value: "*|h"}, {Key: "lo", Value: t0.UnixMilli() / (32 * 86_400_000)}, {Key: "hi", Value: t0.UnixMilli() / (32 * 86_400_000)}},
		bson.D{{Key: "_id", Value: fmt.Sprint("*|0|", minute)}, {Key: "e", Value: bson.D{{Key: "m0", Value: store.ListEntry(1, t0, job.Created, "kbase", "ghcr.io/kbase/tool")}}}},
	}
	if _, err := db.Collection("job_list").InsertMany(ctx, old); err != nil {
		t.Fatal(err)
	}
	setField(t, db, "schema", "store", "version", 5)
	s2, err := store.New(ctx, store.Config{URI: uri, Database: testDB, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	for _, f := range []jobs.ListFilter{{}, {User: "alice"}} {
		if got := listIDs(t, s2, f); !reflect.DeepEqual(got, want) {
			t.Errorf("%+v after the migration: %v, want %v", f, got, want)
		}
	}
	if n, err := db.Collection("job_list").CountDocuments(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("*|0|", minute)}}); err != nil || n != 0 {
		t.Errorf("the old layout's minute bucket is still there (%d, %v)", n, err)
	}
	var schema struct {
		Version int `bson:"version"`
	}
	if err := db.Collection("schema").FindOne(ctx, bson.D{{Key: "_id", Value: "store"}}).Decode(&schema); err != nil || schema.Version != 6 {
		t.Errorf("schema version after the migration: %d, %v; want 6", schema.Version, err)
	}
}

// TestSparsePageReadsInFewRounds: a page of a sparse list (a user's jobs, one every ten
// seconds, so one per second's bucket) is read in rounds of reads that span minutes, not in
// rounds per minute: its latency follows the batches it needs, not the minutes it covers.
// Walked minute by minute, this page took 119 reads in 43 rounds.
func TestSparsePageReadsInFewRounds(t *testing.T) {
	var log commandLog
	s, _, _ := newMonitoredStore(t, log.monitor())
	ctx := t.Context()
	const n, page = 60, 51
	at := t0.Truncate(time.Hour).Add(time.Minute)
	var js []*jobs.Job
	var subs [][]jobs.SubJob
	for i := range n {
		j := newJob(fmt.Sprintf("j%02d", i), "alice", "kbase", at.Add(time.Duration(i)*10*time.Second))
		j.State = job.Complete
		j.Transitions = append(j.Transitions, jobs.Transition{State: job.Complete, Time: j.UpdateTime, TransID: j.ID + "-t1"})
		for k := range j.Transitions {
			j.Transitions[k].NotifSent = true
		}
		js, subs = append(js, j), append(subs, nil)
	}
	if err := s.ImportFinishedJobs(ctx, js, subs); err != nil {
		t.Fatal(err)
	}
	rounds := 0
	s.SetListRoundHook(func() { rounds++ })
	var got []string
	reads := len(log.during(t, func() error {
		got = listIDs(t, s, jobs.ListFilter{User: "alice", Limit: page})
		return nil
	}))
	if len(got) != page || got[0] != fmt.Sprintf("j%02d:complete", n-1) || got[page-1] != fmt.Sprintf("j%02d:complete", n-page) {
		t.Fatalf("alice's newest %d jobs: %v", page, got)
	}
	t.Logf("a page of %d jobs over %d minutes of one job every 10 s: %d reads in %d rounds", page, page/6+1, reads, rounds)
	if rounds > 24 {
		t.Errorf("a page of %d jobs, one per bucket over %d minutes, took %d rounds of reads, want at most 24", page, page/6+1, rounds)
	}
	// No more reads than the walk minute by minute (119): the batches stop at what the page
	// still needs.
	if reads > 119 {
		t.Errorf("a page of %d jobs, one per bucket over %d minutes, took %d reads, want at most 119", page, page/6+1, reads)
	}
}
