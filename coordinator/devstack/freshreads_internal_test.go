package devstack

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestMongoReadsSeeAcknowledgedWrites: every read sent after a write was acknowledged sees
// it, whichever connection of the pool carries it, while other reads run beside it, in both
// orders of the proxy's lock. Each writer moves its own document on by a conditional update
// on a field that is not _id (as the refdata and job records are updated), then reads it back
// by that field and by _id; readers scan the collection meanwhile so that reads overlap.
func TestMongoReadsSeeAcknowledgedWrites(t *testing.T) {
	rounds := 40
	if s := os.Getenv("CTS_FRESH_READS_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	for _, readFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("readFirst=%v", readFirst), func(t *testing.T) {
			m := TestMongo(t)
			m.SetReadFirst(readFirst)
			c, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(60 * time.Second).SetMaxPoolSize(32))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
			coll := c.Database("cts").Collection("fresh")
			ctx := t.Context()
			const writers, readers = 6, 6
			for w := range writers {
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("doc", w)}, {Key: "id", Value: w}, {Key: "v", Value: 0}}); err != nil {
					t.Fatal(err)
				}
			}
			var stale atomic.Int64
			stop := make(chan struct{})
			var rwg sync.WaitGroup
			for range readers {
				rwg.Add(1)
				go func() {
					defer rwg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						cur, err := coll.Find(ctx, bson.D{{Key: "v", Value: bson.D{{Key: "$gte", Value: 0}}}})
						if err != nil {
							t.Error(err)
							return
						}
						var all []bson.M
						if err := cur.All(ctx, &all); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			var wwg sync.WaitGroup
			for w := range writers {
				wwg.Add(1)
				go func() {
					defer wwg.Done()
					for v := range rounds {
						res, err := coll.UpdateOne(ctx, bson.D{{Key: "id", Value: w}, {Key: "v", Value: v}},
							bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: v + 1}}}})
						if err != nil {
							t.Error(err)
							return
						}
						if res.MatchedCount != 1 {
							t.Errorf("writer %d: the update of v=%d matched %d documents", w, v, res.MatchedCount)
							return
						}
						for _, filter := range []bson.D{{{Key: "id", Value: w}}, {{Key: "_id", Value: fmt.Sprint("doc", w)}}} {
							var got struct {
								V int `bson:"v"`
							}
							if err := coll.FindOne(ctx, filter).Decode(&got); err != nil {
								t.Error(err)
								return
							}
							if got.V != v+1 {
								stale.Add(1)
								t.Errorf("writer %d: read by %v after the acknowledged write of v=%d saw v=%d", w, filter, v+1, got.V)
							}
						}
					}
				}()
			}
			wwg.Wait()
			close(stop)
			rwg.Wait()
			if n := stale.Load(); n > 0 {
				t.Fatalf("%d stale reads", n)
			}
		})
	}
}
