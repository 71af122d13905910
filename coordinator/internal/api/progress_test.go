package api_test

import (
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/internal/api"
	"github.com/kbase/cts/shared/protocol"
)

// TestJobProgress reports a container's progress through a real agent websocket session and
// reads it back through GET /jobs/{id}/progress as the owner and as an admin.
func TestJobProgress(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, alice)
	path := "/jobs/" + id + "/progress"
	if v := f.getJSON(t, "GET", path, alice, "", 200); len(v["containers"].([]any)) != 0 {
		t.Fatalf("progress before any report = %v, want an empty list", v)
	}
	c := f.agent(t, id, 0)
	wsSend(t, c, protocol.Progress{Phase: protocol.PhaseDownload, BytesDone: 12, BytesTotal: 40, FilesDone: 3, FilesTotal: 4})
	deadline := time.Now().Add(5 * time.Second)
	for len(f.live.Progress(t.Context(), id)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent endpoint holds no progress")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, who := range []struct{ name, authz string }{{"owner", alice}, {"admin", root}} {
		t.Run(who.name, func(t *testing.T) {
			v := f.getJSON(t, "GET", path, who.authz, "", 200)
			cs := v["containers"].([]any)
			if len(cs) != 1 {
				t.Fatalf("progress = %v, want one container", v)
			}
			got := cs[0].(map[string]any)
			want := map[string]any{"container": 0.0, "phase": "download", "bytes_done": 12.0, "bytes_total": 40.0,
				"files_done": 3.0, "files_total": 4.0}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s = %v, want %v", k, got[k], w)
				}
			}
			u, err := time.Parse(time.RFC3339Nano, got["updated"].(string))
			if err != nil || time.Since(u) > time.Minute || u.Location() != time.UTC {
				t.Errorf("updated = %v (%v), want a recent UTC time", got["updated"], err)
			}
		})
	}
}

func TestJobProgressRefusals(t *testing.T) {
	f := newFixture(t)
	id := f.submit(t, alice)
	path := "/jobs/" + id + "/progress"
	f.wantError(t, "GET", path, "", "", 401, 10010, "Authorization header required")
	f.wantError(t, "GET", path, bob, "", 403, 20000, "User bob may not access job "+id)
	f.wantError(t, "GET", "/jobs/nope/progress", alice, "", 404, 40040, "No job with ID 'nope' exists")
	t.Run("without a progress source", func(t *testing.T) {
		g := newFixtureWith(t, func(c *api.Config) { c.Progress = nil })
		id := g.submit(t, alice)
		if v := g.getJSON(t, "GET", "/jobs/"+id+"/progress", alice, "", 200); len(v["containers"].([]any)) != 0 {
			t.Fatalf("progress = %v, want an empty list", v)
		}
	})
}
