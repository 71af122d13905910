package metrics_test

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/metrics"
	"github.com/kbase/cts/shared/job"
)

// TestMongoCounter counts in documents shaped as package store writes them, on the embedded
// MongoDB (FerretDB), and checks the readiness probe against it.
func TestMongoCounter(t *testing.T) {
	mg := devstack.TestMongo(t)
	client, err := mongo.Connect(options.Client().ApplyURI(mg.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(t.Context()) })
	db := client.Database("metrics_test")
	c := metrics.NewMongoCounter(db)

	t.Run("empty", func(t *testing.T) {
		st, err := c.CountJobsByState(t.Context())
		if err != nil || len(st) != 0 {
			t.Fatalf("states %v, %v", st, err)
		}
		n, err := c.CountUnsentTransitions(t.Context())
		if err != nil || n != 0 {
			t.Fatalf("unsent %d, %v", n, err)
		}
	})
	tr := func(sent ...bool) bson.A {
		var a bson.A
		for _, s := range sent {
			a = append(a, bson.D{{Key: "state", Value: "x"}, {Key: "time", Value: time.Now()}, {Key: "notif_sent", Value: s}})
		}
		return a
	}
	docs := []any{
		bson.D{{Key: "id", Value: "a"}, {Key: "state", Value: "complete"}, {Key: "transition_times", Value: tr(true, true, false)}},
		bson.D{{Key: "id", Value: "b"}, {Key: "state", Value: "complete"}, {Key: "transition_times", Value: tr(true, true)}},
		bson.D{{Key: "id", Value: "c"}, {Key: "state", Value: "created"}, {Key: "transition_times", Value: tr(false)}},
		bson.D{{Key: "id", Value: "d"}, {Key: "state", Value: "error"}, {Key: "transition_times", Value: tr(false, false, true)}},
	}
	if _, err := db.Collection("jobs").InsertMany(t.Context(), docs); err != nil {
		t.Fatal(err)
	}
	t.Run("counts", func(t *testing.T) {
		st, err := c.CountJobsByState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := map[job.State]int64{job.Complete: 2, job.Created: 1, job.Error: 1}
		if len(st) != len(want) {
			t.Fatalf("states %v, want %v", st, want)
		}
		for s, n := range want {
			if st[s] != n {
				t.Errorf("%s: %d, want %d", s, st[s], n)
			}
		}
		n, err := c.CountUnsentTransitions(t.Context())
		if err != nil || n != 4 {
			t.Fatalf("unsent %d, %v; want 4", n, err)
		}
	})
	t.Run("readiness probe", func(t *testing.T) {
		if err := metrics.MongoCheck(client).Probe(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
