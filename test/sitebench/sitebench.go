// Package sitebench measures a whole CTS site as its users and its operators see it: a dev
// site (test/testsite: the embedded stack, the coordinator, the local launcher, real agents
// and runc) driven over REST. It offers the measurements, not the verdicts: submit bursts at
// a given concurrency, status reads, the coordinator process's CPU while idle, trivial jobs
// with their phases, the same container under a bare `runc run`, and a history of finished
// jobs seeded through the job store. The benchmark tests of this package compose them into
// bench-site.json (`make bench-site`) and into the CI check; other load benchmarks may
// compose them differently.
//
// The site has two compute sites: "local", whose agents run real containers (trivial jobs),
// and "noop", whose agents never start a container (they sleep until canceled), so that
// submit bursts measure the coordinator and not the machine running hundreds of containers.
//
// Like testsite, it is a test helper: nothing outside tests may import it.
package sitebench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

// NoopSite is the compute site whose agents sleep instead of running a container.
const NoopSite = "noop"

// Options change the site Start starts.
type Options struct {
	// Configure, when set, adjusts the coordinator configuration last.
	Configure func(*app.Config)
	// Runtime is the agents' container runtime (testsite.Options.Runtime); "" takes
	// $CTS_BENCH_RUNTIME, else testsite's default ("oci": crun where it can run, else runc).
	Runtime string
}

// Site is a running benchmark site, closed when the test ends.
type Site struct {
	*testsite.Site
	// Image is the registered demo image the jobs run.
	Image string
	// Input is the small input file ("bucket/key") the jobs read.
	Input string
	// bursts numbers the submit bursts, so that each writes below its own output folder.
	bursts atomic.Int64
}

// Start starts a dev site with the "noop" compute site beside "local", registers the demo
// image and uploads one small input. It skips t as testsite.Start does.
func Start(t testing.TB, opts Options) *Site {
	t.Helper()
	// The local launcher's supervisor runs `<agent> reap --yes` after it stopped an agent (a
	// cancel): there is nothing to reap, and a sleep there held every canceled job's
	// supervisor for its two-minute bound (and each test's cleanup as long).
	noopAgent := testsite.Script(t, "noop-agent", "#!/bin/sh\n[ \"$1\" = reap ] && exit 0\nexec sleep 3600\n")
	work := t.TempDir()
	if opts.Runtime == "" {
		opts.Runtime = os.Getenv("CTS_BENCH_RUNTIME")
	}
	ts := testsite.Start(t, testsite.Options{Runtime: opts.Runtime, Configure: func(cfg *app.Config) {
		noop := cfg.Sites[0]
		noop.Name = NoopSite
		noop.Notes = []string{"Agents that sleep until canceled (benchmarks)."}
		noop.PluginConfig = maps.Clone(noop.PluginConfig)
		noop.PluginConfig["agent_path"] = noopAgent
		noop.PluginConfig["work_dir"] = filepath.Join(work, "noop-agents")
		cfg.Sites = append(cfg.Sites, noop)
		if opts.Configure != nil {
			opts.Configure(cfg)
		}
	}})
	ts.Demo.Prefix = "bench"
	s := &Site{Site: ts, Image: ts.RegisterDemo(t)}
	s.Input = ts.PutInput(t, "bench/inputs/small.fna", []byte(">small\nACGTACGTGGCC\nGGCCAATT\n"))
	return s
}

// JobBody is the submit body of a one-container job on cluster that summarises the small
// input.
func (s *Site) JobBody(cluster, outDir string) map[string]any {
	return map[string]any{
		"cluster": cluster, "image": s.Image, "input_files": []string{s.Input},
		"output_dir":     devmode.DataBucket + "/" + outDir,
		"num_containers": 1, "cpus": 1, "memory": "100MB", "runtime": "PT5M",
		"params": map[string]any{"args": []any{
			"--container", map[string]any{"type": "container_number"},
			map[string]any{"type": "input_files", "input_files_format": "space_separated_list"},
		}},
	}
}

