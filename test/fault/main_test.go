// Package fault runs whole jobs through the real system while things break: S3 answering 500s
// and dropping connections, the coordinator restarted under running agents, agents stopped by
// signals or killed. Like test/e2e it uses the embedded dev site (coordinator/devmode) with
// real agents running real containers under runc, so it needs root and runc.
package fault

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/testsite"
)

func TestMain(m *testing.M) { testsite.Main(m) }

// startSite starts a dev site; configure may adjust the coordinator configuration.
func startSite(t *testing.T, configure func(*app.Config)) *testsite.Site {
	t.Helper()
	return startSiteWith(t, "", configure)
}

// startSiteWith starts a dev site whose launcher starts agentPath as the agent.
func startSiteWith(t *testing.T, agentPath string, configure func(*app.Config)) *testsite.Site {
	t.Helper()
	s := testsite.Start(t, testsite.Options{AgentPath: agentPath, Configure: configure})
	s.Demo.Containers, s.Demo.Prefix, s.Demo.Timeout = 2, "fault", 3*time.Minute
	return s
}

// registerTestTool pushes an image whose entrypoint is test/fault/tool and registers it; jobs
// pass its sub-command as literal arguments.
func registerTestTool(t *testing.T, s *testsite.Site) string {
	t.Helper()
	return s.RegisterTool(t, testsite.Binary(t, "./test/fault/tool"), "fault")
}

// submitTool submits a one-container job running testtool with args.
func submitTool(t *testing.T, s *testsite.Site, image, input string, args ...string) string {
	t.Helper()
	var a []any
	for _, x := range args {
		a = append(a, x)
	}
	var sub map[string]string
	if err := s.API.Do(t.Context(), "POST", "/jobs", s.Demo.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": []string{input},
		"output_dir": "cts-data/fault/out", "num_containers": 1, "runtime": 600,
		// The tool copies files of up to 256 MiB: the page cache it fills is charged to the
		// container's memory cgroup, so the default 10 MB limit would make that an OOM race.
		"memory": "512MB",
		"params": map[string]any{"args": a},
	}, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sub["job_id"]
}

// subJobTransitions reads the sub-jobs' transition lists straight from the store.
func subJobTransitions(t *testing.T, s *testsite.Site, id string) map[int][]string {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.Env.Stack.Mongo.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	cur, err := c.Database(s.Env.Config.Mongo.Database).Collection("subjobs").Find(t.Context(), bson.D{{Key: "id", Value: id}})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		SubID       int `bson:"sub_id"`
		Transitions []struct {
			State string `bson:"state"`
		} `bson:"transition_times"`
	}
	if err := cur.All(t.Context(), &docs); err != nil {
		t.Fatal(err)
	}
	out := map[int][]string{}
	for _, d := range docs {
		for _, tr := range d.Transitions {
			out[d.SubID] = append(out[d.SubID], tr.State)
		}
	}
	return out
}

// agentPID returns the pid of the agent of the job's container 0, as the local launcher's
// supervisor recorded it.
func agentPID(t *testing.T, s *testsite.Site, id string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "0", "pid"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			var rec struct {
				PID int `json:"pid"`
			}
			if err == nil && json.Unmarshal(b, &rec) == nil && rec.PID > 0 {
				return rec.PID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent pid for job %s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitOutput waits until container 0 of job id has written want to its stdout (the agent's
// log file in its work directory): the program runs and, for the fault tool, has installed
// its signal handling.
func waitOutput(t *testing.T, s *testsite.Site, id, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		files, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "0", "container-0-stdout.txt"))
		if len(files) == 1 {
			if b, _ := os.ReadFile(files[0]); strings.Contains(string(b), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container 0 of job %s never wrote %q", id, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startupMillis measures, for the job's container 0, the agent's time from process start (the
// supervisor's record of when it started the agent) to the runtime starting the container
// ("container starting", logged once the image is present and job_submitted is reported),
// minus the download time the agent logs. An image pull shows up in it: run it on a job
// whose image the node already has.
func startupMillis(t *testing.T, s *testsite.Site, id string) float64 {
	t.Helper()
	dir := filepath.Join(s.Env.Dir, "agents", id)
	pids, _ := filepath.Glob(filepath.Join(dir, "*", "0", "pid"))
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "0", "agent.err"))
	if len(pids) != 1 || len(logs) != 1 {
		t.Fatalf("agent records of job %s not found", id)
	}
	var rec struct {
		Started time.Time `json:"started"`
	}
	b, err := os.ReadFile(pids[0])
	if err != nil || json.Unmarshal(b, &rec) != nil {
		t.Fatalf("pid record %s: %v", pids[0], err)
	}
	b, err = os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	var starting time.Time
	var download float64
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			Time    time.Time `json:"time"`
			Msg     string    `json:"msg"`
			Seconds float64   `json:"seconds"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l.Msg {
		case "inputs downloaded and verified":
			download = l.Seconds
		case "container starting":
			starting = l.Time
		}
	}
	if starting.IsZero() {
		t.Fatalf("no container start in %s", logs[0])
	}
	return float64(starting.Sub(rec.Started).Microseconds())/1000 - download*1000
}
