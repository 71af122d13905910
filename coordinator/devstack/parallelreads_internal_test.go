package devstack

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestMongoParallelReads pins the measurement mode: with parallel reads on, a find is answered
// while the proxy's lock is held (a serialised command in flight), a write still waits for the
// lock; with it off, the find waits too. Stats count both kinds.
func TestMongoParallelReads(t *testing.T) {
	m := TestMongo(t)
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	coll := c.Database("cts").Collection("reads")
	ctx := t.Context()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	// The proxy counts a command as ended after it has written the reply, so the insert above
	// may return to us before it is counted: wait for the counters to settle first.
	before := settledStats(t, m)

	m.SetParallelReads(true)
	m.mu.Lock()
	locked := true
	defer func() {
		if locked {
			m.mu.Unlock()
		}
	}()
	var got struct {
		N int `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil || got.N != 1 {
		t.Fatalf("find with the lock held and parallel reads on: n=%d, err=%v", got.N, err)
	}
	inserted := make(chan error, 1)
	go func() {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "b"}})
		inserted <- err
	}()
	// A second read while the write waits: reads do not queue behind it.
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil || n != 1 {
		t.Fatalf("count with the lock held: n=%d, err=%v", n, err)
	}
	// A new connection's handshake (the driver's legacy OP_QUERY isMaster) is not held either:
	// a client connected now reads at once.
	c2, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(20 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Disconnect(context.Background()) })
	if n, err := c2.Database("cts").Collection("reads").CountDocuments(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil || n != 1 {
		t.Fatalf("count over a new connection with the lock held: n=%d, err=%v", n, err)
	}
	select {
	case err := <-inserted:
		t.Fatalf("an insert finished while the proxy's lock was held (err=%v): writes must stay serialised", err)
	default:
	}
	// The waiting insert counts as begun and not as ended: what a stall's snapshot shows.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d := m.Stats().Sub(before)
		if d.Begun["insert"] == 1 && d.Commands["insert"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats with an insert waiting for the lock: begun %v, ended %v", d.Begun, d.Commands)
		}
	}
	m.mu.Unlock()
	locked = false
	if err := <-inserted; err != nil {
		t.Fatalf("insert after the lock was released: %v", err)
	}

	m.SetParallelReads(false)
	m.mu.Lock()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = coll.FindOne(short, bson.D{{Key: "_id", Value: "a"}}).Err()
	cancel()
	m.mu.Unlock()
	if err == nil {
		t.Fatal("a find was answered while the lock was held with parallel reads off")
	}

	d := settledStats(t, m).Sub(before)
	if d.Commands["find"] < 1 || d.Commands["insert"] < 1 || d.Parallel < 2 || d.Serialised < 1 {
		t.Fatalf("stats over the test: %+v; want at least 1 find, 1 insert, 2 parallel (find, aggregate) and 1 serialised", d)
	}
}

// settledStats returns the proxy's counters once every command begun has also ended (the
// proxy counts an end after writing the reply, a moment after the client has it).
func settledStats(t *testing.T, m *Mongo) MongoStats {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := m.Stats()
		settled := len(st.Begun) == len(st.Commands)
		for k, v := range st.Begun {
			settled = settled && st.Commands[k] == v
		}
		if settled {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy's counters did not settle in 30 s: begun %v, ended %v", st.Begun, st.Commands)
		}
	}
}

func TestCommandName(t *testing.T) {
	for _, tc := range []struct {
		msg  []byte
		want string
	}{
		{nil, ""},
		{make([]byte, 40), ""},
	} {
		if got := commandName(tc.msg); got != tc.want {
			t.Errorf("commandName(%x) = %q, want %q", tc.msg, got, tc.want)
		}
	}
	m := wireMsg{body: mustRaw(t, bson.D{{Key: "find", Value: "jobs"}, {Key: "$db", Value: "cts"}})}
	if got := commandName(m.encode(1, 0)); got != "find" {
		t.Errorf("commandName(find) = %q", got)
	}
	if readOnly("update", m.encode(1, 0)) || !readOnly("find", m.encode(1, 0)) {
		t.Error("readOnly: find must be a read, update not")
	}
	// OP_QUERY: header, flags, "admin.$cmd", skip, return, {isMaster: 1}
	q := binary.LittleEndian.AppendUint32(make([]byte, 12), opQuery)
	q = append(q, 0, 0, 0, 0)
	q = append(q, "admin.$cmd\x00"...)
	q = append(q, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)
	q = append(q, mustRaw(t, bson.D{{Key: "isMaster", Value: 1}})...)
	binary.LittleEndian.PutUint32(q, uint32(len(q)))
	if got := commandName(q); got != "isMaster" || !readOnly(got, q) {
		t.Errorf("commandName(OP_QUERY isMaster) = %q", got)
	}
	if got := commandName(q[:30]); got != "" {
		t.Errorf("commandName(a cut OP_QUERY) = %q", got)
	}
	agg := wireMsg{body: mustRaw(t, bson.D{{Key: "aggregate", Value: "jobs"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$out", Value: "x"}}}}})}
	if readOnly("aggregate", agg.encode(1, 0)) {
		t.Error("readOnly: an aggregate with $out writes")
	}
}

func mustRaw(t *testing.T, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
