package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRefdataCommands checks what the refdata commands and images register send, and print.
func TestRefdataCommands(t *testing.T) {
	t.Parallel()
	rd := `{"id":"r1","file":"b/x.tgz","crc64nvme":"AAAAAAAAAAA=","unpack":true,"registered_by":"a","registered_on":"2024-10-24T22:35:40Z",` +
		`"statuses":[{"cluster":"kbase","state":"complete","transition_times":[]}]}`
	var mu sync.Mutex
	var reqs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, strings.TrimSpace(r.Method+" "+r.RequestURI+" "+string(b)))
		mu.Unlock()
		switch {
		case r.Method == http.MethodPut || r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case strings.HasPrefix(r.URL.Path, "/admin/images/"):
			_, _ = io.WriteString(w, `{"name":"x","digest":"sha256:ab","entrypoint":[],"registered_by":"a","registered_on":"2024-10-24T22:35:40Z"}`)
		case r.URL.Path == "/refdata" || strings.HasPrefix(r.URL.Path, "/refdata/path/"):
			_, _ = io.WriteString(w, `{"data":[`+rd+`]}`)
		default:
			_, _ = io.WriteString(w, rd)
		}
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		req    string
		stdout string
	}{
		{"list", []string{"refdata", "list"}, exitOK, "GET /refdata",
			"ID  FILE     UNPACK  SITES           REGISTERED BY  REGISTERED ON\nr1  b/x.tgz  true    kbase:complete  a              2024-10-24T22:35:40Z\n"},
		{"get admin", []string{"refdata", "get", "r1", "--admin"}, exitOK, "GET /admin/refdata/r1", ""},
		{"path json", []string{"refdata", "path", "b/x.tgz", "--json"}, exitOK, "GET /refdata/path/b/x.tgz", ""},
		{"register", []string{"refdata", "register", "b/x.tgz", "--crc64nvme", "AAAAAAAAAAA=", "--unpack"}, exitOK,
			"POST /admin/refdata/b/x.tgz?crc64nvme=AAAAAAAAAAA%3D&unpack=true", ""},
		{"register without crc", []string{"refdata", "register", "b/x.tgz"}, exitUsage, "", ""},
		{"recover", []string{"refdata", "recover", "r1", "kbase"}, exitOK, "PUT /admin/refdata/r1/kbase/recover",
			"reference data r1: staging again at kbase\n"},
		{"clean", []string{"refdata", "clean", "r1", "kbase", "--force"}, exitOK, "DELETE /admin/refdata/r1/kbase/clean?force=true",
			"reference data r1: cleaned at kbase\n"},
		{"clean needs a site", []string{"refdata", "clean", "r1"}, exitUsage, "", ""},
		{"images register with refdata", []string{"images", "register", "x:1", "--refdata-id", "r1", "--refdata-mount-point", "/ref", "--from-image", "x:0"},
			exitOK, `POST /admin/images/x:1?default_refdata_mount_point=%2Fref&refdata_id=r1 {"from_image":"x:0"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			reqs = nil
			mu.Unlock()
			r := runCLI(t, map[string]string{"CTS_URL": srv.URL, "CTS_TOKEN": "T"}, tc.args...)
			r.want(t, tc.code)
			mu.Lock()
			defer mu.Unlock()
			if want := []string{tc.req}; tc.req != "" && (len(reqs) != 1 || reqs[0] != tc.req) || tc.req == "" && len(reqs) != 0 {
				t.Errorf("requests %q, want %q", reqs, want)
			}
			if tc.stdout != "" && r.stdout != tc.stdout {
				t.Errorf("stdout:\n%s\nwant\n%s", r.stdout, tc.stdout)
			}
		})
	}
}
