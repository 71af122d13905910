package store

// The one-time migration of a database written before jobs were keyed by _id.
//
// Version 1 (the Python service's layout, and this store's before) let MongoDB pick ObjectIDs
// for jobs and sub-jobs and had no work documents. Version 2 keys jobs by their ID and
// sub-jobs by "<job ID>/<sub ID>" (their fields unchanged), and keeps job_work and job_counts
// (work.go). New migrates a version 1 database once, at start, before anything else uses it,
// and records the version in the schema collection; later starts read one document.
//
// Each document is moved through a staging collection, so that a crash at any point loses
// nothing: copy it there under its new _id, delete the old document, insert the copy, delete
// the staged copy; a start finds what a crashed migration staged and finishes it first. Stop
// every coordinator of an older version before starting this one: the migration does not
// take a lock against their writes.

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/shared/job"
)

const (
	collSchema = "schema"
	// schemaID is the document of collSchema that holds this store's version.
	schemaID      = "store"
	schemaVersion = 2
)

// migrate brings the database to schemaVersion.
func (s *Store) migrate(ctx context.Context) error {
	schema := s.db.Collection(collSchema)
	var meta struct {
		Version int `bson:"version"`
	}
	err := schema.FindOne(ctx, bson.D{{Key: "_id", Value: schemaID}}).Decode(&meta)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("read schema version: %w", err)
	}
	if meta.Version >= schemaVersion {
		return nil
	}
	if n, err := s.jobs.EstimatedDocumentCount(ctx); err == nil && n > 0 {
		s.log.Info("migrating the job store: every job is read once; do not run older coordinators on this database", "schema_version", schemaVersion, "jobs", n)
	}
	jobKey := func(d bson.Raw) (string, bool) { return d.Lookup("id").StringValueOK() }
	subKeyOf := func(d bson.Raw) (string, bool) {
		id, ok := d.Lookup("id").StringValueOK()
		sub, ok2 := d.Lookup("sub_id").AsInt64OK()
		return subKey(id, int(sub)), ok && ok2
	}
	n, err := s.rekey(ctx, s.jobs, jobKey)
	if err != nil {
		return fmt.Errorf("migrate jobs to schema %d: %w", schemaVersion, err)
	}
	ns, err := s.rekey(ctx, s.subjobs, subKeyOf)
	if err != nil {
		return fmt.Errorf("migrate sub-jobs to schema %d: %w", schemaVersion, err)
	}
	w, err := s.rebuildWork(ctx)
	if err != nil {
		return fmt.Errorf("migrate to schema %d: %w", schemaVersion, err)
	}
	if _, err := schema.UpdateOne(ctx, bson.D{{Key: "_id", Value: schemaID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: schemaVersion}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	if n+ns+w > 0 {
		s.log.Info("migrated the job store", "schema_version", schemaVersion, "jobs_rekeyed", n, "subjobs_rekeyed", ns, "work_documents", w)
	}
	return nil
}

// rekey gives every document of coll whose _id is not key(document) that _id (see above) and
// returns how many it moved. A document key cannot name is left as it is.
func (s *Store) rekey(ctx context.Context, coll *mongo.Collection, key func(bson.Raw) (string, bool)) (int, error) {
	staging := s.db.Collection(coll.Name() + "_rekey")
	finish := func(doc bson.Raw, newID string) error {
		if _, err := coll.InsertOne(ctx, doc); err != nil && !isDuplicateKey(err) {
			return fmt.Errorf("insert %s: %w", newID, err)
		}
		if _, err := staging.DeleteOne(ctx, bson.D{{Key: "_id", Value: newID}}); err != nil {
			return fmt.Errorf("unstage %s: %w", newID, err)
		}
		return nil
	}
	// What a crashed migration staged: its old document may or may not be gone yet.
	staged, err := staging.Find(ctx, bson.D{})
	if err != nil {
		return 0, err
	}
	var left []bson.Raw
	if err := staged.All(ctx, &left); err != nil {
		return 0, err
	}
	for _, doc := range left {
		newID, _ := doc.Lookup("_id").StringValueOK()
		if err := s.deleteOld(ctx, coll, doc, newID); err != nil {
			return 0, err
		}
		if err := finish(doc, newID); err != nil {
			return 0, err
		}
	}
	// The old documents: their _id only, so the scan holds little.
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "id", Value: 1}, {Key: "sub_id", Value: 1}}))
	if err != nil {
		return 0, err
	}
	type move struct {
		old   bson.RawValue
		newID string
	}
	var moves []move
	for cur.Next(ctx) {
		newID, ok := key(cur.Current)
		if !ok {
			continue
		}
		old := cur.Current.Lookup("_id")
		if id, isStr := old.StringValueOK(); isStr && id == newID {
			continue
		}
		moves = append(moves, move{old: bson.RawValue{Type: old.Type, Value: append([]byte(nil), old.Value...)}, newID: newID})
	}
	if err := cur.Err(); err != nil {
		return 0, err
	}
	_ = cur.Close(ctx)
	for _, m := range moves {
		var doc bson.D
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: m.old}}).Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", m.newID, err)
		}
		for i := range doc {
			if doc[i].Key == "_id" {
				doc[i].Value = m.newID
			}
		}
		raw, err := bson.Marshal(doc)
		if err != nil {
			return 0, err
		}
		if _, err := staging.ReplaceOne(ctx, bson.D{{Key: "_id", Value: m.newID}}, raw, options.Replace().SetUpsert(true)); err != nil {
			return 0, fmt.Errorf("stage %s: %w", m.newID, err)
		}
		if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: m.old}}); err != nil {
			return 0, fmt.Errorf("delete old %s: %w", m.newID, err)
		}
		if err := finish(raw, m.newID); err != nil {
			return 0, err
		}
	}
	return len(moves), nil
}

