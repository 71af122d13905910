package store

// The reconciler's store methods (jobs.ReconcileStore): accounting recorded after a job ended.

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/reconcile"
)

var _ reconcile.Store = (*Store)(nil)

// accountedField marks a job whose accounting was recorded (the Job model does not carry it).
const accountedField = "_accounted"

// JobsToAccount implements jobs.ReconcileStore.
func (s *Store) JobsToAccount(ctx context.Context, since time.Time, limit int) ([]*jobs.Job, error) {
	filter := bson.D{
		{Key: "state", Value: bson.D{{Key: "$in", Value: terminalStates()}}},
		{Key: "launch", Value: bson.D{{Key: "$exists", Value: true}}},
		{Key: accountedField, Value: bson.D{{Key: "$ne", Value: true}}},
		{Key: "_update_time", Value: bson.D{{Key: "$gte", Value: msTime(since)}}},
	}
	return s.findJobs(ctx, "jobs to account", filter,
		options.Find().SetSort(bson.D{{Key: "_update_time", Value: 1}}).SetLimit(limitOrDefault(limit)).SetProjection(listProjection()))
}

// SetAccounting implements jobs.ReconcileStore.
func (s *Store) SetAccounting(ctx context.Context, id string, a jobs.Accounting) error {
	op := "set accounting of job " + id
	set := bson.D{{Key: accountedField, Value: true}}
	if a.CPUHours != nil {
		set = append(set, bson.E{Key: "cpu_hours", Value: *a.CPUHours})
	}
	if a.CPUFactor != nil {
		set = append(set, bson.E{Key: "cpu_factor", Value: *a.CPUFactor})
	}
	if a.MaxMemory != nil {
		set = append(set, bson.E{Key: "max_memory", Value: *a.MaxMemory})
	}
	key := bson.D{{Key: "id", Value: id}}
	filter := append(bson.D{}, key...)
	filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: terminalStates()}}})
	res, err := s.jobs.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if res.MatchedCount == 0 {
		return s.missOrConflict(ctx, s.jobs, key, op, nil)
	}
	return nil
}
