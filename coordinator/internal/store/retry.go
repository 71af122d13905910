package store

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/shared/job"
)

var _ launch.Store = (*Store)(nil)

// UpdateLaunch replaces the launch record of a job that is still in state with launch attempt
// attempt (a record written before attempts were counted has none, which means 0).
func (s *Store) UpdateLaunch(ctx context.Context, id string, state job.State, attempt int, l jobs.Launch) error {
	if !l.LaunchedAt.IsZero() {
		l.LaunchedAt = l.LaunchedAt.UTC().Truncate(1e6)
	}
	attemptFilter := bson.D{{Key: "launch.attempt", Value: attempt}}
	if attempt == 0 {
		attemptFilter = bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "launch.attempt", Value: 0}},
			bson.D{{Key: "launch.attempt", Value: bson.D{{Key: "$exists", Value: false}}}},
		}}}
	}
	filter := append(bson.D{{Key: "_id", Value: id}, {Key: "state", Value: state}}, attemptFilter...)
	res, err := s.jobs.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "launch", Value: l}}}})
	if err != nil {
		return fmt.Errorf("update launch of job %s: %w", id, err)
	}
	if res.MatchedCount == 1 {
		return nil
	}
	if err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Err(); errors.Is(err, mongo.ErrNoDocuments) {
		return jobs.ErrNotFound
	}
	return jobs.ErrConflict
}
