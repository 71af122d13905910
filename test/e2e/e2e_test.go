// Package e2e runs whole jobs through the real system on one machine: the embedded stack
// (S3, MongoDB wire, Kafka, registry, auth2), the coordinator, the local launcher plugin, and
// real agents that run real containers with runc. It needs root and runc; CI installs runc
// (scripts/install-deps.sh).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/segmentio/kafka-go"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// startSite starts a dev site configured for this package's demo runs.
func startSite(t *testing.T, opts testsite.Options) *testsite.Site {
	t.Helper()
	s := testsite.Start(t, opts)
	s.Demo.Containers, s.Demo.Prefix, s.Demo.Timeout = 2, "e2e", 2*time.Minute
	return s
}

var happyStates = []string{"created", "download_submitted", "job_submitting", "job_submitted",
	"upload_submitting", "upload_submitted", "complete"}

// checkDemoJob runs what `make demo` runs and checks every stage: the states in order, a Kafka
// message per transition with the job ID as key, outputs in S3 with the recorded CRC64/NVME,
// exit codes, and both containers' logs. (TestContainerRuntimes runs it under each runtime.)
func checkDemoJob(t *testing.T, s *testsite.Site) {
	ctx := context.Background()
	start := time.Now()
	res, err := demo.Run(ctx, s.Demo)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	t.Logf("job %s ran in %s (wall, including image build and upload: %s)", res.JobID, res.Elapsed, time.Since(start))

	if strings.Join(res.States, ",") != strings.Join(happyStates, ",") {
		t.Errorf("states %v, want %v", res.States, happyStates)
	}
	// Six outputs: a stats file per input and a summary per container, each verified by the
	// demo against S3 (stored checksum) and by downloading it (recomputed checksum).
	want := map[string]bool{}
	for i := range 4 {
		want[fmt.Sprintf("cts-data/e2e/output/genome_%d.fna.stats.json", i)] = true
	}
	want["cts-data/e2e/output/container-0.summary.txt"] = true
	want["cts-data/e2e/output/container-1.summary.txt"] = true
	if len(res.Outputs) != len(want) {
		t.Errorf("outputs %v, want %d files", res.Outputs, len(want))
	}
	for _, o := range res.Outputs {
		if !want[o.File] {
			t.Errorf("unexpected output %s", o.File)
		}
		if len(o.CRC64NVME) != 12 {
			t.Errorf("output %s has CRC %q", o.File, o.CRC64NVME)
		}
	}
	if n, _ := res.Job["output_file_count"].(float64); int(n) != len(want) {
		t.Errorf("output_file_count = %v", res.Job["output_file_count"])
	}
	// The job records the CRCs of its inputs, filled in from S3 at submit.
	in := res.Job["job_input"].(map[string]any)
	files := in["input_files"].([]any)
	for i, f := range files {
		m := f.(map[string]any)
		if m["file"] != res.Inputs[i].File || m["crc64nvme"] != res.Inputs[i].CRC64NVME {
			t.Errorf("input %d recorded as %v, uploaded as %+v", i, m, res.Inputs[i])
		}
	}
	if in["runtime"] != "PT5M" || in["memory"] != float64(100_000_000) {
		t.Errorf("job input runtime %v memory %v", in["runtime"], in["memory"])
	}

	var codes struct {
		ExitCodes []*int `json:"exit_codes"`
	}
	if err := s.API.Do(ctx, "GET", "/jobs/"+res.JobID+"/exit_codes", s.Demo.UserToken, nil, &codes); err != nil {
		t.Fatal(err)
	}
	if len(codes.ExitCodes) != 2 || codes.ExitCodes[0] == nil || *codes.ExitCodes[0] != 0 || codes.ExitCodes[1] == nil || *codes.ExitCodes[1] != 0 {
		t.Errorf("exit codes %v", codes.ExitCodes)
	}
	for n := range 2 {
		var out, errLog []byte
		if err := s.API.Do(ctx, "GET", fmt.Sprintf("/jobs/%s/log/%d/stdout", res.JobID, n), s.Demo.UserToken, nil, &out); err != nil {
			t.Fatalf("stdout of container %d: %v", n, err)
		}
		if err := s.API.Do(ctx, "GET", fmt.Sprintf("/jobs/%s/log/%d/stderr", res.JobID, n), s.Demo.UserToken, nil, &errLog); err != nil {
			t.Fatalf("stderr of container %d: %v", n, err)
		}
		if c := strings.Count(string(out), fmt.Sprintf("container %d: /input_files/genome_", n)); c != 2 {
			t.Errorf("container %d stdout has %d file lines:\n%s", n, c, out)
		}
		if !strings.Contains(string(errLog), fmt.Sprintf("container %d done: 2 files", n)) {
			t.Errorf("container %d stderr: %q", n, errLog)
		}
	}

	// Kafka: one message per transition, keyed by job ID, in order, with the trans_ids the
	// admin view shows, and every transition marked sent.
	var admin struct {
		Transitions []struct {
			State     string `json:"state"`
			TransID   string `json:"trans_id"`
			NotifSent bool   `json:"notif_sent"`
		} `json:"transition_times"`
	}
	msgs := readKafka(t, s.Env.Stack.Kafka.Brokers(), res.JobID, len(happyStates))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := s.API.Do(ctx, "GET", "/admin/jobs/"+res.JobID, s.Demo.AdminToken, nil, &admin); err != nil {
			t.Fatal(err)
		}
		all := true
		for _, tr := range admin.Transitions {
			all = all && tr.NotifSent
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(msgs) != len(admin.Transitions) {
		t.Fatalf("%d Kafka messages for %d transitions", len(msgs), len(admin.Transitions))
	}
	for i, tr := range admin.Transitions {
		m := msgs[i]
		if m.State != tr.State || m.TransID != tr.TransID || m.JobID != res.JobID {
			t.Errorf("message %d = %+v, transition %+v", i, m, tr)
		}
		if !tr.NotifSent {
			t.Errorf("transition %s not marked sent", tr.State)
		}
	}
}

type kafkaMsg struct {
	JobID   string `json:"job_id"`
	State   string `json:"state"`
	Time    string `json:"time"`
	TransID string `json:"trans_id"`
}

// readKafka reads the cts-jobs topic from the start until it has n messages for jobID.
func readKafka(t *testing.T, brokers []string, jobID string, n int) []kafkaMsg {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: devstack.DefaultTopic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafkaMsg
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read Kafka after %d messages: %v", len(out), err)
		}
		if string(m.Key) != jobID {
			continue
		}
		var km kafkaMsg
		if err := json.Unmarshal(m.Value, &km); err != nil {
			t.Fatalf("message %q: %v", m.Value, err)
		}
		if !strings.HasSuffix(km.Time, "+00:00") {
			t.Errorf("message time %q is not Python isoformat UTC", km.Time)
		}
		out = append(out, km)
	}
	return out
}

