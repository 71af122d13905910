package load

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/test/demo"
)

// pinned returns a fleet URL function that sends container c's agent to replica c % n of s,
// bypassing the balancer, so a test knows which replica holds which agent.
func pinned(s **Site) func(string, int) string {
	return func(_ string, c int) string {
		cs := (*s).Coordinators
		return cs[c%len(cs)].URL
	}
}

// replicaAPI is a client of one replica, bypassing the balancer.
func replicaAPI(c *Coordinator) *demo.Client {
	return &demo.Client{URL: c.URL, HC: &http.Client{Timeout: time.Minute}}
}

// TestCancelAcrossReplicas: a cancel accepted by replica 0 reaches, within 2 s, the agents
// connected to replica 1, and the job ends canceled.
func TestCancelAcrossReplicas(t *testing.T) {
	var s *Site
	s = startTestSite(t, SiteOptions{Replicas: 2, Inputs: 4, Fleet: FleetConfig{URL: pinned(&s)}})
	id, err := s.Submit(t.Context(), 4, "replicas/cancel")
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, s, id, 4)
	at := time.Now()
	if err := replicaAPI(s.Coordinators[0]).Do(t.Context(), http.MethodPut, "/jobs/"+id+"/cancel", s.UserToken, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Poll generously; the bound is checked on the times the agents recorded.
	waitFor(t, 30*time.Second, "every agent told to cancel", func() bool {
		for _, a := range s.Fleet.JobAgents(id) {
			if a.CancelReceived().IsZero() {
				return false
			}
		}
		return true
	})
	for _, a := range s.Fleet.JobAgents(id) {
		d := a.CancelReceived().Sub(at)
		t.Logf("container %d (replica %d): cancel received %s after replica 0 accepted it", a.container, a.container%2, d.Round(time.Millisecond))
		if d > 2*time.Second {
			t.Errorf("container %d (replica %d) got the cancel %s after it was accepted by replica 0, bound 2 s", a.container, a.container%2, d)
		}
	}
	waitState(t, s, id, "canceled", time.Minute)
}

// TestLiveThroughAnyReplica: the live log lines and the transfer progress of a job whose
// agents are connected to both replicas are visible through each replica.
func TestLiveThroughAnyReplica(t *testing.T) {
	var s *Site
	s = startTestSite(t, SiteOptions{Replicas: 2, Inputs: 2,
		Fleet: FleetConfig{URL: pinned(&s), LogInterval: 300 * time.Millisecond}})
	id, err := s.Submit(t.Context(), 2, "replicas/live")
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, s, id, 2)
	for r, c := range s.Coordinators {
		api := replicaAPI(c)
		// Progress: both containers reported their download, one to each replica.
		waitFor(t, 30*time.Second, "progress of both containers through replica "+c.Name, func() bool {
			var p struct {
				Containers []struct {
					Container int `json:"container"`
				} `json:"containers"`
			}
			if err := api.Do(t.Context(), http.MethodGet, "/jobs/"+id+"/progress", s.UserToken, nil, &p); err != nil {
				t.Logf("progress through %s: %v", c.Name, err)
				return false
			}
			return len(p.Containers) == 2
		})
		// Live logs of the container whose agent is on the other replica.
		other := 1 - r
		if line := firstLiveLine(t, c.URL, id, other, s.UserToken); !strings.Contains(line, "of container") {
			t.Errorf("live log of container %d through %s: first line %q", other, c.Name, line)
		}
	}
	s.Fleet.Release(0)
	waitState(t, s, id, "complete", 2*time.Minute)
}

// firstLiveLine reads the live stdout of container c of job id through the replica at url
// until a data line arrives (30 s at most) and returns it.
func firstLiveLine(t *testing.T, url, id string, c int, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/jobs/"+id+"/log/"+strconv.Itoa(c)+"/stdout/live", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("live log of container %d through %s: %v", c, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live log of container %d through %s: %s", c, url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.TrimSpace(data) != "" {
			return data
		}
	}
	t.Fatalf("live log of container %d through %s: no line within 30 s (%v)", c, url, sc.Err())
	return ""
}

