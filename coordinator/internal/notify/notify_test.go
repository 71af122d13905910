package notify_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/notify"
	"github.com/kbase/cts/coordinator/internal/store"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/test/ports"
	"github.com/kbase/cts/test/tcpproxy"
)

const topic = "cts-jobs"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  notify.Config
		ok   bool
	}{
		{"defaults", notify.Config{Brokers: []string{"h:9092"}}, true},
		{"explicit", notify.Config{Brokers: []string{"a:1", "b:2"}, Topic: "My-Topic-1", Interval: time.Second}, true},
		{"249 chars", notify.Config{Brokers: []string{"h:1"}, Topic: strings.Repeat("a", 249)}, true},
		{"250 chars", notify.Config{Brokers: []string{"h:1"}, Topic: strings.Repeat("a", 250)}, false},
		{"dot", notify.Config{Brokers: []string{"h:1"}, Topic: "cts.jobs"}, false},
		{"underscore", notify.Config{Brokers: []string{"h:1"}, Topic: "cts_jobs"}, false},
		{"no brokers", notify.Config{}, false},
		{"blank broker", notify.Config{Brokers: []string{" "}}, false},
		{"negative interval", notify.Config{Brokers: []string{"h:1"}, Interval: -time.Second}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if (err == nil) != c.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, c.ok)
			}
			_, err = notify.New(c.cfg, &store.Store{}, quiet())
			if (err == nil) != c.ok {
				t.Fatalf("New = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// newStore opens a store on an embedded MongoDB.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	m := devstack.TestMongo(t)
	s, err := store.New(t.Context(), store.Config{URI: m.URI(), Database: "cts", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// run starts n.Run and returns a stop function that cancels it and waits for it, failing the
// test if Run returned early or with an error.
func run(t *testing.T, n *notify.Notifier) (stop func()) {
	t.Helper()
	// Not t.Context(): it is canceled before the cleanups run, and stop must see Run alive.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			select {
			case err := <-done:
				t.Errorf("Run returned before it was stopped: %v", err)
				cancel()
				return
			default:
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v after stop, want nil", err)
				}
			case <-time.After(35 * time.Second):
				t.Error("Run did not stop")
			}
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// createJob creates job id and moves it through download_submitted and job_submitting,
// returning its three transitions.
func createJob(t *testing.T, s *store.Store, id string, at time.Time) []jobs.Transition {
	t.Helper()
	ctx := t.Context()
	j := &jobs.Job{ID: id, User: "u", State: job.Created, UpdateTime: at,
		Transitions: []jobs.Transition{{State: job.Created, Time: at}},
		Input:       jobinput.JobInput{Cluster: "kbase", OutputDir: "b/o/"}}
	if err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	for i, to := range []job.State{job.DownloadSubmitted, job.JobSubmitting} {
		if _, err := s.TransitionJob(ctx, id, job.Predecessors(to), jobs.Transition{State: to, Time: at.Add(time.Duration(i+1) * time.Millisecond)}, jobs.JobUpdate{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return got.Transitions
}

func reader(t *testing.T, k *devstack.Kafka) *kafka.Reader {
	t.Helper()
	// MaxWait: Close waits for the in-flight fetch, which the broker holds up to MaxWait.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers(), Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func readN(t *testing.T, r *kafka.Reader, n int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out []kafka.Message
	for range n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		out = append(out, m)
	}
	return out
}

// checkMessages asserts msgs are the transitions of job id, in order.
func checkMessages(t *testing.T, msgs []kafka.Message, id string, trs []jobs.Transition) {
	t.Helper()
	if len(msgs) != len(trs) {
		t.Fatalf("%d messages, want %d", len(msgs), len(trs))
	}
	for i, m := range msgs {
		if string(m.Key) != id {
			t.Errorf("message %d key %q, want %q", i, m.Key, id)
		}
		if want := string(notify.Encode(id, trs[i])); string(m.Value) != want {
			t.Errorf("message %d = %s, want %s", i, m.Value, want)
		}
	}
}

// waitUnsent polls until the store has exactly want unsent transitions.
func waitUnsent(t *testing.T, s *store.Store, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := unsent(t, s)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d unsent transitions, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unsent(t *testing.T, s *store.Store) int {
	t.Helper()
	js, err := s.UnsentTransitions(t.Context(), time.Now().Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, j := range js {
		n += len(j.Transitions)
	}
	return n
}

func TestNotifierDeliversOnPoke(t *testing.T) {
	s := newStore(t)
	k := devstack.TestKafka(t, topic)
	// An hour-long interval: only Poke can trigger the sends after the first scan.
	n, err := notify.New(notify.Config{Brokers: k.Brokers(), Interval: time.Hour}, s, quiet())
	if err != nil {
		t.Fatal(err)
	}
	run(t, n)
	time.Sleep(100 * time.Millisecond) // let the start-up scan find nothing
	start := time.Now()
	trs := createJob(t, s, "job1", time.Now())
	n.Poke()
	r := reader(t, k)
	checkMessages(t, readN(t, r, 3), "job1", trs)
	waitUnsent(t, s, 0)
	t.Logf("3 transitions delivered and marked %v after the poke", time.Since(start))

	t.Run("second job", func(t *testing.T) {
		trs := createJob(t, s, "job2", time.Now())
		n.Poke()
		checkMessages(t, readN(t, r, 3), "job2", trs)
		waitUnsent(t, s, 0)
	})

	t.Run("admin send does not mark", func(t *testing.T) {
		j := &jobs.Job{ID: "job3", State: job.Created, UpdateTime: time.Now(),
			Transitions: []jobs.Transition{{State: job.Created, Time: time.Now(), TransID: "tid3"}}}
		// Created without a poke, the transition stays unsent until the next scan, an hour away.
		if err := s.CreateJob(t.Context(), j, nil); err != nil {
			t.Fatal(err)
		}
		if err := n.Send(t.Context(), "job3", j.Transitions[0]); err != nil {
			t.Fatal(err)
		}
		checkMessages(t, readN(t, r, 1), "job3", j.Transitions)
		if got := unsent(t, s); got != 1 {
			t.Fatalf("%d unsent transitions after Send, want 1", got)
		}
	})
}

func TestNotifierScansEveryInterval(t *testing.T) {
	s := newStore(t)
	k := devstack.TestKafka(t, topic)
	n, err := notify.New(notify.Config{Brokers: k.Brokers(), Interval: 100 * time.Millisecond}, s, quiet())
	if err != nil {
		t.Fatal(err)
	}
	run(t, n)
	time.Sleep(50 * time.Millisecond)
	trs := createJob(t, s, "job1", time.Now()) // no Poke
	checkMessages(t, readN(t, reader(t, k), 3), "job1", trs)
	waitUnsent(t, s, 0)
}

// countingHandler counts error records.
type countingHandler struct {
	slog.Handler
	mu     sync.Mutex
	errors int
	infos  int
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r.Level {
	case slog.LevelError:
		h.errors++
	case slog.LevelInfo:
		h.infos++
	}
	return nil
}

func (h *countingHandler) counts() (errs, infos int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errors, h.infos
}

// deadAddr returns a loopback address where nothing listens, reserved until the test ends so
// that nothing else can listen there meanwhile.
func deadAddr(t *testing.T) string {
	t.Helper()
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = port.Close() })
	return port.Addr()
}

func TestNotifierSurvivesKafkaOutage(t *testing.T) {
	s := newStore(t)

	// Phase 1: the broker is down from the start.
	h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
	dead, err := notify.New(notify.Config{Brokers: []string{deadAddr(t)}, Interval: 50 * time.Millisecond}, s, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	stopDead := run(t, dead)
	trs1 := createJob(t, s, "job1", time.Now())
	dead.Poke()
	time.Sleep(1500 * time.Millisecond)
	if got := unsent(t, s); got != 3 {
		t.Fatalf("%d unsent transitions during the outage, want 3", got)
	}
	dead.Poke() // never blocks, even repeated
	dead.Poke()
	if errs, _ := h.counts(); errs != 1 {
		t.Fatalf("%d error logs during one outage, want 1", errs)
	}
	stopDead() // fails the test if Run had returned

	// Phase 2: a broker comes up; a new notifier delivers everything.
	k1, err := devstack.StartKafka(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k1.Close() })
	n1, err := notify.New(notify.Config{Brokers: k1.Brokers(), Interval: 50 * time.Millisecond}, s, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop1 := run(t, n1)
	start := time.Now()
	checkMessages(t, readN(t, reader(t, k1), 3), "job1", trs1)
	waitUnsent(t, s, 0)
	t.Logf("backlog delivered %v after the broker came up", time.Since(start))

	// Phase 3: the broker goes away under a running notifier: it logs once, keeps running,
	// and marks nothing; when Kafka returns (a new cluster here), everything unsent goes out.
	h2 := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
	stop1()
	n2, err := notify.New(notify.Config{Brokers: k1.Brokers(), Interval: 50 * time.Millisecond}, s, slog.New(h2))
	if err != nil {
		t.Fatal(err)
	}
	stop2 := run(t, n2)
	time.Sleep(100 * time.Millisecond)
	if err := k1.Close(); err != nil {
		t.Fatal(err)
	}
	trs2 := createJob(t, s, "job2", time.Now())
	n2.Poke()
	time.Sleep(1500 * time.Millisecond)
	if got := unsent(t, s); got != 3 {
		t.Fatalf("%d unsent transitions after the broker died, want 3", got)
	}
	if errs, _ := h2.counts(); errs != 1 {
		t.Fatalf("%d error logs during one outage, want 1", errs)
	}
	stop2()

	k2 := devstack.TestKafka(t, topic)
	n3, err := notify.New(notify.Config{Brokers: k2.Brokers(), Interval: time.Hour}, s, quiet())
	if err != nil {
		t.Fatal(err)
	}
	run(t, n3)
	checkMessages(t, readN(t, reader(t, k2), 3), "job2", trs2)
	waitUnsent(t, s, 0)
}

// fakeOutbox is an Outbox whose store is down until healed.
type fakeOutbox struct {
	mu      sync.Mutex
	down    bool
	calls   int
	pending []*jobs.Job
	marked  []string
}

func (f *fakeOutbox) UnsentTransitions(ctx context.Context, olderThan time.Time, limit int) ([]*jobs.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return nil, errors.New("store down")
	}
	return f.pending, nil
}

func (f *fakeOutbox) MarkNotified(ctx context.Context, id string, transIDs ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tid := range transIDs {
		f.marked = append(f.marked, id+"/"+tid)
	}
	f.pending = nil
	return nil
}

// TestNotifierSurvivesStoreOutage: a failing outbox is retried with backoff (not in a hot
// loop), logged once, and the recovery is logged.
func TestNotifierSurvivesStoreOutage(t *testing.T) {
	k := devstack.TestKafka(t, topic)
	trs := []jobs.Transition{{State: job.Created, Time: time.Now(), TransID: "t"}}
	ob := &fakeOutbox{down: true, pending: []*jobs.Job{{ID: "j", Transitions: trs}}}
	h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
	n, err := notify.New(notify.Config{Brokers: k.Brokers(), Interval: 400 * time.Millisecond}, ob, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	run(t, n)
	time.Sleep(time.Second)
	ob.mu.Lock()
	calls := ob.calls
	ob.down = false
	ob.mu.Unlock()
	// Backoff 200 ms, 400 ms, 400 ms...: about 4 scans in a second, never a hot loop.
	if calls < 2 || calls > 8 {
		t.Fatalf("%d scans in one second of outage, want a handful", calls)
	}
	checkMessages(t, readN(t, reader(t, k), 1), "j", trs)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ob.mu.Lock()
		marked := len(ob.marked)
		ob.mu.Unlock()
		// The recovery is logged after the flush that marked the transition returned.
		if _, infos := h.counts(); marked == 1 && infos > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("transition not marked, or the recovery not logged, after recovery")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errs, infos := h.counts(); errs != 1 || infos != 1 {
		t.Fatalf("logged %d errors and %d infos, want one outage and one recovery", errs, infos)
	}
}

// TestSendOutage performs the admin re-send against a Kafka that hangs and one that refuses
// connections: Send answers within its timeout with Kafka named as unavailable.
func TestSendOutage(t *testing.T) {
	s := newStore(t)
	k := devstack.TestKafka(t, topic)
	hung, err := tcpproxy.New(k.Brokers()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	// Hanging from the start: the writer never learns the broker's own address.
	if err := hung.Set(tcpproxy.Hang); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"hang": hung.Addr(), "refuse": deadAddr(t)} {
		t.Run(name, func(t *testing.T) {
			n, err := notify.New(notify.Config{Brokers: []string{addr}, SendTimeout: time.Second}, s, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			start := time.Now()
			err = n.Send(t.Context(), "job1", jobs.Transition{State: job.Created, Time: time.Now(), TransID: "t1"})
			var ue *ctserr.UnavailableError
			if !errors.As(err, &ue) || ue.Dependency != ctserr.DependencyKafka {
				t.Fatalf("Send = %v, want Kafka unavailable", err)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Fatalf("Send took %s with a 1 s timeout", d)
			}
		})
	}
}
