package devstack

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // FerretDB's own SQLite driver, for the _id indexes
)

// The _id index FerretDB v1 does not use.
//
// FerretDB's SQLite backend stores each document as JSON in one column of a table per
// collection and narrows a query by _id with `WHERE _ferretdb_sjson->'$._id' = ?`. The unique
// index it makes for _id, though, is on `_ferretdb_sjson->"_id"`: another expression, which
// SQLite's planner does not match, so every lookup by _id (every find, update, delete, and
// the read half of every findAndModify) reads and parses the whole table: 140 ms per lookup
// at 5000 documents of 500 bytes here, growing with the collection.
//
// The proxy therefore gives every collection's table the index FerretDB's query can use, the
// first time a command names the collection once its table exists (a command that creates a
// collection makes its table; the proxy looks right after it). It opens FerretDB's SQLite
// files itself, beside FerretDB's own connections (SQLite's locking and busy timeout order
// them, and FerretDB's prepared statements see the new index through SQLite's schema
// check). FerretDB does not know the index (its own metadata does not list it), so it never
// shows in listIndexes and is dropped with its table.

// idIndexes keeps the _id indexes of the collections the proxy has seen.
type idIndexes struct {
	dir string // FerretDB's SQLite directory: <dir>/<database>.sqlite

	mu    sync.Mutex
	dbs   map[string]*sql.DB
	ready map[string]bool // "<database>.<collection>" whose table has the index
}

func newIDIndexes(dir string) *idIndexes {
	return &idIndexes{dir: dir, dbs: map[string]*sql.DB{}, ready: map[string]bool{}}
}

// validName is what FerretDB accepts as a database name (and so as a file name).
var validName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)

// commandTarget returns the database and collection a command names ("" when it names none),
// and whether the command drops them (drop, dropDatabase).
func commandTarget(req []byte) (db, coll string, drops bool) {
	m, ok := parseOpMsg(req)
	if !ok {
		return "", "", false
	}
	db, ok = m.body.Lookup("$db").StringValueOK()
	if !ok || !validName.MatchString(db) {
		return "", "", false
	}
	cmd, err := m.body.IndexErr(0)
	if err != nil {
		return "", "", false
	}
	switch cmd.Key() {
	case "dropDatabase":
		return db, "", true
	case "drop":
		coll, _ = cmd.Value().StringValueOK()
		return db, coll, true
	}
	coll, _ = cmd.Value().StringValueOK()
	return db, coll, false
}

// after is told of every request once FerretDB answered it, before the answer goes to the
// client (who may rely on the index at once); it makes the _id index of the
// collection the request named, if it has none yet. The caller holds the proxy's lock, so no
// command runs meanwhile. An index that cannot be made is tried again on the collection's
// next command: it is an optimisation, never a reason to fail a client's request.
func (x *idIndexes) after(req []byte) {
	db, coll, drops := commandTarget(req)
	if db == "" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if drops {
		// The table goes, and its index with it: the next one of the same name needs its own.
		for k := range x.ready {
			whole := coll == "" && strings.HasPrefix(k, db+".")
			if whole || k == db+"."+coll {
				delete(x.ready, k)
			}
		}
		return
	}
	if coll == "" || x.ready[db+"."+coll] {
		return
	}
	ok, err := x.ensure(db, coll)
	if err == nil && ok {
		x.ready[db+"."+coll] = true
	}
}

// known reports whether req needs nothing of after: it names no collection, or one whose
// index is made. A command that may need the index made runs alone (after writes to FerretDB's
// files).
func (x *idIndexes) known(req []byte) bool {
	db, coll, drops := commandTarget(req)
	if db == "" || coll == "" {
		return !drops
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return !drops && x.ready[db+"."+coll]
}

// ensure makes the index of coll's table; ok is false when the collection has no table yet.
func (x *idIndexes) ensure(db, coll string) (ok bool, err error) {
	sdb := x.dbs[db]
	if sdb == nil {
		path := filepath.Join(x.dir, db+".sqlite")
		// No journal_mode here: FerretDB set WAL on the file, and changing it would fight
		// FerretDB's own connections.
		sdb, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			return false, err
		}
		sdb.SetMaxOpenConns(1)
		x.dbs[db] = sdb
	}
	ctx := context.Background()
	var table string
	err = sdb.QueryRowContext(ctx, "SELECT table_name FROM _ferretdb_collections WHERE name = ?", coll).Scan(&table)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err // no metadata table yet: the database is being created
	}
	q := fmt.Sprintf(`CREATE UNIQUE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, "ctsproxy_"+table+"_id", table)
	if _, err := sdb.ExecContext(ctx, q); err != nil {
		return false, err
	}
	return true, nil
}

// close closes the SQLite connections.
func (x *idIndexes) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, db := range x.dbs {
		_ = db.Close()
	}
	x.dbs = map[string]*sql.DB{}
}