// Latencies are measured durations of one kind of request.
type Latencies []time.Duration

// Quantile returns the q-quantile (0 ≤ q ≤ 1, nearest rank) of l, 0 if l is empty.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Median is Quantile(0.5).
func (l Latencies) Median() time.Duration { return l.Quantile(0.5) }

// Ms is d in milliseconds, to a tenth.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()/100) / 10 }

// Burst is the outcome of a submit burst.
type Burst struct {
	IDs       []string
	Latencies Latencies
	Elapsed   time.Duration
}

// PerSecond is the burst's throughput.
func (b Burst) PerSecond() float64 {
	if b.Elapsed <= 0 {
		return 0
	}
	return float64(len(b.IDs)) / b.Elapsed.Seconds()
}

// Submit posts n jobs on cluster with concurrency requests in flight and returns their IDs
// and latencies. Each job of each burst has an output folder of its own. Any failed request
// fails the burst.
func (s *Site) Submit(ctx context.Context, cluster string, n, concurrency int) (Burst, error) {
	type result struct {
		id  string
		lat time.Duration
		err error
	}
	out := make([]result, n)
	burst := s.bursts.Add(1)
	start := time.Now()
	err := parallel(ctx, n, concurrency, func(ctx context.Context, i int) error {
		var resp struct {
			JobID string `json:"job_id"`
		}
		t0 := time.Now()
		err := s.API.Do(ctx, "POST", "/jobs", s.Demo.UserToken, s.JobBody(cluster, fmt.Sprintf("bench/out/%d-%d", burst, i)), &resp)
		out[i] = result{resp.JobID, time.Since(t0), err}
		if err != nil {
			return fmt.Errorf("submit %d: %w", i, err)
		}
		return nil
	})
	b := Burst{Elapsed: time.Since(start)}
	if err != nil {
		return b, err
	}
	for _, r := range out {
		b.IDs = append(b.IDs, r.id)
		b.Latencies = append(b.Latencies, r.lat)
	}
	return b, nil
}

// Status reads GET /jobs/{id}/status n times, cycling through ids, with concurrency requests
// in flight, and returns the latencies.
func (s *Site) Status(ctx context.Context, ids []string, n, concurrency int) (Latencies, error) {
	lat := make(Latencies, n)
	err := parallel(ctx, n, concurrency, func(ctx context.Context, i int) error {
		t0 := time.Now()
		err := s.API.Do(ctx, "GET", "/jobs/"+ids[i%len(ids)]+"/status", s.Demo.UserToken, nil, nil)
		lat[i] = time.Since(t0)
		return err
	})
	return lat, err
}

// CancelAndSettle cancels the jobs (those already ended are left alone) and waits until
// every one of them has ended.
func (s *Site) CancelAndSettle(ctx context.Context, ids []string) error {
	err := parallel(ctx, len(ids), 4, func(ctx context.Context, i int) error {
		err := s.API.Do(ctx, "PUT", "/jobs/"+ids[i]+"/cancel", s.Demo.UserToken, nil, nil)
		if err != nil && !isAppCode(err, 40040) { // already ended
			return fmt.Errorf("cancel %s: %w", ids[i], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := s.WaitEnded(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// JobStatus is the part of GET /jobs/{id}/status the benchmarks read.
type JobStatus struct {
	State       string `json:"state"`
	Transitions []struct {
		State string    `json:"state"`
		Time  time.Time `json:"time"`
	} `json:"transition_times"`
}

// WaitEnded polls the job's status until it has ended, and returns it.
func (s *Site) WaitEnded(ctx context.Context, id string) (JobStatus, error) {
	for {
		var st JobStatus
		if err := s.API.Do(ctx, "GET", "/jobs/"+id+"/status", s.Demo.UserToken, nil, &st); err != nil {
			return st, fmt.Errorf("status of %s: %w", id, err)
		}
		switch st.State {
		case "complete", "error", "canceled":
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("job %s still %s: %w", id, st.State, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
