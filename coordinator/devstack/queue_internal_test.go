package devstack

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"slices"
	"sync"
	"testing"
	"time"
)

// queueOrder holds l, queues the given commands (true: a read) one after the other, each
// once the previous one waits, releases l and returns the order in which they got it. Each
// checks that no write holds l beside another command; reads hold it for a moment, so that
// the reads let in together overlap.
func queueOrder(t *testing.T, l *queueLock, cmds []bool) []int {
	t.Helper()
	l.Lock()
	var (
		mu            sync.Mutex
		order         []int
		reads, writes int
		wg            sync.WaitGroup
	)
	for i, read := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := l.Unlock
			if read {
				unlock = l.LockRead()
			} else {
				l.Lock()
			}
			mu.Lock()
			order = append(order, i)
			if writes > 0 || !read && reads > 0 {
				t.Errorf("command %d (read %v) holds the lock beside %d writes and %d reads", i, read, writes, reads)
			}
			if read {
				reads++
			} else {
				writes++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			if read {
				reads--
			} else {
				writes--
			}
			mu.Unlock()
			unlock()
		}()
		waitQueued(t, l, i+1)
	}
	l.Unlock()
	wg.Wait()
	return order
}

// TestQueueLockOrder pins the proxy lock's order: first come, first served and one at a time
// with read-first off; with it on, waiting reads go ahead of waiting writes, together, at most
// maxOvertakes of them while a write waits, and never beside a write.
func TestQueueLockOrder(t *testing.T) {
	const w, r = false, true
	var fifo queueLock
	if got := queueOrder(t, &fifo, []bool{w, r, w, r}); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("first come, first served: order %v, want 0 1 2 3", got)
	}
	var rf queueLock
	rf.setReadFirst(true)
	got := queueOrder(t, &rf, []bool{w, w, r, w, r})
	if first := slices.Sorted(slices.Values(got[:2])); !slices.Equal(first, []int{2, 4}) || !slices.Equal(got[2:], []int{0, 1, 3}) {
		t.Fatalf("read first: order %v, want the reads (2, 4) first, then the writes in order", got)
	}
	// A stream of reads delays a waiting write by at most maxOvertakes of them.
	cmds := []bool{w}
	for range maxOvertakes + 3 {
		cmds = append(cmds, r)
	}
	got = queueOrder(t, &rf, cmds)
	if i := slices.Index(got, 0); i != maxOvertakes {
		t.Fatalf("read first, one write before %d reads: the write went %d-th (order %v), want after %d reads", maxOvertakes+3, i+1, got, maxOvertakes)
	}
	// A read that comes while reads hold the lock and no write waits joins them.
	u1 := rf.LockRead()
	joined := make(chan struct{})
	go func() {
		u2 := rf.LockRead()
		close(joined)
		u2()
	}()
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("a read waited for another read with no write waiting")
	}
	u1()
}

// TestMongoReadFirst: through the proxy, a find that waits for the lock goes ahead of an
// insert that waited before it (read-first, the default), and the proxy's stats say what the
// find waited behind: nothing of the insert. With read-first off it waits behind the insert.
func TestMongoReadFirst(t *testing.T) {
	m := TestMongo(t)
	// No heartbeats during the test: a monitor's hello could queue in place of a command.
	c, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(20 * time.Second).SetHeartbeatInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	coll := c.Database("cts").Collection("order")
	ctx := t.Context()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
		t.Fatal(err)
	}
	// The find goes over a client of its own, connected already: a new connection's handshake
	// would queue instead of the find.
	rc, err := mongo.Connect(options.Client().ApplyURI(m.URI()).SetTimeout(20 * time.Second).SetHeartbeatInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Disconnect(context.Background()) })
	reads := rc.Database("cts").Collection("order")
	if err := reads.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, readFirst := range []bool{true, false} {
		m.SetReadFirst(readFirst)
		before := settledStats(t, m)
		m.mu.Lock()
		inserted := make(chan error, 1)
		go func() {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint(readFirst)}})
			inserted <- err
		}()
		waitQueued(t, &m.mu, 1)
		found := make(chan error, 1)
		go func() { found <- reads.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Err() }()
		waitQueued(t, &m.mu, 2)
		m.mu.Unlock()
		if err := <-inserted; err != nil {
			t.Fatal(err)
		}
		if err := <-found; err != nil {
			t.Fatal(err)
		}
		d := settledStats(t, m).Sub(before)
		behind := d.ReadWaitBehindN["insert order"]
		if readFirst && behind != 0 || !readFirst && behind != 1 {
			t.Fatalf("read-first %v: the find waited behind the insert %d times (%v), want %d", readFirst, behind, d.ReadWaitBehind, map[bool]int{true: 0, false: 1}[readFirst])
		}
		if d.ByCollection["insert order"] != 1 || d.ByCollection["find order"] != 1 {
			t.Fatalf("commands by collection: %v, want one insert and one find on order", d.ByCollection)
		}
	}
}

// waitQueued waits until n commands wait for l.
func waitQueued(t *testing.T, l *queueLock, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		got := len(l.waiting)
		l.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d commands wait for the proxy's lock, want %d", got, n)
		}
	}
}