// waitJob polls until the job is terminal and returns its user view.
func waitJob(t *testing.T, s *testsite.Site, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var j map[string]any
		if err := s.API.Do(context.Background(), "GET", "/jobs/"+id, s.Demo.UserToken, nil, &j); err != nil {
			t.Fatal(err)
		}
		switch j["state"] {
		case "complete", "error", "canceled":
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %v", id, j["state"])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func submit(t *testing.T, s *testsite.Site, image string, inputs []string, containers int) string {
	t.Helper()
	var sub map[string]string
	err := s.API.Do(context.Background(), "POST", "/jobs", s.Demo.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": inputs,
		"output_dir": "cts-data/e2e/output", "num_containers": containers, "runtime": 300,
		"params": map[string]any{"args": []any{
			"--container", map[string]any{"type": "container_number"},
			map[string]any{"type": "input_files", "input_files_format": "space_separated_list"},
		}},
	}, &sub)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sub["job_id"]
}

func listKeys(t *testing.T, c *s3.Client, bucket, prefix string) []string {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// TestInputChangedAfterSubmit replaces an input's bytes after the job recorded its checksum and
// before the agent downloads it: the agent must refuse the bytes, the job must end in error with
// a checksum message, and no output may be written.
func TestInputChangedAfterSubmit(t *testing.T) {
	bins := testsite.RequireEnv(t)
	// The agent waits for a go-ahead file, so the input can change between submit and download.
	gate := filepath.Join(t.TempDir(), "go")
	wrapper := testsite.Script(t, "gated-agent",
		fmt.Sprintf("#!/bin/sh\nwhile [ ! -e %q ]; do sleep 0.05; done\nexec %q \"$@\"\n", gate, bins.Agent))
	s := startSite(t, testsite.Options{AgentPath: wrapper})
	ctx := context.Background()
	image := s.RegisterDemo(t)
	c := s.Env.Stack.S3.Client()
	if _, err := demo.PutWithCRC(ctx, c, devmode.DataBucket, "e2e/in/a.fna", []byte(">a\nACGTACGT\n")); err != nil {
		t.Fatal(err)
	}
	id := submit(t, s, image, []string{"cts-data/e2e/in/a.fna"}, 1)
	// Same size, other bytes, stored with their own (correct) checksum: only the job's
	// recorded CRC can tell.
	if _, err := demo.PutWithCRC(ctx, c, devmode.DataBucket, "e2e/in/a.fna", []byte(">a\nTTTTTTTT\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, s, id)
	if j["state"] != "error" {
		t.Fatalf("job ended %v, want error", j["state"])
	}
	msg, _ := j["error"].(string)
	if !strings.Contains(msg, "checksum") || !strings.Contains(msg, "cts-data/e2e/in/a.fna") {
		t.Errorf("user error %q does not explain the checksum mismatch", msg)
	}
	if _, ok := j["outputs"]; ok {
		t.Errorf("a failed job has outputs: %v", j["outputs"])
	}
	if keys := listKeys(t, c, devmode.DataBucket, "e2e/output/"); len(keys) != 0 {
		t.Errorf("outputs were written: %v", keys)
	}
	admin := s.AdminJob(t, id)
	if ae, _ := admin["admin_error"].(string); !strings.Contains(ae, "checksum mismatch") {
		t.Errorf("admin error %q", ae)
	}
}

// tamperer corrupts, in a site's registry, the blob whose digest is its target.
type tamperer struct{ target atomic.Value }

func newTamperer() *tamperer {
	tp := &tamperer{}
	tp.target.Store("")
	return tp
}

// option is the registry option that serves the target blob with one byte flipped.
func (tp *tamperer) option() devstack.RegistryOption {
	return devstack.WithBlobTamper(func(digest string, b []byte) []byte {
		if digest != tp.target.Load().(string) || len(b) == 0 {
			return b
		}
		c := bytes.Clone(b)
		c[len(c)/2] ^= 0xff
		return c
	})
}

// checkTamperedLayer serves wrong bytes for an image's layer (under its digest): the agent
// must refuse the image, run nothing, and the job must end in error with a sentence that says
// so. The image (the fault tool, a layer no other test uses) is the tamperer's alone.
func checkTamperedLayer(t *testing.T, s *testsite.Site, tp *tamperer) {
	ctx := context.Background()
	image := s.RegisterTool(t, testsite.Binary(t, "./test/fault/tool"), "tampered")
	layer, err := layerDigest(s, image)
	if err != nil {
		t.Fatal(err)
	}
	tp.target.Store(layer)
	c := s.Env.Stack.S3.Client()
	if _, err := demo.PutWithCRC(ctx, c, devmode.DataBucket, "e2e/tampered/in/b.fna", []byte(">b\nGGCC\n")); err != nil {
		t.Fatal(err)
	}
	id := submitJob(t, s, map[string]any{"image": image, "input_files": []string{"cts-data/e2e/tampered/in/b.fna"},
		"output_dir": "cts-data/e2e/tampered/output", "params": map[string]any{"args": []any{"sleep-copy", "0"}}})
	j := waitJob(t, s, id)
	if j["state"] != "error" {
		t.Fatalf("job ended %v, want error", j["state"])
	}
	if msg, _ := j["error"].(string); !strings.Contains(msg, "does not match its digest") || !strings.Contains(msg, "Nothing ran") {
		t.Errorf("user error %q does not say the image was refused", msg)
	}
	admin := s.AdminJob(t, id)
	ae, _ := admin["admin_error"].(string)
	if !strings.Contains(ae, layer) && !strings.Contains(strings.ToLower(ae), "digest") {
		t.Errorf("admin error %q does not name the digest problem", ae)
	}
	for _, st := range admin["transition_times"].([]any) {
		if st.(map[string]any)["state"] == "job_submitted" {
			t.Errorf("a container started from a tampered image")
		}
	}
	if keys := listKeys(t, c, devmode.DataBucket, "e2e/tampered/output/"); len(keys) != 0 {
		t.Errorf("outputs were written: %v", keys)
	}
}

// submitJob submits a one-container job to the dev site with the given fields (cluster and
// runtime have defaults) and returns its ID.
func submitJob(t *testing.T, s *testsite.Site, fields map[string]any) string {
	t.Helper()
	body := map[string]any{"cluster": devmode.SiteName, "runtime": 300}
	for k, v := range fields {
		body[k] = v
	}
	var sub map[string]string
	if err := s.API.Do(context.Background(), "POST", "/jobs", s.Demo.UserToken, body, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sub["job_id"]
}

// layerDigest finds the (single) layer digest of a registered image through the registry API.
func layerDigest(s *testsite.Site, image string) (string, error) {
	var img map[string]any
	if err := s.API.Do(context.Background(), "GET", "/images/"+image, "", nil, &img); err != nil {
		return "", err
	}
	digest, _ := img["digest"].(string)
	name, _ := img["name"].(string)
	repo := strings.TrimPrefix(name, s.Demo.Registry+"/")
	api := &demo.Client{URL: "http://" + s.Demo.Registry}
	var manifest struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := api.Do(context.Background(), "GET", "/v2/"+repo+"/manifests/"+digest, "", nil, &manifest); err != nil {
		return "", err
	}
	if len(manifest.Layers) != 1 {
		return "", errors.New("expected exactly one layer")
	}
	return manifest.Layers[0].Digest, nil
}
