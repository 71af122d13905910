package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/lease"
	"github.com/kbase/cts/coordinator/internal/signals"
	"github.com/kbase/cts/coordinator/internal/store"
)

// TestLeases: a lease has one holder at a time, even with replicas racing for it; it can be
// renewed by its holder, taken once expired, and released; a later incarnation of its
// holder's name takes it at once, an earlier one never.
func TestLeases(t *testing.T) {
	s := newReplicaStore(t)
	ctx := t.Context()
	now := time.Now()
	// Eight replicas race for a free lease: exactly one gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.AcquireLease(ctx, "submitter", lease.Holder{Name: "r" + string(rune('0'+i)), Incarnation: 1}, now, now.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if got {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d replicas hold the lease", winners)
	}
	holder, until, err := s.LeaseHolder(ctx, "submitter")
	if err != nil || holder.Name == "" || holder.Incarnation != 1 || until.Before(now) {
		t.Fatalf("holder %v until %s: %v", holder, until, err)
	}
	other := lease.Holder{Name: "r9", Incarnation: 1}
	if got, err := s.AcquireLease(ctx, "submitter", other, now.Add(30*time.Second), now.Add(90*time.Second)); err != nil || got {
		t.Fatalf("another replica took an unexpired lease: %v %v", got, err)
	}
	if got, err := s.AcquireLease(ctx, "submitter", holder, now.Add(30*time.Second), now.Add(90*time.Second)); err != nil || !got {
		t.Fatalf("the holder could not renew: %v %v", got, err)
	}
	if got, err := s.AcquireLease(ctx, "submitter", other, now.Add(91*time.Second), now.Add(150*time.Second)); err != nil || !got {
		t.Fatalf("the expired lease was not taken: %v %v", got, err)
	}
	if err := s.ReleaseLease(ctx, "submitter", holder); err != nil { // no longer its: nothing happens
		t.Fatal(err)
	}
	if h, _, _ := s.LeaseHolder(ctx, "submitter"); h != other {
		t.Fatalf("holder %v after a stale release, want %v", h, other)
	}
	// other's process restarts: its later incarnation takes the unexpired lease at once; the
	// earlier one (were it alive) neither renews nor releases it any more.
	restarted := lease.Holder{Name: other.Name, Incarnation: other.Incarnation + 1}
	if got, err := s.AcquireLease(ctx, "submitter", restarted, now.Add(92*time.Second), now.Add(150*time.Second)); err != nil || !got {
		t.Fatalf("the later incarnation of the holder's name did not take its lease: %v %v", got, err)
	}
	if got, err := s.AcquireLease(ctx, "submitter", other, now.Add(93*time.Second), now.Add(150*time.Second)); err != nil || got {
		t.Fatalf("an earlier incarnation took the lease back: %v %v", got, err)
	}
	if err := s.ReleaseLease(ctx, "submitter", other); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := s.LeaseHolder(ctx, "submitter"); h != restarted {
		t.Fatalf("holder %v after the earlier incarnation's release, want %v", h, restarted)
	}
	if err := s.ReleaseLease(ctx, "submitter", restarted); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AcquireLease(ctx, "submitter", holder, now.Add(94*time.Second), now.Add(150*time.Second)); err != nil || !got {
		t.Fatalf("a released lease was not free: %v %v", got, err)
	}
}

