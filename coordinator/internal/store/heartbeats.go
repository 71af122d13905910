package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/jobs"
)

// TouchSubJobs records heartbeats with TouchSubJob's rules (LastSeen never moves back; a
// heartbeat of an attempt other than the sub-job's current one changes nothing), one point
// write each: the agents that left since the last interval (agentws records the connected
// ones with PutPresence). A heartbeat of a sub-job that is gone or of a replaced attempt is
// dropped silently (the agent's next event is refused anyway). It returns how many sub-jobs
// matched; the first error other than those ends it.
func (s *Store) TouchSubJobs(ctx context.Context, ts []jobs.Touch) (int, error) {
	n := 0
	for _, t := range ts {
		err := s.TouchSubJob(ctx, t.JobID, t.Sub, t.Attempt, t.At)
		switch {
		case err == nil:
			n++
		case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrConflict):
		default:
			return n, fmt.Errorf("record %d heartbeats: %w", len(ts), err)
		}
	}
	return n, nil
}

// The agents connected to each replica (agentws/live.go): presence {_id: "<replica>/<n>",
// replica, n, at, agents: ["<job>/<container>/<attempt>", ...], left: [{k, at}, ...]}, the
// agents connected at at and those that left recently (when), presenceChunk entries a
// document. A replica rewrites its documents once per heartbeat interval, each a point write,
// so the cost is a few writes per interval whatever the number of agents, and nothing scans
// the sub-jobs. The reconciler reads the whole collection once per pass: a few documents per
// replica. Documents of replicas gone (a restart is a new incarnation, a new name) keep their
// last time, which is when their agents were last heard from, until pruned.
const (
	collPresence  = "presence"
	presenceChunk = 2000
	// presenceKeep is how long documents not rewritten are kept (far beyond any heartbeat
	// deadline).
	presenceKeep = time.Hour
)

var _ agentws.Presence = (*Store)(nil)

func (s *Store) presenceColl() *mongo.Collection { return s.jobs.Database().Collection(collPresence) }

type presenceDoc struct {
	ID      string         `bson:"_id"`
	Replica string         `bson:"replica"`
	N       int            `bson:"n"`
	At      time.Time      `bson:"at"`
	Agents  []string       `bson:"agents"`
	Left    []presenceLeft `bson:"left,omitempty"`
}

type presenceLeft struct {
	Key string    `bson:"k"`
	At  time.Time `bson:"at"`
}

type presenceEntry struct {
	key string
	at  time.Time // zero: connected
}

// PutPresence implements agentws.Presence: the agents are sorted and written presenceChunk a
// document, then the replica's documents beyond those are deleted, and documents of any
// replica not rewritten for presenceKeep are pruned (about every hundredth call).
func (s *Store) PutPresence(ctx context.Context, replica string, at time.Time, agents []jobs.Touch) error {
	es := make([]presenceEntry, len(agents))
	for i, a := range agents {
		es[i] = presenceEntry{key: a.JobID + "/" + strconv.Itoa(a.Sub) + "/" + a.Attempt, at: msTime(a.At)}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].key < es[j].key })
	at = msTime(at)
	n := 0
	for ; n*presenceChunk < len(es); n++ {
		doc := presenceDoc{ID: replica + "/" + strconv.Itoa(n), Replica: replica, N: n, At: at, Agents: []string{}}
		for _, e := range es[n*presenceChunk : min(len(es), (n+1)*presenceChunk)] {
			if e.at.IsZero() {
				doc.Agents = append(doc.Agents, e.key)
			} else {
				doc.Left = append(doc.Left, presenceLeft{Key: e.key, At: e.at})
			}
		}
		if _, err := s.presenceColl().ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true)); err != nil && !isDuplicateKey(err) {
			return fmt.Errorf("record the agents connected to %s: %w", replica, err)
		}
	}
	// The documents a larger list wrote before: one point delete each, until one is missing.
	for i := n; ; i++ {
		res, err := s.presenceColl().DeleteOne(ctx, bson.D{{Key: "_id", Value: replica + "/" + strconv.Itoa(i)}})
		if err != nil {
			return fmt.Errorf("record the agents connected to %s: %w", replica, err)
		}
		if res.DeletedCount == 0 {
			break
		}
	}
	if s.presenceWrites.Add(1)%100 == 1 {
		if _, err := s.presenceColl().DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: msTime(at.Add(-presenceKeep))}}}}); err != nil {
			return fmt.Errorf("prune presence records: %w", err)
		}
	}
	return nil
}

// Presence returns every agent the replicas' presence records list, each with the time it was
// last heard from: its record's time for a connected agent, when it left for one that left (an
// agent listed by several, after a reconnect, once per record).
func (s *Store) Presence(ctx context.Context) ([]jobs.Touch, error) {
	cur, err := s.presenceColl().Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("read the connected agents: %w", err)
	}
	var docs []presenceDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read the connected agents: %w", err)
	}
	var out []jobs.Touch
	add := func(k string, at time.Time) {
		job, rest, ok1 := strings.Cut(k, "/")
		c, attempt, ok2 := strings.Cut(rest, "/")
		n, err := strconv.Atoi(c)
		if ok1 && ok2 && err == nil { // else not written by PutPresence
			out = append(out, jobs.Touch{JobID: job, Sub: n, Attempt: attempt, At: at})
		}
	}
	for _, d := range docs {
		for _, k := range d.Agents {
			add(k, d.At)
		}
		for _, l := range d.Left {
			add(l.Key, l.At)
		}
	}
	return out, nil
}
