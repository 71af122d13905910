package agentws_test

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// reader reads c's messages on a goroutine of its own (so the agent answers pings all the
// time, as cts-agent does) and hands them over.
func reader(t *testing.T, c *websocket.Conn) <-chan any {
	t.Helper()
	ch := make(chan any, 16)
	go func() {
		defer close(ch)
		for {
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			_, frame, err := c.ReadMessage()
			if err != nil {
				ch <- err
				return
			}
			m, err := protocol.Decode(frame)
			if err != nil {
				ch <- err
				return
			}
			ch <- m
		}
	}()
	return ch
}

func wantAck(t *testing.T, msgs <-chan any, seq int64) {
	t.Helper()
	select {
	case m := <-msgs:
		if a, ok := m.(*protocol.Ack); !ok || a.Seq != seq {
			t.Fatalf("got %T %+v, want the ack of %d", m, m, seq)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no ack of %d", seq)
	}
}

// A store slower than the read timeout is not a silent agent: the session, which reads
// nothing while it waits for the store, must not end with a read timeout once the store
// answers.
func TestSlowStoreKeepsSession(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	f := newFixture(t, agentws.Config{PingInterval: 40 * time.Millisecond, ReadTimeout: readTimeout})
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	f.svc.applyWait = func(ev protocol.Event) {
		if ev.Seq == 1 {
			<-gate
		}
	}
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	msgs := reader(t, c)
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	waitFor(t, func() bool { f.svc.mu.Lock(); defer f.svc.mu.Unlock(); return f.svc.applying == 1 }, "the event was not applied")
	time.Sleep(3 * readTimeout) // the store takes longer than the read timeout
	release()
	wantAck(t, msgs, 1)
	send(t, c, protocol.Event{Seq: 2, State: job.JobSubmitted})
	wantAck(t, msgs, 2)
}

// The heartbeats of the connected agents are the replica's presence record, rewritten every
// interval: no write per agent, no update of their sub-jobs (one update listing every agent
// was a scan of every sub-job on FerretDB). An agent that leaves before its container ended
// stays listed with the time it left, and its sub-job gets that time (a point write); one
// whose last event ended its container is dropped and costs nothing.
func TestHeartbeatsArePresence(t *testing.T) {
	f := newFixture(t, agentws.Config{PingInterval: 20 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond})
	const agents = 5
	conns := make([]*websocket.Conn, agents)
	msgs := make([]<-chan any, agents)
	for n := range agents {
		c := f.dialWith(t, f.credential("job1", n))
		h := hello
		h.Container = n
		send(t, c, h)
		assigned(t, c)
		conns[n], msgs[n] = c, reader(t, c)
	}
	waitFor(t, func() bool { return len(f.svc.lastPresence()) == agents }, "no record listed every connected agent")
	seen := map[string]bool{}
	for _, tc := range f.svc.lastPresence() {
		k := fmt.Sprint(tc.JobID, tc.Sub, tc.Attempt)
		if seen[k] || tc.JobID != "job1" || tc.Attempt != hello.Attempt || !tc.At.IsZero() {
			t.Fatalf("record %+v: a duplicate, a wrong agent, or a connected agent with a leave time", f.svc.lastPresence())
		}
		seen[k] = true
	}
	f.svc.mu.Lock()
	touched := f.svc.touches
	f.svc.mu.Unlock()
	if touched != 0 {
		t.Fatalf("%d sub-job heartbeats written for connected agents, want none", touched)
	}

	// Container 0 ends (its last event is complete), container 1's agent goes away running.
	send(t, conns[0], protocol.Event{Seq: 1, State: job.Complete})
	wantAck(t, msgs[0], 1)
	_ = conns[0].Close()
	_ = conns[1].Close()
	waitFor(t, func() bool {
		p := f.svc.lastPresence()
		connected, left := 0, 0
		for _, tc := range p {
			if tc.At.IsZero() {
				connected++
			} else if tc.Sub == 1 {
				left++
			}
		}
		return connected == agents-2 && left == 1 && len(p) == agents-1
	}, "the record does not list 3 connected agents and container 1's as gone")
	waitFor(t, func() bool { f.svc.mu.Lock(); defer f.svc.mu.Unlock(); return f.svc.touches == 1 }, "container 1's last contact was not written")
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if b := f.svc.batches[len(f.svc.batches)-1]; len(b) != 1 || b[0].Sub != 1 || b[0].At.IsZero() {
		t.Fatalf("touched %+v, want container 1 with the time it left", b)
	}
}

// An agent whose hello waits for its store work (behind a queue of events) is heard from: it
// counts as connected from its hello on. One refused at its hello leaves nothing behind.
func TestHelloWaitingIsHeardFrom(t *testing.T) {
	f := newFixture(t, agentws.Config{HeartbeatInterval: 50 * time.Millisecond})
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	f.svc.assignWait = func() { <-gate }
	c := f.dial(t)
	send(t, c, hello)
	waitFor(t, func() bool { return f.h.AgentConnected(hello.JobID, hello.Container, hello.Attempt) },
		"an agent waiting for its assignment does not count as connected")
	waitFor(t, func() bool { return len(f.svc.lastPresence()) == 1 }, "an agent waiting for its assignment is not recorded")
	release()
	assigned(t, c)

	// Refused at the hello: not connected afterwards, no record of its leaving, no write.
	f.svc.mu.Lock()
	f.svc.assignErr = ctserr.New(ctserr.CodeInvalidJobState, "Job job1 is complete")
	f.svc.mu.Unlock()
	c2 := f.dialWith(t, f.credential("job1", 2))
	h := hello
	h.Container = 2
	send(t, c2, h)
	if m, err := recv(t, c2); err != nil {
		t.Fatalf("refused agent: %v", err)
	} else if _, ok := m.(*protocol.Fatal); !ok {
		t.Fatalf("refused agent got %T, want Fatal", m)
	}
	waitFor(t, func() bool { return !f.h.AgentConnected("job1", 2, "") }, "a refused agent still counts as connected")
	time.Sleep(200 * time.Millisecond) // a few writes
	for _, tc := range f.svc.lastPresence() {
		if tc.Sub == 2 {
			t.Fatalf("the refused agent is in the record: %+v", f.svc.lastPresence())
		}
	}
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if f.svc.touches != 0 {
		t.Fatalf("%d heartbeats written for a refused agent", f.svc.touches)
	}
}

// Store work is bounded across sessions: with StoreWork 2, six agents' events are applied
// two at a time, and all of them are.
func TestStoreWorkBounded(t *testing.T) {
	f := newFixture(t, agentws.Config{StoreWork: 2})
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the fixture's: its Wait waits for the sessions
	f.svc.applyWait = func(protocol.Event) { <-gate }
	const agents = 6
	var all []<-chan any
	var conns []*websocket.Conn
	for n := range agents {
		c := f.dialWith(t, f.credential("job1", n))
		h := hello
		h.Container = n
		send(t, c, h)
		assigned(t, c)
		all = append(all, reader(t, c))
		conns = append(conns, c)
	}
	for _, c := range conns {
		send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	}
	waitFor(t, func() bool { f.svc.mu.Lock(); defer f.svc.mu.Unlock(); return f.svc.applying == 2 }, "two events were not applied at once")
	time.Sleep(300 * time.Millisecond) // room for more to start if the bound did not hold
	release()
	for _, msgs := range all {
		wantAck(t, msgs, 1)
	}
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if f.svc.maxApplying != 2 {
		t.Fatalf("%d events applied at once, want at most 2", f.svc.maxApplying)
	}
}

// An idle agent session must cost little memory: a coordinator holds thousands. Sessions
// read through the HTTP server's buffer and write through a shared pool, so the heap per
// session (both ends of the connection, in this process) stays well under the 32 KiB the
// two dedicated 16 KiB buffers alone cost before.
func TestIdleSessionMemory(t *testing.T) {
	const n = 200
	f := newFixture(t, agentws.Config{})
	dialer := websocket.Dialer{ReadBufferSize: 1024, WriteBufferPool: &sync.Pool{}}
	var stack0 uint64
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if stack0 == 0 {
			stack0 = m.StackInuse
		} else {
			t.Logf("goroutine stacks per idle session, both ends: %.1f KiB", float64(m.StackInuse-stack0)/n/1024)
		}
		return m.HeapAlloc
	}
	before := heap()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		h := hello
		h.Container = i
		c, resp, err := dialer.DialContext(t.Context(), f.url, http.Header{"Authorization": {"Bearer " + f.credential(h.JobID, i)}})
		if err != nil {
			t.Fatalf("dial %d: %v (%v)", i, err, resp)
		}
		t.Cleanup(func() { _ = c.Close() })
		send(t, c, h)
		assigned(t, c)
		conns[i] = c
	}
	waitFor(t, func() bool { return f.h.Connected() == n }, "not every session is open")
	per := float64(heap()-before) / n / 1024
	t.Logf("heap per idle session, both ends: %.1f KiB", per)
	if per > 28 {
		t.Errorf("an idle session costs %.1f KiB of heap, want at most 28 KiB", per)
	}
	runtime.KeepAlive(conns)
}