// newReplicaStore is a store on a fresh database with the replica collections' indexes.
func newReplicaStore(t *testing.T) *store.Store {
	t.Helper()
	s, _ := newStore(t)
	if err := s.InitReplicas(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSignals: a signal is recorded once, found by time, and pruned.
func TestSignals(t *testing.T) {
	s := newReplicaStore(t)
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	for _, sig := range []signals.Signal{
		{ID: "stop/a", JobID: "a", Reason: "canceled", At: t0.Add(-time.Hour)},
		{ID: "stop/b", JobID: "b", Reason: "canceled", At: t0},
		{ID: "stop/b", JobID: "b", Reason: "again", At: t0.Add(time.Second)}, // a second publish
	} {
		if err := s.PublishSignal(ctx, sig); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.SignalsSince(ctx, t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].JobID != "b" || got[0].Reason != "canceled" || !got[0].At.Equal(t0) {
		t.Fatalf("signals since a minute ago: %+v", got)
	}
	if err := s.PruneSignals(ctx, t0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	all, err := s.SignalsSince(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != "stop/b" {
		t.Fatalf("after pruning: %+v", all)
	}
	// A poke moves forward with each renewal.
	for i, by := range []string{"r1", "r2"} {
		if err := s.RenewSignal(ctx, signals.Signal{ID: "poke/submitter", At: t0.Add(time.Duration(i) * time.Second), By: by}); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.SignalsSince(ctx, t0.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "poke/submitter" || got[0].By != "r2" || !got[0].At.Equal(t0.Add(time.Second)) {
		t.Fatalf("the renewed poke: %+v", got)
	}
}

// TestSignalsVersion: the signals' version moves after every signal recorded (a stop, a
// poke), not after a stop published again; neither queries by time nor pruning see it.
func TestSignalsVersion(t *testing.T) {
	s := newReplicaStore(t)
	ctx := t.Context()
	version := func() int64 {
		t.Helper()
		v, err := s.SignalsVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := version(); v != 0 {
		t.Fatalf("version %d before any signal, want 0", v)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	steps := []struct {
		sig  signals.Signal
		poke bool
		want int64
	}{
		{signals.Signal{ID: "stop/a", JobID: "a", Reason: "canceled", At: t0}, false, 1},
		{signals.Signal{ID: "stop/a", JobID: "a", Reason: "again", At: t0}, false, 1},
		{signals.Signal{ID: "poke/submitter", At: t0, By: "r1"}, true, 2},
		{signals.Signal{ID: "poke/submitter", At: t0.Add(time.Second), By: "r1"}, true, 3},
	}
	for _, st := range steps {
		var err error
		if st.poke {
			err = s.RenewSignal(ctx, st.sig)
		} else {
			err = s.PublishSignal(ctx, st.sig)
		}
		if err != nil {
			t.Fatal(err)
		}
		if v := version(); v != st.want {
			t.Fatalf("after %s: version %d, want %d", st.sig.ID, v, st.want)
		}
	}
	all, err := s.SignalsSince(ctx, time.Time{})
	if err != nil || len(all) != 2 {
		t.Fatalf("signals %+v, %v; want stop/a and poke/submitter", all, err)
	}
	if err := s.PruneSignals(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if all, err := s.SignalsSince(ctx, time.Time{}); err != nil || len(all) != 0 {
		t.Fatalf("signals after pruning all: %+v, %v", all, err)
	}
	if v := version(); v != 3 {
		t.Fatalf("version %d after pruning, want 3 (kept)", v)
	}
}

// TestLiveData: interests are recorded and expire; live documents are replaced, read by job,
// and pruned.
func TestLiveData(t *testing.T) {
	s := newReplicaStore(t)
	ctx := t.Context()
	now := time.Now()
	if cur, err := s.SetInterest(ctx, "job1", now.Add(time.Minute)); err != nil || cur {
		t.Fatalf("first interest: current %v, %v", cur, err)
	}
	if cur, err := s.SetInterest(ctx, "job1", now.Add(2*time.Minute)); err != nil || !cur {
		t.Fatalf("renewed interest: current %v, %v", cur, err)
	}
	if _, err := s.SetInterest(ctx, "job2/3", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Interests(ctx, now)
	if err != nil || len(keys) != 1 || keys[0] != "job1" {
		t.Fatalf("interests %v, %v; want [job1]", keys, err)
	}
	at := now.UTC().Truncate(time.Millisecond)
	for i, text := range []string{"first", "second"} {
		doc := agentws.LiveDoc{ID: "job1@r1", JobID: "job1", Replica: "r1", At: at,
			Progress: []agentws.LiveProgress{{Container: 0, Phase: "download", BytesDone: int64(i), BytesTotal: 2, Updated: at}},
			Logs:     []agentws.LiveLog{{Container: 1, Lines: []agentws.LiveLine{{Seq: int64(i + 1), Stream: "stdout", Text: text, Time: at}}}}}
		if err := s.PutLive(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutLive(ctx, agentws.LiveDoc{ID: "job1@r2", JobID: "job1", Replica: "r2", At: at.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	docs, err := s.LiveDocs(ctx, "job1")
	if err != nil || len(docs) != 2 {
		t.Fatalf("live docs %+v, %v", docs, err)
	}
	for _, d := range docs {
		if d.Replica == "r1" && (len(d.Logs) != 1 || d.Logs[0].Lines[0].Text != "second" || d.Progress[0].BytesDone != 1) {
			t.Fatalf("r1's document was not replaced: %+v", d)
		}
	}
	if err := s.PruneLive(ctx, at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if docs, _ := s.LiveDocs(ctx, "job1"); len(docs) != 1 || docs[0].Replica != "r1" {
		t.Fatalf("after pruning: %+v", docs)
	}
}
