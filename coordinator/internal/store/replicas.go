package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/lease"
	"github.com/kbase/cts/coordinator/internal/signals"
)

// What coordinator replicas share besides the jobs: the leases of the periodic work (package
// lease) and the stop signals (package signals). Both collections stay small: one document
// per lease, and the signals of the last minutes. Every read or write here names documents by
// _id, or reads a collection that small, so its cost does not grow with the history.
const (
	collLeases  = "leases"
	collSignals = "signals"
)

var (
	_ lease.Store       = (*Store)(nil)
	_ signals.Store     = (*Store)(nil)
	_ signals.Versioned = (*Store)(nil)
)

// signalsVersionID is the signals collection's version document, {_id, n}: n is incremented
// after every signal recorded, so that a replica's poll reads one document by _id when nothing
// was published (signals.Versioned). It has no "at": no query by time matches it.
const signalsVersionID = "version"

// InitReplicas creates the indexes of the collections replicas share: signals and live data
// by time, live data by job. Call it once at start, after New; it is idempotent.
func (s *Store) InitReplicas(ctx context.Context) error {
	for _, ix := range []struct {
		coll *mongo.Collection
		key  string
	}{{s.signalsColl(), "at"}, {s.liveColl(), "job"}, {s.liveColl(), "at"}, {s.interestColl(), "until"}} {
		if _, err := ix.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: ix.key, Value: 1}}}); err != nil {
			return fmt.Errorf("create index on %s: %w", ix.coll.Name(), err)
		}
	}
	return nil
}

func (s *Store) leasesColl() *mongo.Collection  { return s.jobs.Database().Collection(collLeases) }
func (s *Store) signalsColl() *mongo.Collection { return s.jobs.Database().Collection(collSignals) }

// leaseDoc is one lease: {_id: name, holder: replica name, incarnation, until}.
type leaseDoc struct {
	Name        string    `bson:"_id"`
	Holder      string    `bson:"holder"`
	Incarnation int64     `bson:"incarnation"`
	Until       time.Time `bson:"until"`
}

// AcquireLease implements lease.Store: one conditional update of the lease's document (held by
// holder or an earlier incarnation of its name, or expired), or, when there is none, its
// insert; a lease held by another replica makes the update match nothing and the insert
// collide.
func (s *Store) AcquireLease(ctx context.Context, name string, holder lease.Holder, now, until time.Time) (bool, error) {
	filter := bson.D{{Key: "_id", Value: name}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "holder", Value: holder.Name}, {Key: "incarnation", Value: bson.D{{Key: "$lte", Value: holder.Incarnation}}}},
		bson.D{{Key: "until", Value: bson.D{{Key: "$lt", Value: msTime(now)}}}},
	}}}
	res, err := s.leasesColl().UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{
		{Key: "holder", Value: holder.Name}, {Key: "incarnation", Value: holder.Incarnation}, {Key: "until", Value: msTime(until)},
	}}})
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	if res.MatchedCount > 0 {
		return true, nil
	}
	_, err = s.leasesColl().InsertOne(ctx, leaseDoc{Name: name, Holder: holder.Name, Incarnation: holder.Incarnation, Until: msTime(until)})
	switch {
	case err == nil:
		return true, nil
	case isDuplicateKey(err):
		return false, nil // another replica holds it
	default:
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
}

// ReleaseLease implements lease.Store.
func (s *Store) ReleaseLease(ctx context.Context, name string, holder lease.Holder) error {
	_, err := s.leasesColl().DeleteOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "holder", Value: holder.Name},
		{Key: "incarnation", Value: holder.Incarnation}})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// LeaseHolder implements lease.Store; tests and admins read it too.
func (s *Store) LeaseHolder(ctx context.Context, name string) (lease.Holder, time.Time, error) {
	var d leaseDoc
	err := s.leasesColl().FindOne(ctx, bson.D{{Key: "_id", Value: name}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return lease.Holder{}, time.Time{}, nil
	}
	if err != nil {
		return lease.Holder{}, time.Time{}, fmt.Errorf("read lease %s: %w", name, err)
	}
	return lease.Holder{Name: d.Holder, Incarnation: d.Incarnation}, d.Until, nil
}

// PublishSignal implements signals.Store: an upsert keyed on the signal's ID that only
// inserts, then, when it inserted, the version's move.
func (s *Store) PublishSignal(ctx context.Context, sig signals.Signal) error {
	sig.At = msTime(sig.At)
	res, err := s.signalsColl().UpdateOne(ctx, bson.D{{Key: "_id", Value: sig.ID}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "job", Value: sig.JobID}, {Key: "reason", Value: sig.Reason}, {Key: "at", Value: sig.At}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && !isDuplicateKey(err) { // two replicas inserting at once: one wins, both are fine
		return fmt.Errorf("publish signal %s: %w", sig.ID, err)
	}
	if err != nil || res.UpsertedCount == 0 {
		return nil // it was there: the version moved when it was recorded
	}
	return s.bumpSignals(ctx, sig.ID)
}

// bumpSignals moves the signals' version after signal id was recorded.
func (s *Store) bumpSignals(ctx context.Context, id string) error {
	_, err := s.signalsColl().UpdateOne(ctx, bson.D{{Key: "_id", Value: signalsVersionID}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil && !isDuplicateKey(err) {
		return fmt.Errorf("signal %s recorded, the signals' version not moved (other replicas see it at their next full read, within a quarter of their window): %w", id, err)
	}
	return nil
}

// SignalsVersion implements signals.Versioned: one read by _id.
func (s *Store) SignalsVersion(ctx context.Context) (int64, error) {
	var d struct {
		N int64 `bson:"n"`
	}
	err := s.signalsColl().FindOne(ctx, bson.D{{Key: "_id", Value: signalsVersionID}}).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, fmt.Errorf("read the signals' version: %w", err)
	}
	return d.N, nil
}

// SignalsSince implements signals.Store.
func (s *Store) SignalsSince(ctx context.Context, since time.Time) ([]signals.Signal, error) {
	cur, err := s.signalsColl().Find(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$gte", Value: msTime(since)}}}})
	if err != nil {
		return nil, fmt.Errorf("read signals: %w", err)
	}
	var out []signals.Signal
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read signals: %w", err)
	}
	return out, nil
}

// PruneSignals implements signals.Store.
func (s *Store) PruneSignals(ctx context.Context, before time.Time) error {
	_, err := s.signalsColl().DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: msTime(before)}}}})
	if err != nil {
		return fmt.Errorf("prune signals: %w", err)
	}
	return nil
}

