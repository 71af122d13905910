package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/store"
)

const testDB = "cts_test"

// newStore starts an embedded MongoDB (FerretDB) and opens a store on it.
func newStore(t testing.TB) (*store.Store, *mongo.Database) {
	t.Helper()
	s, db, _ := newStoreURI(t)
	return s, db
}

// newStoreURI is newStore that also returns the server's URI.
func newStoreURI(t testing.TB) (*store.Store, *mongo.Database, string) {
	t.Helper()
	return newMonitoredStore(t, nil)
}

// newMonitoredStore is newStoreURI with mon (nil: none) watching the store's commands.
func newMonitoredStore(t testing.TB, mon *event.CommandMonitor) (*store.Store, *mongo.Database, string) {
	t.Helper()
	m := devstack.TestMongo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := store.NewMonitored(ctx, store.Config{
		URI: m.URI(), Database: testDB, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, mon)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return s, c.Database(testDB), m.URI()
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]store.Config{
		"no uri":      {Database: "x"},
		"no database": {URI: "mongodb://127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := store.New(t.Context(), cfg); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestNewFailsWithoutServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	_, err := store.New(ctx, store.Config{URI: "mongodb://127.0.0.1:1/?connectTimeoutMS=200", Database: "x"})
	if err == nil {
		t.Fatal("New succeeded without a server")
	}
}

func TestIndexes(t *testing.T) {
	_, db := newStore(t)
	want := map[string][]string{
		"jobs": {
			"id_1", "_update_time_-1", "state_1__update_time_-1", "job_input.cluster_1__update_time_-1",
			"user_1__update_time_-1", "user_1_state_1__update_time_-1",
			"user_1_job_input.cluster_1__update_time_-1",
			"image.name_1__update_time_-1", "user_1_image.name_1__update_time_-1",
		},
		"subjobs":   {"id_1_sub_id_1"},
		"images":    {"name_1_digest_1", "name_1_tag_1"},
		"job_clean": {"t_1"},
	}
	for coll, names := range want {
		t.Run(coll, func(t *testing.T) {
			cur, err := db.Collection(coll).Indexes().List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var specs []struct {
				Name   string `bson:"name"`
				Unique bool   `bson:"unique"`
			}
			if err := cur.All(t.Context(), &specs); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, s := range specs {
				got[s.Name] = s.Unique
			}
			for _, n := range names {
				if _, ok := got[n]; !ok {
					t.Errorf("index %s missing; have %v", n, got)
				}
			}
			for _, n := range []string{"id_1", "id_1_sub_id_1", "name_1_digest_1", "name_1_tag_1"} {
				if unique, ok := got[n]; ok && !unique {
					t.Errorf("index %s is not unique", n)
				}
			}
		})
	}
}

// TestNewIsIdempotent opens a second store on the same database: the indexes exist already.
func TestNewIsIdempotent(t *testing.T) {
	m := devstack.TestMongo(t)
	for range 2 {
		s, err := store.New(t.Context(), store.Config{URI: m.URI(), Database: testDB,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func isErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}
