package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/jobs/jobstest"
	"github.com/kbase/cts/coordinator/internal/notify"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/test/ports"
)

// startKafkaAt starts an embedded Kafka on a fixed port, so that a broker can go away and come
// back at the same address, as a real one does.
func startKafkaAt(t *testing.T, port int) *kfake.Cluster {
	t.Helper()
	var c *kfake.Cluster
	var err error
	for range 50 { // the port of a closed cluster may take a moment to free
		c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation(),
			kfake.DefaultNumPartitions(1), kfake.SeedTopics(1, "cts-jobs"))
		if err == nil {
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("start kafka on port %d: %v", port, err)
	return nil
}

// TestKafkaOutageMidJob: Kafka goes down while a job runs. The coordinator keeps accepting
// jobs and running them to the end; when the broker comes back at the same address, every
// transition of every job is delivered (at least once), each keyed by its job ID, in order.
func TestKafkaOutageMidJob(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	// The broker's port stays reserved while the broker is down, so that it can come back
	// at the same address.
	res, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Close() })
	port, addr := res.Port(), res.Addr()

	k := startKafkaAt(t, port)
	n, err := notify.New(notify.Config{Brokers: []string{addr}, Interval: 100 * time.Millisecond}, f.Store, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("notifier Run = %v", err)
		}
	})
	f.Wire(n)

	unsent := func() int {
		js, err := f.Store.UnsentTransitions(ctx, time.Now().Add(time.Hour), 0)
		if err != nil {
			t.Fatal(err)
		}
		c := 0
		for _, j := range js {
			c += len(j.Transitions)
		}
		return c
	}
	waitUnsent := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for unsent() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d unsent transitions, want %d", unsent(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Before the outage: the job is submitted and starts; its transitions go out.
	good := f.Put(t, "outputs/run1/good.txt", []byte("good"))
	id1 := f.Submit(t, nil)
	a0, a1 := f.Agent(id1, 0, "x"), f.Agent(id1, 1, "x")
	a0.Walk(t, job.JobSubmitting, job.JobSubmitted)
	a1.Walk(t, job.JobSubmitting, job.JobSubmitted)
	f.WantState(t, id1, job.JobSubmitted)
	waitUnsent(0)

	// The broker dies mid-job.
	k.Close()
	a0.Walk(t, job.UploadSubmitting, job.UploadSubmitted)
	a1.Walk(t, job.UploadSubmitting, job.UploadSubmitted)
	for _, a := range []*jobstest.Agent{a0, a1} {
		if err := a.Send(ctx, protocol.Event{State: job.Complete, Outputs: []protocol.OutputFile{{File: "outputs/run1/good.txt", CRC64NVME: good}}}); err != nil {
			t.Fatalf("an agent event during the outage: %v", err)
		}
	}
	f.WantState(t, id1, job.Complete)
	// New jobs are accepted and run meanwhile.
	id2 := f.Submit(t, nil)
	if err := f.Launch.Cancel(ctx, alice, id2); err != nil {
		t.Fatal(err)
	}
	if err := f.Launch.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	f.WantState(t, id2, job.Canceled)
	time.Sleep(300 * time.Millisecond)
	// upload_submitting, upload_submitted, complete of job 1; created, download_submitted,
	// canceling, canceled of job 2.
	if got := unsent(); got != 7 {
		t.Fatalf("%d unsent transitions during the outage, want 7", got)
	}

	// The broker returns at the same address (empty: a new cluster) and the same notifier
	// delivers the backlog.
	k2 := startKafkaAt(t, port)
	t.Cleanup(k2.Close)
	waitUnsent(0)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "cts-jobs", Partition: 0, MaxWait: 100 * time.Millisecond})
	t.Cleanup(func() { _ = r.Close() })
	got := map[string][]string{}
	rctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for range 7 {
		m, err := r.ReadMessage(rctx2)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		st := string(m.Value)
		got[string(m.Key)] = append(got[string(m.Key)], st)
	}
	j1, err := f.Store.GetJob(ctx, id1)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := f.Store.GetJob(ctx, id2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		j    *jobs.Job
		from int
	}{{j1, len(j1.Transitions) - 3}, {j2, 0}} {
		var want []string
		for _, tr := range tc.j.Transitions[tc.from:] {
			if !tr.NotifSent {
				t.Errorf("job %s transition %s not marked sent", tc.j.ID, tr.State)
			}
			want = append(want, string(notify.Encode(tc.j.ID, tr)))
		}
		if len(got[tc.j.ID]) != len(want) {
			t.Fatalf("job %s: messages %v, want %v", tc.j.ID, got[tc.j.ID], want)
		}
		for i := range want {
			if got[tc.j.ID][i] != want[i] {
				t.Errorf("job %s message %d = %s, want %s", tc.j.ID, i, got[tc.j.ID][i], want[i])
			}
		}
	}
}
