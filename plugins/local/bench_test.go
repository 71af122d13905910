package local_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/launcher/launchertest"
)

// BenchmarkSubmit measures one single-container Submit through the plugin binary (supervisor
// process started; the agent starts asynchronously).
func BenchmarkSubmit(b *testing.B) {
	e := newLocalB(b)
	b.ResetTimer()
	for i := range b.N {
		req := e.h.Request(fmt.Sprintf("bsub-%d-%d", time.Now().UnixNano(), i), 0, launchertest.Behaviour{})
		if _, err := e.c.Submit(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatus100 measures one batched Status of 100 finished two-container jobs.
func BenchmarkStatus100(b *testing.B) {
	e := newLocalB(b)
	refs := make([]launcher.JobRef, 100)
	for i := range refs {
		req := e.h.Request(fmt.Sprintf("bst-%d-%d", time.Now().UnixNano(), i), 0, launchertest.Behaviour{}, launchertest.Behaviour{})
		resp, err := e.c.Submit(b.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		refs[i] = launcher.JobRef{JobID: req.JobID, Handle: resp.Handle}
	}
	deadline := time.Now().Add(30 * time.Second)
	for done := false; !done; {
		sts, err := e.c.Status(b.Context(), refs)
		if err != nil {
			b.Fatal(err)
		}
		done = true
		for _, st := range sts {
			for _, c := range st.Containers {
				done = done && c.State == launcher.StateExited
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("jobs did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := e.c.Status(b.Context(), refs); err != nil {
			b.Fatal(err)
		}
	}
}
