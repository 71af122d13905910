package store

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/refdata"
)

// collRefdata holds the reference data records.
const collRefdata = "refdata"

var _ refdata.Store = (*Store)(nil)

// refdataColl is the refdata collection (the Store struct predates it).
func (s *Store) refdataColl() *mongo.Collection {
	return s.jobs.Database().Collection(collRefdata)
}

// InitRefdata creates the indexes of the refdata collection: id unique,
// file, and statuses.cleaned/state/_update_time with the partial filter of the cleaner
// (created without it on FerretDB, which refuses partial indexes). Call it once at start,
// after New; it is idempotent.
func (s *Store) InitRefdata(ctx context.Context) error {
	c := s.refdataColl()
	specs := []index{
		{keys: bson.D{{Key: "id", Value: 1}}, unique: true},
		{keys: bson.D{{Key: "file", Value: 1}}},
		{keys: bson.D{{Key: "statuses.cleaned", Value: 1}, {Key: "statuses.state", Value: 1}, {Key: "statuses._update_time", Value: 1}},
			partial: bson.D{
				{Key: "statuses.cleaned", Value: false},
				{Key: "statuses.state", Value: bson.D{{Key: "$in", Value: bson.A{"complete", "error"}}}},
			}},
	}
	for _, sp := range specs {
		model := func(partial bool) mongo.IndexModel {
			o := options.Index()
			if sp.unique {
				o.SetUnique(true)
			}
			if partial {
				o.SetPartialFilterExpression(sp.partial)
			}
			return mongo.IndexModel{Keys: sp.keys, Options: o}
		}
		_, err := c.Indexes().CreateOne(ctx, model(sp.partial != nil))
		if err != nil && sp.partial != nil && isNotImplemented(err) {
			s.log.Info("mongo server has no partial indexes (FerretDB, the embedded stack): the reference data cleaner's index "+
				"is created without its filter; it finds the same records, its index holds every record",
				"collection", collRefdata, "keys", fmt.Sprint(sp.keys))
			_, err = c.Indexes().CreateOne(ctx, model(false))
		}
		if err != nil {
			return fmt.Errorf("create index %v on %s: %w", sp.keys, collRefdata, err)
		}
	}
	return nil
}

// SaveRefdata inserts rd with Rev 0 unless a record for rd.File exists (refdata.ErrExists):
// an upsert keyed on file with $setOnInsert, as the Python service does.
func (s *Store) SaveRefdata(ctx context.Context, rd *refdata.Refdata) error {
	doc := *rd
	doc.Rev = 0
	doc.RegisteredOn = msTime(doc.RegisteredOn)
	doc.Statuses = msStatuses(doc.Statuses)
	res, err := s.refdataColl().UpdateOne(ctx, bson.D{{Key: "file", Value: rd.File}},
		bson.D{{Key: "$setOnInsert", Value: &doc}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("save refdata %s: %w", rd.File, err)
	}
	if res.UpsertedCount == 0 {
		return fmt.Errorf("save refdata %s: %w", rd.File, refdata.ErrExists)
	}
	rd.Rev = 0
	rd.RegisteredOn, rd.Statuses = doc.RegisteredOn, doc.Statuses
	return nil
}

// GetRefdata returns the record with the ID; refdata.ErrNotFound if none.
func (s *Store) GetRefdata(ctx context.Context, id string) (*refdata.Refdata, error) {
	var rd refdata.Refdata
	err := s.refdataColl().FindOne(ctx, bson.D{{Key: "id", Value: id}}).Decode(&rd)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("get refdata %s: %w", id, refdata.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get refdata %s: %w", id, err)
	}
	return &rd, nil
}

// ListRefdata returns up to limit (default 1000) records sorted by file, only those of file
// when it is not "".
func (s *Store) ListRefdata(ctx context.Context, file string, limit int) ([]refdata.Refdata, error) {
	filter := bson.D{}
	if file != "" {
		filter = bson.D{{Key: "file", Value: file}}
	}
	return s.findRefdata(ctx, filter, limit)
}

// RefdataWithState returns up to limit records with a status in state.
func (s *Store) RefdataWithState(ctx context.Context, state refdata.State, limit int) ([]refdata.Refdata, error) {
	return s.findRefdata(ctx, bson.D{{Key: "statuses.state", Value: string(state)}}, limit)
}

func (s *Store) findRefdata(ctx context.Context, filter bson.D, limit int) ([]refdata.Refdata, error) {
	cur, err := s.refdataColl().Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "file", Value: 1}, {Key: "id", Value: 1}}).SetLimit(limitOrDefault(limit)))
	if err != nil {
		return nil, fmt.Errorf("list refdata: %w", err)
	}
	out := []refdata.Refdata{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list refdata: %w", err)
	}
	return out, nil
}

// UpdateRefdataStatuses replaces the statuses of record id if its revision is still rev, and
// moves the revision to rev+1. The whole array is written (times truncated to the
// millisecond): no positional operator, which FerretDB lacks. refdata.ErrConflict when the
// revision moved on, refdata.ErrNotFound when there is no record.
func (s *Store) UpdateRefdataStatuses(ctx context.Context, id string, rev int64, statuses []refdata.Status) error {
	op := fmt.Sprintf("update refdata %s statuses", id)
	res, err := s.refdataColl().UpdateOne(ctx,
		bson.D{{Key: "id", Value: id}, {Key: "_rev", Value: rev}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "statuses", Value: msStatuses(statuses)},
			{Key: "_rev", Value: rev + 1},
		}}})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if res.MatchedCount == 1 {
		return nil
	}
	n, err := s.refdataColl().CountDocuments(ctx, bson.D{{Key: "id", Value: id}})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", op, refdata.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", op, refdata.ErrConflict)
}

// msStatuses returns a copy of ss with every time truncated to the millisecond (UTC).
func msStatuses(ss []refdata.Status) []refdata.Status {
	out := make([]refdata.Status, len(ss))
	for i, st := range ss {
		st.UpdateTime = msTime(st.UpdateTime)
		tt := make([]refdata.Transition, len(st.Transitions))
		for j, t := range st.Transitions {
			tt[j] = refdata.Transition{State: t.State, Time: msTime(t.Time)}
		}
		st.Transitions = tt
		if st.NERSCDownloadTaskID == nil {
			st.NERSCDownloadTaskID = []string{}
		}
		out[i] = st
	}
	return out
}
