package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

// TestRestartMigratesOldRecords restarts a site whose job records are in the layout written
// before jobs were keyed by their ID (the Python service's: ObjectIDs picked by the driver, no
// work documents, no counts, no schema version). The restarted site migrates them at start:
// the finished job loads with its outputs, an unfinished job of the old layout is launched
// and completes, and new jobs run.
func TestRestartMigratesOldRecords(t *testing.T) {
	testsite.RequireEnv(t)
	dir := filepath.Join(t.TempDir(), "dev")
	d := startDev(t, dir, nil, "--listen", "127.0.0.1:0")
	env := d.ready(t)
	ctx := t.Context()
	user, err := client.New(env["CTS_URL"], env["CTS_TOKEN"])
	if err != nil {
		t.Fatal(err)
	}
	demoImage := env["CTS_REGISTRY"] + "/" + devmode.DemoImage
	inputs := []string{devmode.SamplesPrefix + devmode.SampleGenomes[0]}
	job1 := runJob(t, user, demoImage, inputs, "cts-data/cts_user/migrate/run1")
	before, err := user.Job(ctx, job1)
	if err != nil {
		t.Fatal(err)
	}

	mc, err := mongo.Connect(options.Client().ApplyURI(env["MONGODB_URI"]))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = mc.Disconnect(context.Background()) }()
	db := mc.Database("cdmtaskservice")
	// Once nothing is left to happen to the job (notifications sent, accounting recorded), the
	// running site writes no more records: rewrite them as the old layout had them.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, err := db.Collection("job_work").CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d work documents left 3 minutes after the job completed", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var old bson.D
	if err := db.Collection("jobs").FindOne(ctx, bson.D{{Key: "_id", Value: job1}}).Decode(&old); err != nil {
		t.Fatalf("job %s is not keyed by its ID: %v", job1, err)
	}
	pendingID := uuid.NewString()
	pending := pendingCopy(t, old, pendingID, "cts-data/cts_user/migrate/pending")
	toV1(t, db.Collection("jobs"), without(old, "_id"), without(pending, "_id"))
	var sub bson.D
	if err := db.Collection("subjobs").FindOne(ctx, bson.D{{Key: "_id", Value: job1 + "/0"}}).Decode(&sub); err != nil {
		t.Fatalf("sub-job %s/0 is not keyed by its ID: %v", job1, err)
	}
	// A new job's sub-jobs wait in download_submitted for their agents.
	now := time.Now().UTC().Truncate(time.Millisecond)
	toV1(t, db.Collection("subjobs"), without(sub, "_id"), bson.D{{Key: "id", Value: pendingID}, {Key: "sub_id", Value: 0},
		{Key: "state", Value: "download_submitted"}, {Key: "_update_time", Value: now},
		{Key: "transition_times", Value: bson.A{bson.D{{Key: "state", Value: "created"}, {Key: "time", Value: now}},
			bson.D{{Key: "state", Value: "download_submitted"}, {Key: "time", Value: now}}}},
		{Key: "exit_code", Value: nil}, {Key: "outputs", Value: nil}, {Key: "last_seq", Value: 0}})
	for _, c := range []string{"job_work", "job_counts", "schema"} {
		if err := db.Collection(c).Drop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d.stop(t)

	d2 := startDev(t, dir, nil, "--listen", "127.0.0.1:0")
	env2 := d2.ready(t)
	if !strings.Contains(d2.stderr.String(), "migrated the job store") {
		t.Errorf("the restarted site did not say it migrated its records:\n%s", tail(d2.stderr.String(), 4000))
	}
	user2, err := client.New(env2["CTS_URL"], env2["CTS_TOKEN"])
	if err != nil {
		t.Fatal(err)
	}
	after, err := user2.Job(ctx, job1)
	if err != nil || after.State != "complete" || len(after.Outputs) != len(before.Outputs) || len(after.Outputs) == 0 {
		t.Fatalf("job %s after the migration: %+v, %v; before: %+v", job1, after, err, before)
	}
	for i := range before.Outputs {
		if after.Outputs[i] != before.Outputs[i] {
			t.Errorf("output %d of %s: %+v, before the migration %+v", i, job1, after.Outputs[i], before.Outputs[i])
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	st, err := user2.Wait(wctx, pendingID, client.WaitOptions{})
	if err != nil || st.State != "complete" {
		j, _ := user2.Job(ctx, pendingID)
		logs, _ := filepath.Glob(filepath.Join(dir, "agents", pendingID, "*", "*", "agent.err"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
		t.Fatalf("the unfinished job of the old layout: %+v, %v; job: %+v", st, err, j)
	}
	for _, c := range []string{"jobs", "subjobs"} {
		n, err := db.Collection(c).CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$type", Value: "objectId"}}}})
		if err != nil || n != 0 {
			t.Errorf("%s: %d documents still keyed by an ObjectID (%v)", c, n, err)
		}
	}
	runJob(t, user2, demoImage, inputs, "cts-data/cts_user/migrate/run2")
	d2.stop(t)
}

// toV1 replaces the documents of c keyed by the id fields of docs with docs inserted without
// _id: the driver gives them ObjectIDs, as the old layout had.
func toV1(t *testing.T, c *mongo.Collection, docs ...bson.D) {
	t.Helper()
	for _, d := range docs {
		key := bson.D{}
		for _, e := range d {
			if e.Key == "id" || e.Key == "sub_id" {
				key = append(key, e)
			}
		}
		if _, err := c.DeleteMany(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		if _, err := c.InsertOne(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
}

// without returns d without its fields named keys.
func without(d bson.D, keys ...string) bson.D {
	out := bson.D{}
	for _, e := range d {
		if !slices.Contains(keys, e.Key) {
			out = append(out, e)
		}
	}
	return out
}

// pendingCopy is done, a finished job's document, made into a new job id that was just
// created: what it gained while running is dropped, and it writes to outDir.
func pendingCopy(t *testing.T, done bson.D, id, outDir string) bson.D {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	out := bson.D{}
	for _, e := range without(done, "outputs", "output_file_count", "error", "admin_error", "traceback", "logpath",
		"cpu_hours", "cpu_factor", "max_memory", "launch", "_accounted") {
		switch e.Key {
		case "id":
			e.Value = id
		case "state":
			e.Value = "created"
		case "_update_time":
			e.Value = now
		case "cleaned":
			e.Value = false
		case "transition_times":
			e.Value = bson.A{bson.D{{Key: "state", Value: "created"}, {Key: "time", Value: now},
				{Key: "trans_id", Value: id + "-created"}, {Key: "notif_sent", Value: true}}}
		case "job_input":
			in, ok := e.Value.(bson.D)
			if !ok {
				t.Fatalf("job_input is a %T", e.Value)
			}
			in = append(bson.D{}, in...)
			for i := range in {
				if in[i].Key == "output_dir" {
					in[i].Value = outDir
				}
			}
			e.Value = in
		}
		out = append(out, e)
	}
	return out
}
