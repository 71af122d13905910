package client

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestRefdataRequests checks the paths, queries and bodies of the reference data calls and of
// an image registration with reference data.
func TestRefdataRequests(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	rd := `{"id":"r1","file":"b/k/x.tgz","crc64nvme":"AAAAAAAAAAA=","unpack":true,"registered_by":"a","registered_on":"2024-10-24T22:35:40Z",` +
		`"statuses":[{"cluster":"kbase","state":"complete","transition_times":[{"state":"created","time":"2024-10-24T22:35:40Z"}]}]}`
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, strings.TrimSpace(r.Method+" "+r.RequestURI+" "+string(b)))
		mu.Unlock()
		switch {
		case r.Method == http.MethodPut || r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case strings.Contains(r.URL.Path, "/images/"):
			_, _ = io.WriteString(w, `{"name":"x","digest":"sha256:ab","entrypoint":["/x"],"refdata_id":"r1","registered_by":"a","registered_on":"2024-10-24T22:35:40Z"}`)
		case r.URL.Path == "/services/cts/refdata" || strings.HasPrefix(r.URL.Path, "/services/cts/refdata/path/"):
			_, _ = io.WriteString(w, `{"data":[`+rd+`]}`)
		default:
			_, _ = io.WriteString(w, rd)
		}
	})
	c := newTestClient(t, h, "T")
	ctx := context.Background()
	list, err := c.Refdata(ctx)
	if err != nil || len(list) != 1 || list[0].Statuses[0].State != "complete" || !list[0].Unpack {
		t.Fatalf("Refdata = %+v, %v", list, err)
	}
	for _, admin := range []bool{false, true} {
		if r, err := c.RefdataByID(ctx, "r1", admin); err != nil || r.ID != "r1" {
			t.Fatalf("RefdataByID = %+v, %v", r, err)
		}
	}
	if _, err := c.RefdataByPath(ctx, "b/k/x y.tgz"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterRefdata(ctx, "b/k/x.tgz", "AAAAAAAAAAA=", true); err != nil {
		t.Fatal(err)
	}
	if err := c.RecoverRefdata(ctx, "r1", "kbase"); err != nil {
		t.Fatal(err)
	}
	if err := c.CleanRefdata(ctx, "r1", "kbase", true); err != nil {
		t.Fatal(err)
	}
	if err := c.CleanRefdata(ctx, "r1", "kbase", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterImage(ctx, "ghcr.io/k/x:1", ImageRegistration{FromImage: "ghcr.io/k/x:0", RefdataID: "r1", DefaultRefdataMountPoint: "/ref"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET /services/cts/refdata",
		"GET /services/cts/refdata/id/r1",
		"GET /services/cts/admin/refdata/r1",
		"GET /services/cts/refdata/path/b/k/x%20y.tgz",
		"POST /services/cts/admin/refdata/b/k/x.tgz?crc64nvme=AAAAAAAAAAA%3D&unpack=true",
		"PUT /services/cts/admin/refdata/r1/kbase/recover",
		"DELETE /services/cts/admin/refdata/r1/kbase/clean?force=true",
		"DELETE /services/cts/admin/refdata/r1/kbase/clean",
		`POST /services/cts/admin/images/ghcr.io/k/x:1?default_refdata_mount_point=%2Fref&refdata_id=r1 {"from_image":"ghcr.io/k/x:0"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests:\n%q\nwant\n%q", got, want)
	}
}
