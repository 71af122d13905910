package store

// The one-time migrations of a database written by an older version.
//
// Version 1 (the Python service's layout, and this store's before) let MongoDB pick ObjectIDs
// for jobs and sub-jobs and had no work documents. Version 2 keys jobs by their ID and
// sub-jobs by "<job ID>/<sub ID>" (their fields unchanged), and keeps job_work and job_counts
// (work.go). New migrates a version 1 database once, at start, before anything else uses it,
// and records the version in the schema collection; later starts read one document.
//
// Version 3 adds the job list index (joblist.go): every job's view and list entries are
// written from the jobs collection, a batch of jobs at a time. Writing them is idempotent, so
// a crashed migration is simply run again by the next start.
//
// Version 4 adds the cleaner's queue (clean.go), written from the jobs collection (idempotent
// too), and drops the two indexes of the jobs collection that nothing queries any more.
//
// Version 5 adds the due queue (work.go), copied from the work documents of the jobs it
// holds (a stale work document is repaired, with its due copy, by the pass that next reads
// it), and drops the work documents' index on unsent, which nothing queries any more.
//
// Version 6 lays the job list's buckets out per second instead of per minute (joblist.go):
// the list index (job_list) is dropped and written again from the jobs collection; the views
// stay. Dropping and writing it is idempotent too.
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
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/shared/job"
)