// TestReplicaKilledMidJob: two replicas behind the balancer; the one holding the submitter's
// lease is killed (SIGKILL) while jobs run. Its agents reconnect through the balancer to the
// other, which takes over every lease the dead one held within the lease's TTL; every job
// completes, including one submitted after the kill, and no event is lost.
func TestReplicaKilledMidJob(t *testing.T) {
	const ttl = 6 * time.Second
	s := startTestSite(t, SiteOptions{Replicas: 2, Inputs: 10, Fleet: FleetConfig{LogInterval: time.Second},
		Configure: func(cfg map[string]any) { cfg["replicas"] = map[string]any{"lease_ttl": ttl.String()} }})
	leases := leaseHolders(t, s)
	var ids []string
	for i := range 4 {
		id, err := s.Submit(t.Context(), 10, "replicas/kill/"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitFor(t, 3*time.Minute, "40 agents connected", func() bool { n, _ := s.Stats.Online(); return n == 40 })
	// Each loop runs on exactly one replica; kill the submitter's.
	held := map[string]holder{}
	waitFor(t, time.Minute, "the four loops' leases held", func() bool {
		held = leases()
		return len(held) == 4
	})
	victim, survivor := s.Coordinators[0], s.Coordinators[1]
	if held["submitter"].Name == survivor.ReplicaName() {
		victim, survivor = survivor, victim
	}
	t.Logf("leases by replica: %v; killing %s (%s)", held, victim.Name, victim.ReplicaName())
	killed := time.Now()
	victim.Kill()
	// A job submitted after the kill: the survivor takes over the submitter and runs it.
	id, err := s.Submit(t.Context(), 10, "replicas/kill/after")
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, id)
	waitFor(t, time.Minute, "every lease held by the surviving replica", func() bool {
		held = leases()
		for _, h := range held {
			if h.Name != survivor.ReplicaName() {
				return false
			}
		}
		return len(held) == 4
	})
	t.Logf("every lease on the survivor %s after the kill (TTL %s)", time.Since(killed).Round(100*time.Millisecond), ttl)
	waitFor(t, 3*time.Minute, "50 agents connected after the kill", func() bool { n, _ := s.Stats.Online(); return n == 50 })
	s.Fleet.Release(5 * time.Second)
	for _, id := range ids {
		waitState(t, s, id, "complete", 3*time.Minute)
	}
	led, err := s.Verify(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(led.Lost) > 0 || led.InFlight > 0 || led.Applied != led.Sent-led.Rejected-led.Killed {
		t.Errorf("events sent %d, rejected %d, killed %d, in flight %d, applied %d, lost %v",
			led.Sent, led.Rejected, led.Killed, led.InFlight, led.Applied, led.Lost)
	}
	if s.Stats.Reconnects.Load() == 0 {
		t.Error("no agent reconnected: none was connected to the killed replica")
	}
}

// holder is a lease's holder: a replica's name and its process's incarnation of it.
type holder struct {
	Name        string
	Incarnation int64
}

// leaseHolders returns a function reading the current leases of the site's replicas from
// MongoDB: the holder of each unexpired lease, by lease name.
func leaseHolders(t *testing.T, s *Site) func() map[string]holder {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.Stack.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	coll := c.Database("cdmtaskservice").Collection("leases")
	return func() map[string]holder {
		var docs []struct {
			Name        string    `bson:"_id"`
			Holder      string    `bson:"holder"`
			Incarnation int64     `bson:"incarnation"`
			Until       time.Time `bson:"until"`
		}
		cur, err := coll.Find(t.Context(), bson.D{})
		if err == nil {
			err = cur.All(t.Context(), &docs)
		}
		if err != nil {
			t.Logf("read leases: %v", err)
			return nil
		}
		out := map[string]holder{}
		for _, d := range docs {
			if d.Until.After(time.Now()) {
				out[d.Name] = holder{d.Holder, d.Incarnation}
			}
		}
		return out
	}
}

// TestRestartedCoordinatorResumesAtOnce: a single coordinator SIGKILLed and started again
// (same host and port, so the same replica name) takes over at once the leases its killed
// process held, and runs its periodic work again: a job submitted after the restart is
// submitted and completes, all well within the leases' TTL of 10 minutes, which the killed
// process's leases would otherwise have had to run out.
func TestRestartedCoordinatorResumesAtOnce(t *testing.T) {
	const ttl = 10 * time.Minute
	s := startTestSite(t, SiteOptions{Inputs: 1,
		Configure: func(cfg map[string]any) { cfg["replicas"] = map[string]any{"lease_ttl": ttl.String()} }})
	s.Fleet.Release(0)
	c := s.Coordinator
	leases := leaseHolders(t, s)
	held := map[string]holder{}
	waitFor(t, time.Minute, "the four loops' leases held", func() bool {
		held = leases()
		return len(held) == 4
	})
	before := held["submitter"]
	if before.Name != c.ReplicaName() {
		t.Fatalf("leases held by %v, want the replica name %q (host:port)", held, c.ReplicaName())
	}
	c.Kill()
	restarted := time.Now()
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Watch.Add(c.Name, c.Pid())
	id, err := s.Submit(t.Context(), 1, "replicas/restart")
	if err != nil {
		t.Fatal(err)
	}
	// Bounds far below the TTL, generous for a loaded machine.
	waitState(t, s, id, "complete", 3*time.Minute)
	t.Logf("a job submitted after the restart completed %s after it (lease TTL %s)", time.Since(restarted).Round(100*time.Millisecond), ttl)
	waitFor(t, time.Minute, "every lease held by the restarted process", func() bool {
		held = leases()
		for _, h := range held {
			if h.Name != before.Name || h.Incarnation <= before.Incarnation {
				return false
			}
		}
		return len(held) == 4
	})
}

// startTestSite starts a site for a test in its own folder; it is closed when the test ends
// (with the coordinators' logs in the test log when it failed).
func startTestSite(t *testing.T, o SiteOptions) *Site {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the embedded stack and coordinators")
	}
	o.Dir, o.Bin, o.Log = t.TempDir(), binDir(t), testLog{t}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	s, err := StartSite(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range s.Coordinators {
				t.Logf("%s log:\n%s", c.Name, c.Log(6000))
			}
		}
		s.Close()
	})
	return s
}

// waitFor polls cond every 100 ms until it holds, or fails the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitRunning waits until n agents of job id run.
func waitRunning(t *testing.T, s *Site, id string, n int) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d agents running", n), func() bool {
		running := 0
		for _, a := range s.Fleet.JobAgents(id) {
			a.mu.Lock()
			if a.running {
				running++
			}
			a.mu.Unlock()
		}
		return running == n
	})
}

// waitState polls job id until it is in state, or fails the test after within.
func waitState(t *testing.T, s *Site, id, state string, within time.Duration) {
	t.Helper()
	var last string
	deadline := time.Now().Add(within)
	for {
		st, err := s.State(t.Context(), id)
		if err == nil && st == state {
			return
		}
		last = fmt.Sprint(st, " ", err)
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s within %s (last: %s)", id, state, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