// RenewSignal implements signals.Store: an upsert keyed on the signal's ID that replaces it,
// then the version's move.
func (s *Store) RenewSignal(ctx context.Context, sig signals.Signal) error {
	_, err := s.signalsColl().UpdateOne(ctx, bson.D{{Key: "_id", Value: sig.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: msTime(sig.At)}, {Key: "by", Value: sig.By}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && !isDuplicateKey(err) {
		return fmt.Errorf("renew signal %s: %w", sig.ID, err)
	}
	return s.bumpSignals(ctx, sig.ID)
}

// The live data of the agents, published on demand across replicas (see agentws/shared.go):
// live_interest holds what is being read now, live what replicas published of it. Both stay
// small: interests last a minute, and documents are pruned ten minutes after their last write.
const (
	collLive         = "live"
	collLiveInterest = "live_interest"
)

var _ agentws.Shared = (*Store)(nil)

func (s *Store) liveColl() *mongo.Collection { return s.jobs.Database().Collection(collLive) }
func (s *Store) interestColl() *mongo.Collection {
	return s.jobs.Database().Collection(collLiveInterest)
}

// interestDoc is one reader's interest: {_id: key, until}.
type interestDoc struct {
	Key   string    `bson:"_id"`
	Until time.Time `bson:"until"`
}

// SetInterest implements agentws.Shared: one upsert returning the document as it was.
func (s *Store) SetInterest(ctx context.Context, key string, until time.Time) (bool, error) {
	var before interestDoc
	err := s.interestColl().FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: key}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "until", Value: msTime(until)}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.Before)).Decode(&before)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return false, nil
	case err != nil && isDuplicateKey(err):
		return true, nil // another replica recorded it at the same moment
	case err != nil:
		return false, fmt.Errorf("record interest %s: %w", key, err)
	}
	return before.Until.After(time.Now()), nil
}

// Interests implements agentws.Shared.
func (s *Store) Interests(ctx context.Context, now time.Time) ([]string, error) {
	cur, err := s.interestColl().Find(ctx, bson.D{{Key: "until", Value: bson.D{{Key: "$gt", Value: msTime(now)}}}})
	if err != nil {
		return nil, fmt.Errorf("read interests: %w", err)
	}
	var docs []interestDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read interests: %w", err)
	}
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.Key
	}
	return out, nil
}

// PutLive implements agentws.Shared.
func (s *Store) PutLive(ctx context.Context, doc agentws.LiveDoc) error {
	doc.At = msTime(doc.At)
	_, err := s.liveColl().ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
	if err != nil && !isDuplicateKey(err) {
		return fmt.Errorf("publish live data %s: %w", doc.ID, err)
	}
	return nil
}

// LiveDocs implements agentws.Shared.
func (s *Store) LiveDocs(ctx context.Context, jobID string) ([]agentws.LiveDoc, error) {
	cur, err := s.liveColl().Find(ctx, bson.D{{Key: "job", Value: jobID}})
	if err != nil {
		return nil, fmt.Errorf("read live data of job %s: %w", jobID, err)
	}
	var out []agentws.LiveDoc
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("read live data of job %s: %w", jobID, err)
	}
	return out, nil
}

// PruneLive implements agentws.Shared.
func (s *Store) PruneLive(ctx context.Context, before time.Time) error {
	if _, err := s.liveColl().DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: msTime(before)}}}}); err != nil {
		return fmt.Errorf("prune live data: %w", err)
	}
	if _, err := s.interestColl().DeleteMany(ctx, bson.D{{Key: "until", Value: bson.D{{Key: "$lt", Value: msTime(before)}}}}); err != nil {
		return fmt.Errorf("prune interests: %w", err)
	}
	return nil
}
