package sites

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// memStore is an in-memory Store that counts reads.
type memStore struct {
	mu     sync.Mutex
	active map[string]bool
	reads  int
	err    error
}

func (m *memStore) InitSites(_ context.Context, names []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		if _, ok := m.active[n]; !ok {
			m.active[n] = true
		}
	}
	return nil
}

func (m *memStore) SiteStates(context.Context) (map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	if m.err != nil {
		return nil, m.err
	}
	out := map[string]bool{}
	for k, v := range m.active {
		out[k] = v
	}
	return out, nil
}

func (m *memStore) SetSiteActive(_ context.Context, name string, active bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active[name] = active
	return nil
}

type fakeAvailability struct{ down map[string]string }

func (f *fakeAvailability) Available(site string) (bool, string) {
	r, down := f.down[site]
	return !down, r
}

func TestDirectory(t *testing.T) {
	ctx := t.Context()
	st := &memStore{active: map[string]bool{"b": false}}
	avail := &fakeAvailability{down: map[string]string{}}
	d := New([]Site{{Name: "a", CPUsPerNode: 4}, {Name: "b"}, {Name: "c"}}, st, avail, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got := d.Names(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("names %v", got)
	}
	if s, ok := d.Site("a"); !ok || s.CPUsPerNode != 4 {
		t.Fatalf("site a = %+v, %v", s, ok)
	}
	if _, ok := d.Site("z"); ok {
		t.Fatal("an unknown site was found")
	}
	// Init records the new sites active and keeps the recorded flag of b.
	if err := d.Init(ctx); err != nil {
		t.Fatal(err)
	}
	sts, err := d.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, s := range sts {
		got = append(got, s.Active)
	}
	if !reflect.DeepEqual(got, []bool{true, false, true}) {
		t.Fatalf("active flags %v, want a and c active, b not", got)
	}
	var ce *ctserr.Error
	if err := d.CheckUsable(ctx, "b"); !errors.As(err, &ce) || ce.Code != ctserr.CodeJobFlowInactive {
		t.Fatalf("CheckUsable(b) = %v, want 60010", err)
	}
	if err := d.CheckUsable(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// The flags are cached: another store write is not seen before the TTL...
	reads := st.reads
	_ = st.SetSiteActive(ctx, "a", false)
	if err := d.CheckUsable(ctx, "a"); err != nil || st.reads != reads {
		t.Fatalf("CheckUsable(a) = %v after %d reads; want the cached flag without a read", err, st.reads-reads)
	}
	// ...but this coordinator's own change is seen at once.
	if err := d.SetActive(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckUsable(ctx, "b"); err != nil {
		t.Fatalf("CheckUsable(b) after SetActive = %v", err)
	}
	if err := d.CheckUsable(ctx, "a"); !errors.As(err, &ce) {
		t.Fatalf("CheckUsable(a) after a re-read = %v, want inactive", err)
	}
	if err := d.SetActive(ctx, "z", true); !errors.As(err, &ce) || ce.Code != ctserr.CodeIllegalParameter {
		t.Fatalf("SetActive of an unknown site = %v", err)
	}
	// A site whose launcher is down is unavailable, with the reason, while it stays active.
	avail.down["c"] = "the launcher plugin process exited"
	if err := d.CheckUsable(ctx, "c"); !errors.As(err, &ce) || ce.Code != ctserr.CodeJobFlowUnavailable ||
		ce.Message != "Job flow for cluster c is unavailable: the launcher plugin process exited" {
		t.Fatalf("CheckUsable(c) = %v, want 60020 with the reason", err)
	}
	sts, err = d.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := sts[2]; !c.Active || c.Available || c.Reason != "the launcher plugin process exited" || !sts[1].Available {
		t.Fatalf("statuses %+v", sts)
	}
	// A store outage is an error, not "active".
	d2 := New([]Site{{Name: "a"}}, &memStore{err: errors.New("down")}, nil, slog.New(slog.DiscardHandler))
	if err := d2.CheckUsable(ctx, "a"); err == nil || errors.As(err, &ce) {
		t.Fatalf("CheckUsable during an outage = %v, want the store's error", err)
	}
}
