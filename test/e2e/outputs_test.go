package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

// manyOutputs is how many output files TestManyOutputs writes: CTS_TEST_MANY_OUTPUTS, or
// 2,500 (more than one event carries, so the manifest path runs in every CI run; the
// 100,000-file run and its figures are in docs/benchmarks.md).
func manyOutputs(t *testing.T) int {
	if v := os.Getenv("CTS_TEST_MANY_OUTPUTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CTS_TEST_MANY_OUTPUTS=%q is not a positive count", v)
		}
		return n
	}
	return 2500
}

// vmHWM reads a process's peak resident set size (VmHWM) in KiB, or 0.
func vmHWM(pid string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// descends reports whether process pid descends from this test process (agents of other
// tests on the machine do not count).
func descends(pid string) bool {
	self := strconv.Itoa(os.Getpid())
	for range 64 {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			return false
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			return false
		}
		pid = f[1]
		if pid == self {
			return true
		}
		if pid == "0" || pid == "1" {
			return false
		}
	}
	return false
}

// agentPeak samples the peak RSS of this test's cts-agent processes until stop is closed.
func agentPeak(stop <-chan struct{}) func() int64 {
	var mu sync.Mutex
	var peak int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				if err != nil || !strings.Contains(filepath.Base(strings.SplitN(string(cmd), "\x00", 2)[0]), "cts-agent") || !descends(e.Name()) {
					continue
				}
				if kb := vmHWM(e.Name()); kb > 0 {
					mu.Lock()
					peak = max(peak, kb)
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// TestManyOutputs runs a container that writes more output files than one agent event carries
// (protocol.MaxInlineOutputs): the agent uploads them and a sealed outputs manifest, the
// coordinator verifies every file in S3 and completes the job, and the user's GET /jobs/{id}
// streams every output, sorted, each once. It logs the peak RSS of the agent and of this test
// process (the coordinator runs in it) and the listing's time.
func TestManyOutputs(t *testing.T) {
	n := manyOutputs(t)
	s := startSite(t, testsite.Options{})
	image := s.RegisterTool(t, testsite.Binary(t, testsite.TestToolPkg), "many")
	in := s.PutInput(t, "e2e/many/in.txt", []byte("x\n"))
	var sub map[string]string
	if err := s.API.Do(context.Background(), "POST", "/jobs", s.Demo.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": []string{in},
		"output_dir": "cts-data/e2e/many/output", "runtime": 3600, "memory": "200MB", "params": map[string]any{"args": []any{"files", strconv.Itoa(n)}},
	}, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	id := sub["job_id"]
	stop := make(chan struct{})
	peak := agentPeak(stop)
	start := time.Now()
	j := s.WaitState(t, id, time.Duration(5+n/1000)*time.Minute, "complete", "error")
	close(stop)
	t.Logf("%d outputs: job ended %v after %s; agent peak RSS %d KiB; test process (coordinator, S3, MongoDB proxy) peak RSS %d KiB",
		n, j["state"], time.Since(start).Round(time.Second), peak(), vmHWM("self"))
	if j["state"] != "complete" {
		t.Fatalf("job %s: %v (%v)", id, j["state"], j["error"])
	}
	if c, _ := j["output_file_count"].(float64); int(c) != n {
		t.Fatalf("output_file_count %v, want %d", j["output_file_count"], n)
	}

	// The user's listing, decoded as a stream: count, order, place.
	listStart := time.Now()
	req, err := http.NewRequest("GET", s.API.URL+"/jobs/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Demo.UserToken)
	hc := s.API.HC
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /jobs/%s: %s", id, resp.Status)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	count, last := 0, ""
	found := false
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if key != "outputs" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
			continue
		}
		found = true
		if _, err := dec.Token(); err != nil { // [
			t.Fatal(err)
		}
		for dec.More() {
			var o struct {
				File      string `json:"file"`
				CRC64NVME string `json:"crc64nvme"`
			}
			if err := dec.Decode(&o); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(o.File, "cts-data/e2e/many/output/d") || o.File <= last || o.CRC64NVME == "" {
				t.Fatalf("output %d: %+v after %s", count, o, last)
			}
			last = o.File
			count++
		}
		if _, err := dec.Token(); err != nil { // ]
			t.Fatal(err)
		}
	}
	if !found || count != n {
		t.Fatalf("the listing has outputs: %v, %d of them, want %d", found, count, n)
	}
	if want := fmt.Sprintf("cts-data/e2e/many/output/d%03d/f%07d.txt", (n-1)/1000, n-1); last != want {
		t.Errorf("last output %s, want %s", last, want)
	}
	t.Logf("GET /jobs/%s streamed %d outputs in %s", id, count, time.Since(listStart).Round(time.Millisecond))

	// The manifest changed in S3 after the job completed (its last line dropped): the listing
	// is cut, never served as a whole job.
	logPath, _ := j["logpath"].(string)
	bucket, key, _ := strings.Cut(logPath+"/container-0-outputs.jsonl", "/")
	c := s.Env.Stack.S3.Client()
	obj, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("the manifest %s/%s: %v", bucket, key, err)
	}
	body, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cut := body[:bytes.LastIndexByte(body[:len(body)-1], '\n')+1]
	if _, err := demo.PutWithCRC(context.Background(), c, bucket, key, cut); err != nil {
		t.Fatal(err)
	}
	resp2, err := hc.Do(req)
	if err == nil {
		var whole map[string]any
		err = json.NewDecoder(resp2.Body).Decode(&whole)
		resp2.Body.Close()
		if err == nil {
			t.Fatalf("a job whose manifest lost a line was served whole (status %d, %d keys)", resp2.StatusCode, len(whole))
		}
	}
	t.Logf("with the manifest cut in S3: %v", err)
}