const (
	collSchema = "schema"
	// schemaID is the document of collSchema that holds this store's version.
	schemaID = "store"
	// schemaVersion is this code's layout. Version 7 was used for half an hour on main
	// (721a8b5, reverted in 3427590: per-user job lists by state and by image): a database
	// may say 7 with this layout plus those lists' documents in job_list (list keys "s:..."
	// and "i:..."), which this code never reads. The next layout change is therefore 8, and
	// its migration drops those documents.
	schemaVersion = 6
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
	var n, ns, w, nl, nc, nd int
	if meta.Version < 2 {
		if n, err = s.rekey(ctx, s.jobs, jobKey); err != nil {
			return fmt.Errorf("migrate jobs to schema %d: %w", schemaVersion, err)
		}
		if ns, err = s.rekey(ctx, s.subjobs, subKeyOf); err != nil {
			return fmt.Errorf("migrate sub-jobs to schema %d: %w", schemaVersion, err)
		}
		if w, err = s.rebuildWork(ctx); err != nil {
			return fmt.Errorf("migrate to schema %d: %w", schemaVersion, err)
		}
	}
	if meta.Version < 6 {
		// The list of an older layout (schema 3 to 5), if any, goes first.
		if err := s.list.Drop(ctx); err != nil {
			return fmt.Errorf("migrate to schema %d: drop the job list of the old layout: %w", schemaVersion, err)
		}
		if nl, err = s.rebuildList(ctx); err != nil {
			return fmt.Errorf("migrate to schema %d: %w", schemaVersion, err)
		}
	}
	if meta.Version < 4 {
		if nc, err = s.rebuildClean(ctx); err != nil {
			return fmt.Errorf("migrate to schema %d: %w", schemaVersion, err)
		}
	}
	if nd, err = s.rebuildDue(ctx); err != nil {
		return fmt.Errorf("migrate to schema %d: %w", schemaVersion, err)
	}
	if err := s.work.Indexes().DropOne(ctx, "unsent_1_t_1"); err != nil && !isIndexNotFound(err) {
		return fmt.Errorf("migrate to schema %d: drop index unsent_1_t_1 of %s: %w", schemaVersion, collWork, err)
	}
	// Version 2 indexed the transitions' times for the notifier and the finished jobs not
	// cleaned for the cleaner, which read the work documents and the cleaner's queue since:
	// the indexes only cost writes.
	for _, name := range []string{"transition_times.time_-1", "cleaned_1_state_1__update_time_1"} {
		if err := s.jobs.Indexes().DropOne(ctx, name); err != nil && !isIndexNotFound(err) {
			return fmt.Errorf("migrate to schema %d: drop index %s: %w", schemaVersion, name, err)
		}
	}
	if _, err := schema.UpdateOne(ctx, bson.D{{Key: "_id", Value: schemaID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: schemaVersion}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	if n+ns+w+nl+nc+nd > 0 {
		s.log.Info("migrated the job store", "schema_version", schemaVersion, "jobs_rekeyed", n, "subjobs_rekeyed", ns,
			"work_documents", w, "jobs_listed", nl, "jobs_to_clean", nc, "jobs_due", nd)
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

// rebuildDue copies the work document of every job in the due queue there (work.go) and
// returns how many; a copy there already is left as it is (it is the same or newer). The work
// document of a job that has not ended does not say whether a transition waits for Kafka
// (workCopy): such a job's own document does.
func (s *Store) rebuildDue(ctx context.Context) (int, error) {
	cur, err := s.work.Find(ctx, bson.D{})
	if err != nil {
		return 0, fmt.Errorf("read work documents: %w", err)
	}
	var ws []workDoc
	if err := cur.All(ctx, &ws); err != nil {
		return 0, fmt.Errorf("read work documents: %w", err)
	}
	n := 0
	for _, w := range ws {
		if !due(w) && !w.State.Terminal() {
			var d jobDoc
			err := s.jobs.FindOne(ctx, bson.D{{Key: "_id", Value: w.ID}}, options.FindOne().SetProjection(workProjection())).Decode(&d)
			if errors.Is(err, mongo.ErrNoDocuments) {
				continue // an orphan
			}
			if err != nil {
				return n, fmt.Errorf("read job %s: %w", w.ID, err)
			}
			if fresh, _ := workOf(&d.Job, d.Accounted); fresh.V == w.V {
				w.Unsent = fresh.Unsent
			}
		}
		if !due(w) {
			continue
		}
		if _, err := s.due.InsertOne(ctx, &w); err != nil && !isDuplicateKey(err) {
			return n, fmt.Errorf("queue job %s as due: %w", w.ID, err)
		}
		n++
	}
	return n, nil
}

// isIndexNotFound reports the server's IndexNotFound (27) error, or a namespace that does not
// exist yet (26).
func isIndexNotFound(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 27 || ce.Code == 26 || ce.Name == "IndexNotFound" || ce.Name == "NamespaceNotFound")
}

// RebuildJobList writes the job list's copy and entries of every job in the jobs collection
// (what the migration to schema 3 does) and returns how many jobs it listed. It is for jobs
// written into the collection by something other than the store (a test's seeded history, a
// restore); it is idempotent, and leaves entries of jobs that are gone, which are never
// listed.
func (s *Store) RebuildJobList(ctx context.Context) (int, error) {
	n, err := s.rebuildList(ctx)
	if err != nil {
		return n, fmt.Errorf("rebuild job list: %w", err)
	}
	return n, nil
}

// listBatch is how many jobs rebuildList holds at once.
const listBatch = 500

// rebuildList writes the job list index of every job (joblist.go) and returns how many jobs it
// listed. Each batch of jobs is written as whole documents: the views at once, and one update
// per bucket, directory and head, however many jobs share it.
func (s *Store) rebuildList(ctx context.Context) (int, error) {
	cur, err := s.jobs.Find(ctx, bson.D{}, options.Find().SetProjection(listProjection()))
	if err != nil {
		return 0, fmt.Errorf("read jobs: %w", err)
	}
	defer cur.Close(ctx)
	n := 0
	var batch []*jobDoc
	for cur.Next(ctx) {
		d := &jobDoc{}
		if err := cur.Decode(d); err != nil {
			return n, fmt.Errorf("read jobs: %w", err)
		}
		if d.ID == "" {
			continue
		}
		batch = append(batch, d)
		if len(batch) == listBatch {
			if err := s.listBatch(ctx, batch); err != nil {
				return n, err
			}
			n += len(batch)
			batch = batch[:0]
		}
	}
	if err := cur.Err(); err != nil {
		return n, fmt.Errorf("read jobs: %w", err)
	}
	if err := s.listBatch(ctx, batch); err != nil {
		return n, err
	}
	return n + len(batch), nil
}

// listBatch writes the list index of the jobs ds.
func (s *Store) listBatch(ctx context.Context, ds []*jobDoc) error {
	if len(ds) == 0 {
		return nil
	}
	views := make([]any, 0, len(ds))
	sets := map[string]map[string]any{} // document _id -> its $set
	set := func(id, field string, v any) {
		if sets[id] == nil {
			sets[id] = map[string]any{}
		}
		sets[id][field] = v
	}
	type bounds struct{ lo, hi int64 }
	heads := map[string]bounds{}
	for _, d := range ds {
		v, err := viewOf(d)
		if err != nil {
			return err
		}
		views = append(views, v)
		e := entryOfDoc(d)
		for _, key := range []string{keyAll, userKey(d.User)} {
			top := slotOf(topLevel, e.ms)
			b, ok := heads[key]
			if !ok {
				b = bounds{top, top}
			}
			heads[key] = bounds{min(b.lo, top), max(b.hi, top)}
			for l := topLevel; l >= 1; l-- {
				id := slotID(key, l, slotOf(l, e.ms))
				set(id, "c."+strconv.FormatInt(slotOf(l-1, e.ms), 10), true)
			}
			id := slotID(key, 0, slotOf(0, e.ms))
			set(id, "e."+fieldKey(e.id), e.String())
		}
	}
	// A view stored already (by a migration that crashed) is the same or newer: it stays.
	if _, err := s.views.InsertMany(ctx, views, options.InsertMany().SetOrdered(false)); err != nil && !allDuplicates(err) {
		return fmt.Errorf("write job views: %w", err)
	}
	for key, b := range heads {
		if _, err := s.list.UpdateOne(ctx, bson.D{{Key: "_id", Value: headID(key)}},
			bson.D{{Key: "$min", Value: bson.D{{Key: "lo", Value: b.lo}}}, {Key: "$max", Value: bson.D{{Key: "hi", Value: b.hi}}}},
			options.UpdateOne().SetUpsert(true)); err != nil {
			return fmt.Errorf("write job list: %w", err)
		}
	}
	// Directories before buckets (the order of the levels in the _id: "|3|" < "|0|" is not
	// it, so sort by level).
	ids := make([]string, 0, len(sets))
	for id := range sets {
		ids = append(ids, id)
	}
	level := func(id string) string { p := strings.Split(id, "|"); return p[len(p)-2] }
	slices.SortFunc(ids, func(a, b string) int { return -strings.Compare(level(a), level(b)) })
	for _, id := range ids {
		fields := bson.D{}
		for k, v := range sets[id] {
			fields = append(fields, bson.E{Key: k, Value: v})
		}
		if _, err := s.list.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: fields}},
			options.UpdateOne().SetUpsert(true)); err != nil {
			return fmt.Errorf("write job list: %w", err)
		}
	}
	return nil
}

// allDuplicates reports a bulk write error whose every write error is a duplicate key.
func allDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return isDuplicateKey(err)
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 && we.Code != 11001 && !strings.Contains(we.Message, "UNIQUE constraint failed") {
			return false
		}
	}
	return true
}
