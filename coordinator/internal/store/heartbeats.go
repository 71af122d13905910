package store

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/kbase/cts/coordinator/internal/jobs"
)

// TouchSubJobs records many heartbeats in one MongoDB operation, with TouchSubJob's rules:
// LastSeen never moves back, and a heartbeat of an attempt other than the sub-job's current
// one changes nothing. It is one update of many documents rather than a bulk of point
// updates: on FerretDB every statement of a bulk is a round of its own, and a few hundred of
// them take seconds. The heartbeats' latest time is written to all of them (they are a
// batch: an interval's worth). A sub-job matches when its current attempt is among the
// batch's attempts (attempt names are unique per container), or it has none yet, so a
// replaced attempt's agent, heard alone, does not keep the sub-job alive. Unlike
// TouchSubJob it does not tell which heartbeats matched: a heartbeat of a sub-job that is
// gone or of a replaced attempt is dropped silently (the agent's next event is refused
// anyway). It returns how many sub-jobs matched.
func (s *Store) TouchSubJobs(ctx context.Context, ts []jobs.Touch) (int, error) {
	if len(ts) == 0 {
		return 0, nil
	}
	ids := make(bson.A, 0, len(ts))
	attempts := bson.A{}
	anyAttempt := false
	var at time.Time
	seen := map[string]bool{}
	for _, t := range ts {
		ids = append(ids, subKey(t.JobID, t.Sub))
		if t.Attempt == "" {
			anyAttempt = true
		} else if !seen[t.Attempt] {
			seen[t.Attempt] = true
			attempts = append(attempts, t.Attempt)
		}
		if t.At.After(at) {
			at = t.At
		}
	}
	filter := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}
	if !anyAttempt {
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "attempt", Value: bson.D{{Key: "$in", Value: attempts}}}},
			bson.D{{Key: "attempt", Value: bson.D{{Key: "$exists", Value: false}}}},
		}})
	}
	res, err := s.subjobs.UpdateMany(ctx, filter, bson.D{{Key: "$max", Value: bson.D{{Key: "last_seen", Value: msTime(at)}}}})
	if err != nil {
		return 0, fmt.Errorf("record %d heartbeats: %w", len(ts), err)
	}
	return int(res.MatchedCount), nil
}
