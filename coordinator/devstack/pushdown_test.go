package devstack_test

import (
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/devstack"
)

// TestMongoPointCommands pins the proxy's point commands: a conditional findAndModify, update
// or delete on one _id gives exactly the answers MongoDB (and FerretDB without the proxy)
// give, matching or not, and is run without reading the other documents.
func TestMongoPointCommands(t *testing.T) {
	m := devstack.TestMongo(t)
	coll := mongoClient(t, m).Database("cts").Collection("points")
	ctx := t.Context()
	docs := []any{bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: "created"}, {Key: "n", Value: 0}}}
	for i := range 50 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprint("other-", i)}, {Key: "state", Value: "created"}, {Key: "n", Value: 0}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	in := func(s ...string) bson.D { return bson.D{{Key: "$in", Value: s}} }
	before := m.PointCommands()

	// findAndModify: a match returns the document, a miss is ErrNoDocuments.
	var got struct {
		State string `bson:"state"`
		N     int    `bson:"n"`
	}
	err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: in("created", "x")}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: "running"}}}, {Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got)
	if err != nil || got.State != "running" || got.N != 1 {
		t.Fatalf("matching findAndModify: %+v, %v", got, err)
	}
	err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: "created"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: "again"}}}}).Err()
	if !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("findAndModify on a stale state: err = %v, want ErrNoDocuments", err)
	}
	err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "missing"}, {Key: "state", Value: "running"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: "again"}}}}).Err()
	if !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("findAndModify of a missing document: err = %v, want ErrNoDocuments", err)
	}

	// update: the counts of a match and of a miss, with $or conditions as the store sends.
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "n", Value: bson.D{{Key: "$lt", Value: 5}}}}, bson.D{{Key: "gone", Value: bson.D{{Key: "$exists", Value: true}}}},
	}}}, bson.D{{Key: "$max", Value: bson.D{{Key: "n", Value: 7}}}})
	if err != nil || res.MatchedCount != 1 || res.ModifiedCount != 1 {
		t.Fatalf("matching update: %+v, %v", res, err)
	}
	res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: bson.D{{Key: "$lt", Value: 5}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: "wrong"}}}})
	if err != nil || res.MatchedCount != 0 || res.ModifiedCount != 0 {
		t.Fatalf("update on a stale condition: %+v, %v", res, err)
	}

	// delete: a miss deletes nothing, a match deletes the one document.
	dres, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: "created"}})
	if err != nil || dres.DeletedCount != 0 {
		t.Fatalf("delete on a stale state: %+v, %v", dres, err)
	}
	if m.PointCommands()-before != 6 {
		t.Fatalf("%d point commands, want 6", m.PointCommands()-before)
	}
	dres, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "state", Value: "running"}, {Key: "n", Value: 7}})
	if err != nil || dres.DeletedCount != 1 {
		t.Fatalf("matching delete: %+v, %v", dres, err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 50 {
		t.Fatalf("%d documents left (%v), want the 50 others untouched", n, err)
	}
	var other struct {
		State string `bson:"state"`
		N     int    `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "other-7"}}).Decode(&other); err != nil || other.State != "created" || other.N != 0 {
		t.Fatalf("another document changed: %+v, %v", other, err)
	}

	// What is not a point command goes through as it is: an upsert, a filter without _id, an
	// _id that is not a string or ObjectID.
	before = m.PointCommands()
	res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "b"}, {Key: "state", Value: "new"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 1}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil || res.UpsertedCount != 1 {
		t.Fatalf("upsert: %+v, %v", res, err)
	}
	res, err = coll.UpdateMany(ctx, bson.D{{Key: "state", Value: "created"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}})
	if err != nil || res.MatchedCount != 50 {
		t.Fatalf("update by state: %+v, %v", res, err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 42}, {Key: "state", Value: "x"}}); err != nil {
		t.Fatal(err)
	}
	res, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 42}, {Key: "state", Value: "x"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 3}}}})
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("update by numeric _id: %+v, %v", res, err)
	}
	if n := m.PointCommands() - before; n != 0 {
		t.Fatalf("%d point commands among commands that are not, want 0", n)
	}
}

// BenchmarkMongoConditionalUpdate measures a conditional update of one document by _id in a
// collection of 5000: a point command of the proxy.
func BenchmarkMongoConditionalUpdate(b *testing.B) {
	m := devstack.TestMongo(b)
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Disconnect(b.Context())
	coll := c.Database("cts").Collection("bench")
	var docs []any
	for i := range 5000 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprint("job-", i)}, {Key: "state", Value: "created"}, {Key: "n", Value: 0},
			{Key: "pad", Value: fmt.Sprintf("%0500d", i)}})
	}
	if _, err := coll.InsertMany(b.Context(), docs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		res, err := coll.UpdateOne(b.Context(), bson.D{{Key: "_id", Value: fmt.Sprint("job-", i%5000)}, {Key: "state", Value: "created"}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}})
		if err != nil || res.MatchedCount != 1 {
			b.Fatalf("%+v, %v", res, err)
		}
	}
}
