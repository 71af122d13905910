package devstack_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	_ "modernc.org/sqlite"

	"github.com/kbase/cts/coordinator/devstack"
)

// queryPlan returns SQLite's plan for FerretDB's lookup by _id in collection coll of
// database db (the statement FerretDB's SQLite backend sends for a filter {_id: X}).
func queryPlan(t *testing.T, dir, db, coll string) string {
	t.Helper()
	sdb, err := sql.Open("sqlite", "file:"+filepath.Join(dir, db+".sqlite")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var table string
	if err := sdb.QueryRow("SELECT table_name FROM _ferretdb_collections WHERE name = ?", coll).Scan(&table); err != nil {
		t.Fatalf("table of %s: %v", coll, err)
	}
	rows, err := sdb.Query(fmt.Sprintf(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), `"x"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

// TestMongoIDLookupsUseAnIndex pins that FerretDB's lookups by _id search an index instead of
// reading the whole table: in collections made by an insert, by createIndexes, and again
// after a drop.
func TestMongoIDLookupsUseAnIndex(t *testing.T) {
	dir := t.TempDir()
	m, err := devstack.StartMongo(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	db := mongoClient(t, m).Database("cts")
	ctx := t.Context()
	if _, err := db.Collection("jobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "j1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("subjobs").Indexes().CreateOne(ctx, mongoIndex("id")); err != nil {
		t.Fatal(err)
	}
	for _, coll := range []string{"jobs", "subjobs"} {
		if plan := queryPlan(t, dir, "cts", coll); !strings.Contains(plan, "USING INDEX") {
			t.Errorf("lookup by _id in %s: plan %q, want an index search", coll, plan)
		}
	}
	if err := db.Collection("jobs").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("jobs").InsertOne(ctx, bson.D{{Key: "_id", Value: "j2"}}); err != nil {
		t.Fatal(err)
	}
	if plan := queryPlan(t, dir, "cts", "jobs"); !strings.Contains(plan, "USING INDEX") {
		t.Errorf("lookup by _id in a re-created collection: plan %q, want an index search", plan)
	}
	// The index is the proxy's, not FerretDB's: listIndexes shows FerretDB's own only.
	cur, err := db.Collection("jobs").Indexes().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var idx []bson.M
	if err := cur.All(ctx, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx) != 1 || idx[0]["name"] != "_id_" {
		t.Errorf("indexes %v, want only _id_", idx)
	}
}

func mongoIndex(field string) mongo.IndexModel {
	return mongo.IndexModel{Keys: bson.D{{Key: field, Value: 1}}}
}
