package metrics

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/kbase/cts/shared/job"
)

// MongoCounter counts jobs by state and unsent transitions in the jobs collection of the
// coordinator's MongoDB database (the layout of package store: "state" and
// "transition_times.notif_sent"). It only reads.
type MongoCounter struct {
	jobs *mongo.Collection
}

var _ Counter = (*MongoCounter)(nil)

// NewMongoCounter counts in db's jobs collection.
func NewMongoCounter(db *mongo.Database) *MongoCounter {
	return &MongoCounter{jobs: db.Collection("jobs")}
}

// CountJobsByState groups the jobs by state in one aggregation.
func (c *MongoCounter) CountJobsByState(ctx context.Context) (map[job.State]int64, error) {
	cur, err := c.jobs.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$state"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("count jobs by state: %w", err)
	}
	var rows []struct {
		State string `bson:"_id"`
		N     int64  `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("count jobs by state: %w", err)
	}
	out := make(map[job.State]int64, len(rows))
	for _, r := range rows {
		out[job.State(r.State)] = r.N
	}
	return out, nil
}

// CountUnsentTransitions counts the transitions with notif_sent false, over the jobs that
// have any.
func (c *MongoCounter) CountUnsentTransitions(ctx context.Context) (int64, error) {
	unsent := bson.D{{Key: "transition_times.notif_sent", Value: false}}
	cur, err := c.jobs.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: unsent}},
		{{Key: "$project", Value: bson.D{{Key: "transition_times.notif_sent", Value: 1}}}},
		{{Key: "$unwind", Value: "$transition_times"}},
		{{Key: "$match", Value: unsent}},
		{{Key: "$count", Value: "n"}},
	})
	if err != nil {
		return 0, fmt.Errorf("count unsent transitions: %w", err)
	}
	var rows []struct {
		N int64 `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return 0, fmt.Errorf("count unsent transitions: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	return rows[0].N, nil
}
