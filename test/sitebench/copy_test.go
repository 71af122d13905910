package sitebench_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/sitebench"
	"github.com/kbase/cts/test/testsite"
)

// TestCopyJob runs $CTS_BENCH_COPY one-container jobs that copy a 256 MiB input to their
// output (real agent and runc on "local": the input downloaded and its CRC64/NVME verified,
// the output uploaded with its checksum) on a fresh site, then seeds $CTS_BENCH_COPY_HISTORY
// finished jobs (default 10,000) through the store and runs them again: the issue's
// side-by-side row for a large job on a site with history (before the store work: 2.9 s
// fresh, 18.7 s with history). It logs the median of two figures per round: created →
// complete from the job's transitions (the complete transition carries the agent's event
// time) and POST → a status read saying complete (what a user sees; read every 20 ms). Every
// job must complete, and each output must carry the input's CRC64/NVME.
func TestCopyJob(t *testing.T) {
	n := 0
	if _, err := fmt.Sscan(os.Getenv("CTS_BENCH_COPY"), &n); err != nil || n <= 0 {
		t.Skip("set CTS_BENCH_COPY to the number of 256 MiB copy jobs per round")
	}
	history := 10000
	if v := os.Getenv("CTS_BENCH_COPY_HISTORY"); v != "" {
		if _, err := fmt.Sscan(v, &history); err != nil || history < 0 {
			t.Fatalf("CTS_BENCH_COPY_HISTORY=%q: want a number of jobs", v)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Minute)
	defer cancel()
	s := sitebench.Start(t, sitebench.Options{})
	image := s.RegisterTool(t, testsite.Binary(t, "./test/fault/tool"), "copy")
	big := make([]byte, 256<<20)
	_, _ = rand.NewChaCha8([32]byte{13}).Read(big)
	in := s.PutInput(t, "bench/inputs/big.bin", big)
	big = nil
	client := s.Env.Stack.S3.Client()
	crc := func(bucketKey string) string {
		key := bucketKey[len(devmode.DataBucket)+1:]
		h, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(devmode.DataBucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
		if err != nil {
			t.Fatalf("head %s: %v", bucketKey, err)
		}
		return aws.ToString(h.ChecksumCRC64NVME)
	}
	want := crc(in)
	if want == "" {
		t.Fatal("the input has no CRC64/NVME")
	}
	var template string
	round := func(name string) {
		var events, seen sitebench.Latencies
		for i := range n {
			out := fmt.Sprintf("bench/copy/%s/%d", name, i)
			var sub struct {
				JobID string `json:"job_id"`
			}
			t0 := time.Now()
			if err := s.API.Do(ctx, "POST", "/jobs", s.Demo.UserToken, map[string]any{
				"cluster": "local", "image": image, "input_files": []string{in},
				"output_dir": devmode.DataBucket + "/" + out, "num_containers": 1, "cpus": 1, "runtime": "PT10M",
				// The page cache the copy fills is charged to the container's memory cgroup.
				"memory": "512MB",
				"params": map[string]any{"args": []any{"sleep-copy", "0"}},
			}, &sub); err != nil {
				t.Fatalf("%s: submit: %v", name, err)
			}
			st, err := s.WaitEnded(ctx, sub.JobID)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			userSeen := time.Since(t0)
			if st.State != "complete" {
				t.Fatalf("%s: job %s ended %s", name, sub.JobID, st.State)
			}
			var created, complete time.Time
			for _, tr := range st.Transitions {
				switch tr.State {
				case "created":
					created = tr.Time
				case "complete":
					complete = tr.Time
				}
			}
			if got := crc(devmode.DataBucket + "/" + out + "/big.bin"); got != want {
				t.Fatalf("%s: job %s's output CRC64/NVME %q, want the input's %q", name, sub.JobID, got, want)
			}
			events, seen = append(events, complete.Sub(created)), append(seen, userSeen)
			template = sub.JobID
			t.Logf("%s: job %d: created → complete %v; POST → status complete %v", name, i, complete.Sub(created), userSeen)
		}
		t.Logf("%s: 256 MiB copy job, medians of %d: created → complete %v; POST → status complete %v (load: %s)",
			name, n, events.Median(), seen.Median(), uptime())
	}
	round("fresh")
	if history == 0 {
		return
	}
	t0 := time.Now()
	if err := s.Seed(ctx, template, history); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d finished jobs in %v", history, time.Since(t0).Round(time.Second))
	round(fmt.Sprintf("history-%d", history))
}
