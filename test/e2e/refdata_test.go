package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkRefdataJob registers a reference data archive, lets the coordinator stage it (an agent
// in refdata mode, started through the site's launcher, downloads it with CRC64/NVME
// verification and unpacks it), registers an image that needs it, and runs a job that reads it
// from its read-only mount and copies it to its outputs. (TestContainerRuntimes runs it under
// each runtime.)
func checkRefdataJob(t *testing.T, s *testsite.Site) {
	ctx := context.Background()
	files := map[string]string{"db/genes.txt": "gene1\ngene2\n", "db/README": "reference data\n"}
	archive := tarGz(t, files)
	crc, err := demo.PutWithCRC(ctx, s.Env.Stack.S3.Client(), devmode.DataBucket, "e2e/refdata/db.tar.gz", archive)
	if err != nil {
		t.Fatal(err)
	}
	var rd struct {
		ID       string `json:"id"`
		Statuses []struct {
			Cluster string `json:"cluster"`
			State   string `json:"state"`
		} `json:"statuses"`
	}
	q := url.Values{"crc64nvme": {crc}, "unpack": {"true"}}
	if err := s.API.Do(ctx, "POST", "/admin/refdata/cts-data/e2e/refdata/db.tar.gz?"+q.Encode(), s.Demo.AdminToken, nil, &rd); err != nil {
		t.Fatalf("register refdata: %v", err)
	}
	if rd.ID == "" {
		t.Fatalf("no refdata id: %+v", rd)
	}
	// A wrong checksum is refused and records nothing.
	bad := url.Values{"crc64nvme": {"AAAAAAAAAAA="}, "unpack": {"true"}}
	err = s.API.Do(ctx, "POST", "/admin/refdata/cts-data/e2e/refdata/db.tar.gz?"+bad.Encode(), s.Demo.AdminToken, nil, nil)
	if ae, ok := err.(*demo.APIError); !ok || ae.AppCode() == 0 {
		t.Errorf("registering with a wrong CRC: %v", err)
	}

	// The image needs the reference data, mounted at /refdata by default.
	tool := testsite.Binary(t, testsite.TestToolPkg)
	ref, _ := s.PushTool(t, tool, "refdata")
	iq := url.Values{"refdata_id": {rd.ID}, "default_refdata_mount_point": {"/refdata"}}
	if err := s.API.Do(ctx, "POST", "/admin/images/"+ref+"?"+iq.Encode(), s.Demo.AdminToken, nil, nil); err != nil {
		t.Fatalf("register image with refdata: %v", err)
	}

	// Wait for the staging to complete at the dev site.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := s.API.Do(ctx, "GET", "/refdata/id/"+rd.ID, "", nil, &rd); err != nil {
			t.Fatal(err)
		}
		state := ""
		for _, st := range rd.Statuses {
			if st.Cluster == devmode.SiteName {
				state = st.State
			}
		}
		if state == "complete" {
			break
		}
		if state == "error" || time.Now().After(deadline) {
			var admin map[string]any
			_ = s.API.Do(ctx, "GET", "/admin/refdata/"+rd.ID, s.Demo.AdminToken, nil, &admin)
			t.Fatalf("refdata staging is %q: %v", state, admin)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The attack: the site-wide executor token (every worker has it) marks the staging failed.
	// Only the staging task's own credential may report for it.
	err = s.API.Do(ctx, "PUT", "/external_exec/refdata/"+rd.ID+"/"+devmode.SiteName+"/update/error", s.Env.ExecutorToken,
		map[string]any{"admin_error": "forged"}, nil)
	if ae, ok := err.(*demo.APIError); !ok || ae.AppCode() != 20000 {
		t.Fatalf("the executor token's report = %v, want 403 / 20000", err)
	}

	in := s.PutInput(t, "e2e/refdata-in/x.txt", []byte("x\n"))
	var sub map[string]string
	if err := s.API.Do(ctx, "POST", "/jobs", s.Demo.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": ref, "input_files": []string{in},
		"output_dir": "cts-data/e2e/refdata-out", "runtime": 300,
		"params": map[string]any{"args": []any{"copy-tree", "/refdata", "/output_files"}},
	}, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	j := waitJob(t, s, sub["job_id"])
	if j["state"] != "complete" {
		t.Fatalf("job ended %v: %v (admin: %v)", j["state"], j["error"], s.AdminJob(t, sub["job_id"])["admin_error"])
	}
	// The staged files reached the container intact.
	c := s.Env.Stack.S3.Client()
	for name, body := range files {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(devmode.DataBucket), Key: aws.String("e2e/refdata-out/" + name)})
		if err != nil {
			t.Fatalf("output %s: %v", name, err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(out.Body)
		out.Body.Close()
		if b.String() != body {
			t.Errorf("output %s = %q, want %q", name, b.String(), body)
		}
	}
	outs := fmt.Sprint(j["outputs"])
	if !strings.Contains(outs, "e2e/refdata-out/db/genes.txt") {
		t.Errorf("outputs %s", outs)
	}
}
