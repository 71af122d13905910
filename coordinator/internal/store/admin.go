package store

// The admin side of the job store: admin metadata, job clean, and the sites collection.

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/internal/jobs"
)

// UpdateAdminMeta implements jobs.Store with one $set / $unset on admin_meta.<key>. The keys
// must have passed jobs.ValidateMetaKey ('.' would nest, '$' would be an operator).
func (s *Store) UpdateAdminMeta(ctx context.Context, id string, set map[string]any, unset []string) error {
	op := "update admin meta of job " + id
	update := bson.D{}
	if len(set) > 0 {
		d := bson.D{}
		for k, v := range set {
			d = append(d, bson.E{Key: "admin_meta." + k, Value: v})
		}
		update = append(update, bson.E{Key: "$set", Value: d})
	}
	if len(unset) > 0 {
		d := bson.D{}
		for _, k := range unset {
			d = append(d, bson.E{Key: "admin_meta." + k, Value: ""})
		}
		update = append(update, bson.E{Key: "$unset", Value: d})
	}
	if len(update) == 0 {
		return nil
	}
	update = append(update, incListVersion())
	var after jobDoc
	err := s.jobs.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: id}}, update, findAndModifyAfter()).Decode(&after)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("%s: %w", op, jobs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.viewAfter(ctx, &after)
	return nil
}

// SetCleaned implements jobs.Store.
func (s *Store) SetCleaned(ctx context.Context, id string) error {
	op := "set job " + id + " cleaned"
	key := bson.D{{Key: "_id", Value: id}}
	filter := append(bson.D{}, key...)
	filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: terminalStates()}}})
	var after jobDoc
	err := s.jobs.FindOneAndUpdate(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "cleaned", Value: true}}}, incListVersion()},
		findAndModifyAfter()).Decode(&after)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return s.missOrConflict(ctx, s.jobs, key, op, nil)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.viewAfter(ctx, &after)
	if _, err := s.clean.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		// The job is cleaned; DirtyJobs drops its queue document when it meets it.
		s.log.WarnContext(ctx, "cleaned job left in the cleaner's queue", "job_id", id, "error", err.Error())
	}
	return nil
}

// InitSites implements jobs.Store: an upsert with $setOnInsert {active: true} per site.
func (s *Store) InitSites(ctx context.Context, names []string) error {
	for _, n := range names {
		_, err := s.sites.UpdateOne(ctx, bson.D{{Key: "site", Value: n}},
			bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "active", Value: true}}}},
			options.UpdateOne().SetUpsert(true))
		if err != nil {
			return fmt.Errorf("init site %s: %w", n, err)
		}
	}
	return nil
}

// SiteStates implements jobs.Store.
func (s *Store) SiteStates(ctx context.Context) (map[string]bool, error) {
	cur, err := s.sites.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("read sites: %w", err)
	}
	var docs []struct {
		Site   string `bson:"site"`
		Active bool   `bson:"active"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read sites: %w", err)
	}
	out := make(map[string]bool, len(docs))
	for _, d := range docs {
		out[d.Site] = d.Active
	}
	return out, nil
}

// SetSiteActive implements jobs.Store.
func (s *Store) SetSiteActive(ctx context.Context, name string, active bool) error {
	_, err := s.sites.UpdateOne(ctx, bson.D{{Key: "site", Value: name}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "active", Value: active}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("set site %s active: %w", name, err)
	}
	return nil
}
