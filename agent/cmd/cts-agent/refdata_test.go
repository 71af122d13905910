package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fakeCoordinator records refdata reports; the first `fail` answers are 503.
type fakeCoordinator struct {
	mu      sync.Mutex
	fail    int
	status  int
	reports []string
	bodies  []map[string]any
	auth    []string
}

func (f *fakeCoordinator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var b map[string]any
	_ = json.NewDecoder(r.Body).Decode(&b)
	f.reports = append(f.reports, r.Method+" "+r.URL.Path)
	f.bodies = append(f.bodies, b)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestRunRefdataReports(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("tok123"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name     string
		fail     int
		status   int
		wantCode int
		// heartbeat: the start's download_submitted reached the coordinator (the 503s of the
		// first case go to it and to the final report, which retries).
		heartbeat bool
	}{
		{"reported after 503s", 2, 0, 0, false},
		{"refused", 0, http.StatusBadRequest, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := &fakeCoordinator{fail: c.fail, status: c.status}
			srv := httptest.NewServer(fc)
			defer srv.Close()
			// The S3 endpoint is unreachable: staging fails, and the failure is reported.
			env := map[string]string{"REFDATA_ID": "r1", "REFDATA_S3_PATH": "b/k.tar.gz", "REFDATA_CRC64NVME": "AAAAAAAAAAA=",
				"REFDATA_UNPACK": "true", "REFDATA_CLUSTER": "kbase", "REFDATA_HOST_PATH": dir, "REFDATA_ATTEMPT": "3",
				"SERVICE_ROOT_URL": srv.URL + "/", "TOKEN_PATH": tok, "S3_URL": "http://127.0.0.1:1", "S3_ACCESS_KEY": "ak",
				"S3_SECRET_PATH": tok}
			code, err := runRefdata(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, log)
			if code != c.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, c.wantCode)
			}
			// Heartbeats (download_submitted) first, then the final state, each with the attempt.
			n := len(fc.reports)
			if n == 0 || fc.reports[n-1] != "PUT /external_exec/refdata/r1/kbase/update/error" || fc.bodies[n-1]["admin_error"] == "" {
				t.Fatalf("reports %v bodies %v", fc.reports, fc.bodies)
			}
			for i := range n {
				if i < n-1 && fc.reports[i] != "PUT /external_exec/refdata/r1/kbase/update/download_submitted" {
					t.Errorf("report %d: %s, want a heartbeat before the final state", i, fc.reports[i])
				}
				if fc.auth[i] != "Bearer tok123" || fc.bodies[i]["attempt"] != float64(3) {
					t.Errorf("report %d: auth %q body %v", i, fc.auth[i], fc.bodies[i])
				}
			}
			if c.heartbeat && n < 2 {
				t.Errorf("no heartbeat reached the coordinator: %v", fc.reports)
			}
		})
	}
	t.Run("bad configuration", func(t *testing.T) {
		code, err := runRefdata(context.Background(), func(string) (string, bool) { return "", false }, log)
		if code != 2 || err == nil {
			t.Fatalf("exit %d, %v", code, err)
		}
	})
}
