package container

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRemoveImageRace: when another removal took the image between the engine's lookup of our
// reference and its delete, Docker 20.10 answers our DELETE with "500 unrecognized image ID"
// (seen in `make test` with two test fixtures removing the same image pulled from two
// registries). The image is gone, so the removal is done; a 500 for an image the engine still
// has stays an error, and so does a conflict (a container uses it).
func TestRemoveImageRace(t *testing.T) {
	const image = "reg.example:5000/tool@sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	for _, tc := range []struct {
		name       string
		deleteCode int
		deleteMsg  string
		stillThere bool
		wantErr    string
	}{
		{"removed", 200, "", false, ""},
		{"gone already", 404, "No such image", false, ""},
		{"taken by a concurrent removal", 500, "unrecognized image ID sha256:972ad80b8841", false, ""},
		{"engine failed, image still there", 500, "driver failed", true, "driver failed"},
		{"in use", 409, "image is being used by stopped container", true, "being used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var calls []string
			sock := socketPath(t)
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p := strings.TrimPrefix(r.URL.Path, "/"+dockerAPIVersion)
				mu.Lock()
				calls = append(calls, r.Method+" "+p)
				mu.Unlock()
				switch {
				case r.Method == "DELETE" && p == "/images/"+image:
					if tc.deleteCode >= 300 {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(tc.deleteCode)
						_, _ = w.Write([]byte(`{"message":"` + tc.deleteMsg + `"}`))
						return
					}
					_, _ = w.Write([]byte(`[{"Untagged":"` + image + `"}]`))
				case r.Method == "GET" && p == "/images/"+image+"/json":
					if !tc.stillThere {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(404)
						_, _ = w.Write([]byte(`{"message":"No such image"}`))
						return
					}
					_, _ = w.Write([]byte(`{"Id":"sha256:972ad80b8841","Size":1}`))
				default:
					t.Errorf("unexpected call %s %s", r.Method, p)
					w.WriteHeader(404)
				}
			}))
			srv.Listener = ln
			srv.Start()
			t.Cleanup(srv.Close)
			d := NewDocker(DockerConfig{Socket: sock})
			err = d.removeImage(context.Background(), image, false)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("removeImage: %v (calls %q)", err, calls)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("removeImage: %v, want an error saying %q (calls %q)", err, tc.wantErr, calls)
			}
		})
	}
}
