package store

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/metrics"
	"github.com/kbase/cts/shared/job"
)

// Counter counts what the metrics' gauges show, in a database this package writes: the jobs
// in each unfinished state and the unsent transitions among the work documents, the finished
// jobs in job_counts (work.go). Its cost follows the work in flight, never the history. It
// only reads, and may use its own client (the coordinator gives it one, so that counting
// never waits for the store's connections).
type Counter struct {
	jobs, work, due, counts *mongo.Collection
}

var _ metrics.Counter = (*Counter)(nil)

// NewCounter counts in db.
func NewCounter(db *mongo.Database) *Counter {
	return &Counter{jobs: db.Collection(collJobs), work: db.Collection(collWork), due: db.Collection(collDue), counts: db.Collection(collCounts)}
}

// CountJobsByState implements metrics.Counter.
func (c *Counter) CountJobsByState(ctx context.Context) (map[job.State]int64, error) {
	cur, err := c.work.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: activeStates()}}}}}},
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
	out := make(map[job.State]int64, len(job.States))
	for _, r := range rows {
		out[job.State(r.State)] = r.N
	}
	var ended bson.M
	err = c.counts.FindOne(ctx, bson.D{{Key: "_id", Value: countsID}}).Decode(&ended)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("count finished jobs: %w", err)
	}
	for _, st := range job.States {
		if !st.Terminal() {
			continue
		}
		switch n := ended[string(st)].(type) {
		case int32:
			out[st] = int64(n)
		case int64:
			out[st] = n
		case float64:
			out[st] = int64(n)
		}
		if out[st] == 0 {
			delete(out, st)
		}
	}
	return out, nil
}

// CountUnsentTransitions implements metrics.Counter: the transitions with notif_sent false of
// the jobs whose due queue document says some wait (work.go).
func (c *Counter) CountUnsentTransitions(ctx context.Context) (int64, error) {
	cur, err := c.due.Find(ctx, bson.D{{Key: "unsent", Value: true}}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("count unsent transitions: %w", err)
	}
	var ws []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &ws); err != nil {
		return 0, fmt.Errorf("count unsent transitions: %w", err)
	}
	var n int64
	for _, w := range ws {
		var d struct {
			Transitions []struct {
				NotifSent bool `bson:"notif_sent"`
			} `bson:"transition_times"`
		}
		err := c.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: w.ID}},
			options.FindOne().SetProjection(bson.D{{Key: "transition_times.notif_sent", Value: 1}})).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("count unsent transitions: %w", err)
		}
		for _, t := range d.Transitions {
			if !t.NotifSent {
				n++
			}
		}
	}
	return n, nil
}
