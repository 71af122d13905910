package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/refdata"
)

func newRefdata(id, file string, now time.Time, sites ...string) *refdata.Refdata {
	rd := &refdata.Refdata{ID: id, File: file, CRC64NVME: "AAAAAAAAAAA=", Unpack: true, RegisteredBy: "admin",
		RegisteredOn: now}
	for _, s := range sites {
		rd.Statuses = append(rd.Statuses, refdata.Status{Cluster: s, State: refdata.Created,
			Transitions: []refdata.Transition{{State: refdata.Created, Time: now}}, UpdateTime: now})
	}
	return rd
}

func TestRefdataRoundTrip(t *testing.T) {
	s, db := newStore(t)
	ctx := t.Context()
	if err := s.InitRefdata(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.InitRefdata(ctx); err != nil {
		t.Fatalf("second InitRefdata: %v", err)
	}
	now := time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.UTC)
	b := newRefdata("id-b", "bucket/b.tar.gz", now, "kbase", "other")
	a := newRefdata("id-a", "bucket/a.gz", now, "kbase")

	t.Run("save", func(t *testing.T) {
		for _, rd := range []*refdata.Refdata{b, a} {
			if err := s.SaveRefdata(ctx, rd); err != nil {
				t.Fatal(err)
			}
		}
		dup := newRefdata("id-c", "bucket/b.tar.gz", now)
		isErr(t, s.SaveRefdata(ctx, dup), refdata.ErrExists)
		_, err := s.GetRefdata(ctx, "id-c")
		isErr(t, err, refdata.ErrNotFound)
	})
	t.Run("get", func(t *testing.T) {
		got, err := s.GetRefdata(ctx, "id-b")
		if err != nil {
			t.Fatal(err)
		}
		want := now.Truncate(time.Millisecond)
		if got.File != b.File || got.CRC64NVME != b.CRC64NVME || !got.Unpack || got.RegisteredBy != "admin" ||
			!got.RegisteredOn.Equal(want) || len(got.Statuses) != 2 || got.Rev != 0 {
			t.Fatalf("got %+v", got)
		}
		st := got.Status("other")
		if st == nil || st.State != refdata.Created || !st.Transitions[0].Time.Equal(want) || st.NERSCDownloadTaskID == nil {
			t.Fatalf("status %+v", st)
		}
		_, err = s.GetRefdata(ctx, "nope")
		isErr(t, err, refdata.ErrNotFound)
	})
	t.Run("list", func(t *testing.T) {
		all, err := s.ListRefdata(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].ID != "id-a" || all[1].ID != "id-b" {
			t.Fatalf("list not sorted by file: %+v", all)
		}
		one, err := s.ListRefdata(ctx, "bucket/b.tar.gz", 0)
		if err != nil || len(one) != 1 || one[0].ID != "id-b" {
			t.Fatalf("by path: %+v, %v", one, err)
		}
		lim, err := s.ListRefdata(ctx, "", 1)
		if err != nil || len(lim) != 1 {
			t.Fatalf("limit: %+v, %v", lim, err)
		}
	})
	t.Run("update", func(t *testing.T) {
		got, err := s.GetRefdata(ctx, "id-b")
		if err != nil {
			t.Fatal(err)
		}
		st := got.Status("kbase")
		st.State = refdata.DownloadSubmitted
		st.Transitions = append(st.Transitions, refdata.Transition{State: refdata.DownloadSubmitted, Time: now.Add(time.Second)})
		st.Handle = "h1"
		if err := s.UpdateRefdataStatuses(ctx, "id-b", got.Rev, got.Statuses); err != nil {
			t.Fatal(err)
		}
		// The same revision again: someone else wrote first.
		isErr(t, s.UpdateRefdataStatuses(ctx, "id-b", got.Rev, got.Statuses), refdata.ErrConflict)
		isErr(t, s.UpdateRefdataStatuses(ctx, "nope", 0, nil), refdata.ErrNotFound)
		again, err := s.GetRefdata(ctx, "id-b")
		if err != nil {
			t.Fatal(err)
		}
		if again.Rev != 1 || again.Status("kbase").State != refdata.DownloadSubmitted ||
			again.Status("kbase").Handle != "h1" || len(again.Status("kbase").Transitions) != 2 {
			t.Fatalf("after update: %+v", again)
		}
	})
	t.Run("with state", func(t *testing.T) {
		got, err := s.RefdataWithState(ctx, refdata.Created, 0)
		if err != nil {
			t.Fatal(err)
		}
		// id-a (kbase created) and id-b (other still created).
		if len(got) != 2 {
			t.Fatalf("created: %+v", got)
		}
		got, err = s.RefdataWithState(ctx, refdata.DownloadSubmitted, 0)
		if err != nil || len(got) != 1 || got[0].ID != "id-b" {
			t.Fatalf("download_submitted: %+v, %v", got, err)
		}
		got, err = s.RefdataWithState(ctx, refdata.Complete, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("complete: %+v, %v", got, err)
		}
	})
	t.Run("indexes", func(t *testing.T) {
		cur, err := db.Collection("refdata").Indexes().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var specs []struct {
			Name   string `bson:"name"`
			Unique bool   `bson:"unique"`
		}
		if err := cur.All(ctx, &specs); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, sp := range specs {
			got[sp.Name] = sp.Unique
		}
		for name, unique := range map[string]bool{"id_1": true, "file_1": false,
			"statuses.cleaned_1_statuses.state_1_statuses._update_time_1": false} {
			if u, ok := got[name]; !ok || u != unique {
				t.Errorf("index %s: present %t unique %t; have %v", name, ok, u, got)
			}
		}
	})
}

// TestRefdataUpdateRace: of writers racing on one revision exactly one wins.
func TestRefdataUpdateRace(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.InitRefdata(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.SaveRefdata(ctx, newRefdata("race", "bucket/race", now, "kbase")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 6 {
		wg.Go(func() {
			st := []refdata.Status{{Cluster: "kbase", State: refdata.Error, AdminError: string(rune('a' + i))}}
			if err := s.UpdateRefdataStatuses(ctx, "race", 0, st); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d writers won the same revision", wins)
	}
}
