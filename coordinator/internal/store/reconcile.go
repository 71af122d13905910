package store

// The reconciler's store methods (reconcile.Store): accounting recorded after a job ended.
// JobsToAccount reads the work documents (work.go).

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/reconcile"
)

var _ reconcile.Store = (*Store)(nil)

// SetAccounting implements reconcile.Store.
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
	key := bson.D{{Key: "_id", Value: id}}
	filter := append(bson.D{}, key...)
	filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: terminalStates()}}})
	var after jobDoc
	err := s.jobs.FindOneAndUpdate(ctx, filter, bson.D{{Key: "$set", Value: set}, incListVersion()},
		findAndModifyAfter()).Decode(&after)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return s.missOrConflict(ctx, s.jobs, key, op, nil)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.viewAfter(ctx, &after)
	if err := s.syncWork(ctx, &after.Job, true); err != nil {
		s.log.WarnContext(ctx, "work document of an accounted job not updated (the next pass repairs it)", "job_id", id, "error", err.Error())
	}
	return nil
}
