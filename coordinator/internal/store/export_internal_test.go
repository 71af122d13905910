package store

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/shared/job"
)

// ListBucketID is the _id of the job list's bucket of user's jobs (every job's when user is
// "") holding time t.
func ListBucketID(user string, t time.Time) string {
	key := keyAll
	if user != "" {
		key = userKey(user)
	}
	return slotID(key, 0, slotOf(0, msTime(t).UnixMilli()))
}

// ListEntry is the job list's entry of a job in a bucket.
func ListEntry(lv int64, t time.Time, st job.State, cluster, image string) string {
	return entry{lv: lv, ms: msTime(t).UnixMilli(), state: st, cluster: cluster, image: image}.String()
}

// ListField is the field of job id in a bucket document.
func ListField(id string) string { return "e." + fieldKey(id) }

// NewMonitored is New with mon watching the commands of the store's client.
func NewMonitored(ctx context.Context, cfg Config, mon *event.CommandMonitor) (*Store, error) {
	return newStore(ctx, cfg, func(o *options.ClientOptions) { o.SetMonitor(mon) })
}

// SetListRetryHook makes hook run before each new walk of ListJobs (a walk that met a job being
// rewritten in the list).
func (s *Store) SetListRetryHook(hook func(attempt int)) { s.listRetryHook = hook }

// SetListRoundHook makes hook run before each round of reads of a ListJobs walk.
func (s *Store) SetListRoundHook(hook func()) { s.listRoundHook = hook }