// deleteOld deletes the document of coll that staged doc (with _id newID) was copied from,
// found by its natural key, unless it is the copy itself.
func (s *Store) deleteOld(ctx context.Context, coll *mongo.Collection, doc bson.Raw, newID string) error {
	filter := bson.D{{Key: "id", Value: doc.Lookup("id")}, {Key: "_id", Value: bson.D{{Key: "$ne", Value: newID}}}}
	if sub, ok := doc.Lookup("sub_id").AsInt64OK(); ok {
		filter = append(filter, bson.E{Key: "sub_id", Value: sub})
	}
	if _, err := coll.DeleteMany(ctx, filter); err != nil {
		return fmt.Errorf("delete old %s: %w", newID, err)
	}
	return nil
}

// rebuildWork writes the work document of every job that calls for one and sets the counts of
// finished jobs; it returns how many work documents it wrote.
func (s *Store) rebuildWork(ctx context.Context) (int, error) {
	cur, err := s.jobs.Find(ctx, bson.D{}, options.Find().SetProjection(workProjection()))
	if err != nil {
		return 0, fmt.Errorf("read jobs: %w", err)
	}
	defer cur.Close(ctx)
	counts := bson.D{}
	tally := map[job.State]int64{}
	n := 0
	for cur.Next(ctx) {
		var d jobDoc
		if err := cur.Decode(&d); err != nil {
			return n, fmt.Errorf("read jobs: %w", err)
		}
		j := d.Job
		if j.ID == "" {
			continue
		}
		if j.State.Terminal() {
			tally[j.State]++
		}
		if _, pending := workOf(&j, d.Accounted); !pending {
			continue
		}
		if err := s.syncWork(ctx, &j, d.Accounted); err != nil {
			return n, err
		}
		n++
	}
	if err := cur.Err(); err != nil {
		return n, fmt.Errorf("read jobs: %w", err)
	}
	for _, st := range job.States {
		if st.Terminal() {
			counts = append(counts, bson.E{Key: string(st), Value: tally[st]})
		}
	}
	if _, err := s.counts.UpdateOne(ctx, bson.D{{Key: "_id", Value: countsID}}, bson.D{{Key: "$set", Value: counts}},
		options.UpdateOne().SetUpsert(true)); err != nil {
		return n, fmt.Errorf("set counts of finished jobs: %w", err)
	}
	return n, nil
}
