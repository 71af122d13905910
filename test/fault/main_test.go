// Package fault runs whole jobs through the real system while things break: S3 answering 500s
// and dropping connections, the coordinator restarted under running agents, agents stopped by
// signals or killed. Like test/e2e it uses the embedded dev site (coordinator/devmode) with
// real agents running real containers under runc, so it needs root and runc.
package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/imagebuild"
)

var bins struct {
	agent, launcher, tool, testtool string
	err                             error
}

func TestMain(m *testing.M) {
	devstack.Main()
	code := func() int {
		dir, err := os.MkdirTemp("", "cts-fault-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bins.err = build(dir)
		return m.Run()
	}()
	os.Exit(code)
}

func build(dir string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	bins.agent = filepath.Join(dir, "cts-agent")
	bins.launcher = filepath.Join(dir, "cts-launcher-local")
	bins.tool = filepath.Join(dir, "cts-demo-tool")
	bins.testtool = filepath.Join(dir, "testtool")
	for _, b := range []struct{ out, pkg string }{
		{bins.agent, "./agent/cmd/cts-agent"},
		{bins.launcher, "./plugins/local/cmd/cts-launcher-local"},
		{bins.tool, "./test/demo/tool"},
		{bins.testtool, "./test/fault/tool"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

func requireEnv(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("fault tests run containers with runc and need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (scripts/install-deps.sh installs it)")
	}
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type site struct {
	env  *devmode.Env
	cfg  demo.Config
	api  *demo.Client
	logs *lockedBuffer
	log  *slog.Logger
}

// startSite starts a dev site; configure may adjust the coordinator configuration.
func startSite(t *testing.T, configure func(*app.Config)) *site {
	t.Helper()
	return startSiteWith(t, bins.agent, configure)
}

// startSiteWith starts a dev site whose launcher starts agentPath as the agent.
func startSiteWith(t *testing.T, agentPath string, configure func(*app.Config)) *site {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := devmode.Start(ctx, devmode.Options{
		Dir: t.TempDir(), AgentPath: agentPath, LauncherPath: bins.launcher, Log: log, Configure: configure,
	})
	if err != nil {
		t.Fatalf("start dev site: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("close dev site: %v", err)
		}
		if t.Failed() {
			t.Logf("coordinator log:\n%s", logs.String())
			dumpAgentLogs(t, env.Dir)
		}
	})
	cfg := demo.Config{
		URL: env.URL, UserToken: env.UserToken, AdminToken: env.AdminToken,
		S3Endpoint: env.Stack.S3.Endpoint, S3Access: env.Stack.S3.AccessKey, S3Secret: env.Stack.S3.SecretKey,
		S3Region: env.Stack.S3.Region, Registry: env.Stack.Registry.Host(), Bucket: devmode.DataBucket,
		Site: devmode.SiteName, ToolBinary: bins.tool, Containers: 2, Prefix: "fault", Timeout: 3 * time.Minute,
		Out: testWriter{t},
	}
	return &site{env: env, cfg: cfg, api: &demo.Client{URL: env.URL}, logs: logs, log: log}
}

// dumpAgentLogs logs the stderr of every agent the local launcher started.
func dumpAgentLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "agents", "*", "*", "*", "agent.err"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("%s:\n%s", f, b)
	}
}

// registerTestTool pushes an image whose entrypoint is test/fault/tool and registers it; jobs
// pass its sub-command as literal arguments.
func registerTestTool(t *testing.T, s *site) string {
	t.Helper()
	bin, err := os.ReadFile(bins.testtool)
	if err != nil {
		t.Fatal(err)
	}
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/usr/bin/testtool", Mode: 0o755, Data: bin}},
		[]string{"/usr/bin/testtool"}, []string{"PATH=/usr/bin:/bin"})
	if err != nil {
		t.Fatal(err)
	}
	ref := s.cfg.Registry + "/cts/testtool:fault"
	if _, err := imagebuild.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	if err := s.api.Do(t.Context(), "POST", "/admin/images/"+ref, s.cfg.AdminToken, map[string]any{}, nil); err != nil {
		t.Fatalf("register image: %v", err)
	}
	return ref
}

// putInput stores a small input object and returns its "bucket/key".
func putInput(t *testing.T, s *site, key, content string) string {
	t.Helper()
	if _, err := demo.PutWithCRC(t.Context(), s.env.Stack.S3.Client(), devmode.DataBucket, key, []byte(content)); err != nil {
		t.Fatal(err)
	}
	return devmode.DataBucket + "/" + key
}

// submitTool submits a one-container job running testtool with args.
func submitTool(t *testing.T, s *site, image, input string, args ...string) string {
	t.Helper()
	var a []any
	for _, x := range args {
		a = append(a, x)
	}
	var sub map[string]string
	if err := s.api.Do(t.Context(), "POST", "/jobs", s.cfg.UserToken, map[string]any{
		"cluster": devmode.SiteName, "image": image, "input_files": []string{input},
		"output_dir": "cts-data/fault/out", "num_containers": 1, "runtime": 600,
		"params": map[string]any{"args": a},
	}, &sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sub["job_id"]
}

func jobState(t *testing.T, s *site, id string) map[string]any {
	t.Helper()
	var j map[string]any
	if err := s.api.Do(context.Background(), "GET", "/admin/jobs/"+id, s.cfg.AdminToken, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// waitState polls until the job is in one of states (or terminal) and returns it.
func waitState(t *testing.T, s *site, id string, within time.Duration, states ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := jobState(t, s, id)
		st, _ := j["state"].(string)
		for _, w := range states {
			if st == w {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s after %s, want one of %v", id, st, within, states)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// subJobTransitions reads the sub-jobs' transition lists straight from the store.
func subJobTransitions(t *testing.T, s *site, id string) map[int][]string {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(s.env.Stack.Mongo.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	cur, err := c.Database(s.env.Config.Mongo.Database).Collection("subjobs").Find(t.Context(), bson.D{{Key: "id", Value: id}})
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
func agentPID(t *testing.T, s *site, id string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(s.env.Dir, "agents", id, "*", "0", "pid"))
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

// startupMillis measures, for the job's container 0, the agent's time from process start (the
// supervisor's record of when it started the agent) to the runtime starting the container
// ("container starting", logged once the image is present and job_submitted is reported),
// minus the download time the agent logs. An image pull shows up in it: run it on a job
// whose image the node already has.
func startupMillis(t *testing.T, s *site, id string) float64 {
	t.Helper()
	dir := filepath.Join(s.env.Dir, "agents", id)
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
