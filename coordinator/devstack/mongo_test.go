package devstack_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/kbase/cts/coordinator/devstack"
)

func mongoClient(t *testing.T, m *devstack.Mongo) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func TestMongoBasics(t *testing.T) {
	m := devstack.TestMongo(t)
	coll := mongoClient(t, m).Database("cts").Collection("basics")
	ctx := t.Context()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "j1"}, {Key: "state", Value: "created"}}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		State string `bson:"state"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "j1"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.State != "created" {
		t.Fatalf("state = %q, want created", got.State)
	}
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "missing"}}).Err()
	if !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("missing document: err = %v, want ErrNoDocuments", err)
	}
	// Unacknowledged writes are sent with moreToCome and get no reply: the proxy must not wait
	// for one (it would deadlock the next request on this connection).
	unack := coll.Database().Collection("basics", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	res, err := unack.InsertOne(ctx, bson.D{{Key: "_id", Value: "j2"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Acknowledged {
		t.Fatal("w:0 insert reported acknowledged")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := coll.CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("count = %d after unacknowledged insert, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMongoConditionalUpdateIsAtomic is the reason for the proxy: without it, FerretDB lets
// several racing FindOneAndUpdate calls on one document win.
func TestMongoConditionalUpdateIsAtomic(t *testing.T) {
	m := devstack.TestMongo(t)
	const racers, rounds = 8, 20
	clients := make([]*mongo.Collection, racers)
	for i := range clients {
		// One client per racer: the serialisation must hold across connection pools, as it
		// must across coordinator replicas.
		clients[i] = mongoClient(t, m).Database("cts").Collection("race")
	}
	ctx := t.Context()
	for round := range rounds {
		id := fmt.Sprintf("doc-%d", round)
		if _, err := clients[0].InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "state", Value: "a"}}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wins := make(chan int, racers)
		errs := make(chan error, racers)
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				err := clients[i].FindOneAndUpdate(ctx,
					bson.D{{Key: "_id", Value: id}, {Key: "state", Value: "a"}},
					bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: "b"}}}}).Err()
				switch {
				case err == nil:
					wins <- i
				case errors.Is(err, mongo.ErrNoDocuments):
				default:
					errs <- err
				}
			})
		}
		close(start)
		wg.Wait()
		close(wins)
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		if n := len(wins); n != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, n)
		}
	}
}

func TestMongoConcurrentIncLosesNothing(t *testing.T) {
	m := devstack.TestMongo(t)
	const workers, loops = 8, 20
	ctx := t.Context()
	setup := mongoClient(t, m).Database("cts").Collection("counter")
	if _, err := setup.InsertOne(ctx, bson.D{{Key: "_id", Value: "c"}, {Key: "n", Value: int64(0)}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		coll := mongoClient(t, m).Database("cts").Collection("counter")
		wg.Go(func() {
			for range loops {
				if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "c"}},
					bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got struct {
		N int64 `bson:"n"`
	}
	if err := setup.FindOne(ctx, bson.D{{Key: "_id", Value: "c"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.N != workers*loops {
		t.Fatalf("counter = %d, want %d", got.N, workers*loops)
	}
}

func TestMongoCloseIsIdempotentAndStopsServing(t *testing.T) {
	m, err := devstack.StartMongo(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := mongoClient(t, m)
	if err := c.Ping(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx, nil); err == nil {
		t.Fatal("ping after Close succeeded")
	}
}

func TestMongoDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	for i, want := range []int64{1, 2} {
		m, err := devstack.StartMongo(t.Context(), dir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := mongo.Connect(options.Client().ApplyURI(m.URI()))
		if err != nil {
			t.Fatal(err)
		}
		coll := c.Database("cts").Collection("persist")
		if _, err := coll.InsertOne(t.Context(), bson.D{{Key: "i", Value: i}}); err != nil {
			t.Fatal(err)
		}
		n, err := coll.CountDocuments(t.Context(), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Disconnect(t.Context())
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("start %d: count = %d, want %d", i, n, want)
		}
	}
}
