package devstack

import (
	"context"
	"maps"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestMongoCountsScans: the proxy counts the reads FerretDB answers by decoding the whole
// collection (any filter but exactly {_id}), by command and collection, and not the point
// reads.
func TestMongoCountsScans(t *testing.T) {
	m := TestMongo(t)
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	coll := c.Database("cts").Collection("scans")
	ctx := t.Context()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: "created"}}); err != nil {
		t.Fatal(err)
	}
	before := settledStats(t, m)
	for _, read := range []func() error{
		func() error { return coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Err() },         // a point read
		func() error { return coll.FindOne(ctx, bson.D{{Key: "state", Value: "created"}}).Err() }, // a scan
		func() error {
			_, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: "x"}}) // a scan
			return err
		},
		func() error {
			cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"a"}}}}}) // a scan
			if err == nil {
				err = cur.All(ctx, &[]bson.M{})
			}
			return err
		},
		func() error { // a scan in batches: a find and its getMore
			cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(1))
			if err == nil {
				err = cur.All(ctx, &[]bson.M{})
			}
			return err
		},
	} {
		if err := read(); err != nil {
			t.Fatal(err)
		}
	}
	d := settledStats(t, m).Sub(before)
	want := map[string]int64{"find scans": 3, "getMore scans": 1, "aggregate scans": 1} // CountDocuments is an aggregate
	if !maps.Equal(d.Scans, want) {
		t.Fatalf("scans %v, want %v (finds %d)", d.Scans, want, d.Commands["find"])
	}
	if d.ScanServer <= 0 || d.ScanServer > d.Server {
		t.Fatalf("scans took %v of FerretDB's %v", d.ScanServer, d.Server)
	}
}