// The buffers are not a bound on a frame: a frame many times their size is read whole.
func TestLargeFrameThroughSmallBuffers(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	msgs := reader(t, c)
	lines := make([]string, 100)
	for i := range lines {
		lines[i] = fmt.Sprintf("%d %s", i, strings.Repeat("x", 3000))
	}
	send(t, c, protocol.Log{Stream: "stdout", Lines: lines})
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting, Outputs: bigOutputs(300)})
	wantAck(t, msgs, 1)
	got := f.h.Tail(hello.JobID, hello.Container)
	if len(got) != len(lines) || got[len(got)-1].Text != lines[len(lines)-1] {
		t.Fatalf("the live log has %d lines, want the frame's %d", len(got), len(lines))
	}
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if len(f.svc.events) != 1 || len(f.svc.events[0].Outputs) != 300 {
		t.Fatalf("applied %d events, want one with 300 outputs", len(f.svc.events))
	}
}

func bigOutputs(n int) []protocol.OutputFile {
	out := make([]protocol.OutputFile, n)
	for i := range out {
		out[i] = protocol.OutputFile{File: fmt.Sprintf("out/%s-%04d.txt", strings.Repeat("long-name", 10), i), CRC64NVME: "AAAAAAAAAAA="}
	}
	return out
}
