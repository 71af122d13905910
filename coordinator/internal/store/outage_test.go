package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/test/tcpproxy"
)

// TestOutage performs the attack of a MongoDB that hangs, then refuses connections, behind a
// proxy: each operation fails within the store's timeout, and Unavailable names MongoDB.
func TestOutage(t *testing.T) {
	m := devstack.TestMongo(t)
	u, err := url.Parse(m.URI())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	u.Host = proxy.Addr()
	s, err := store.New(t.Context(), store.Config{URI: u.String(), Database: testDB, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := s.GetJob(t.Context(), "nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("through the proxy: %v", err)
	}
	for mode, reason := range map[tcpproxy.Mode]string{tcpproxy.Hang: "did not answer in time", tcpproxy.Refuse: "refused the connection"} {
		if err := proxy.Set(mode); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := s.ListJobs(t.Context(), jobs.ListFilter{User: "alice"})
		var ue *ctserr.UnavailableError
		if !errors.As(store.Unavailable(err), &ue) || ue.Dependency != ctserr.DependencyMongoDB {
			t.Fatalf("%s: ListJobs = %v, want MongoDB unavailable", mode, err)
		}
		if mode == tcpproxy.Hang && ue.Reason != reason {
			t.Errorf("%s: reason %q, want %q (%v)", mode, ue.Reason, reason, err)
		}
		if mode == tcpproxy.Refuse && ue.Reason != reason && ue.Reason != "closed the connection" {
			t.Errorf("%s: reason %q, want %q (%v)", mode, ue.Reason, reason, err)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("%s: ListJobs took %s with a 1 s timeout", mode, d)
		}
		if err := proxy.Set(tcpproxy.Pass); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := s.GetJob(t.Context(), "nope"); errors.Is(err, jobs.ErrNotFound) {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("after %s: %v", mode, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Not outages: a missing document, a caller that gave up.
	if store.Unavailable(jobs.ErrNotFound) != nil || store.Unavailable(context.Canceled) != nil || store.Unavailable(nil) != nil {
		t.Error("Unavailable took a non-outage for one")
	}
}
