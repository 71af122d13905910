package testsite

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/dockertest"
	"github.com/kbase/cts/test/imagebuild"
)

// startTimeout bounds starting a dev site (the stack, the coordinator, the launcher plugin).
const startTimeout = time.Minute

// registerTimeout bounds building, pushing and registering the demo image.
const registerTimeout = time.Minute

// coordinatorTimeoutKey is the agents' bound on an unreachable coordinator; test sites set it
// to testCoordinatorTimeoutMin minutes unless the test sets it.
const (
	coordinatorTimeoutKey     = "CTS_AGENT_COORDINATOR_TIMEOUT_MIN"
	testCoordinatorTimeoutMin = "5"
)

// Options change the site Start starts; the zero value is a plain dev site.
type Options struct {
	// AgentPath is the program the launcher starts as the agent; "" is the built cts-agent.
	// Tests put a wrapper script here to break or measure the agent.
	AgentPath string
	// Configure, when set, may adjust the coordinator configuration before it starts (after
	// the HTCondor wiring, so it may override it).
	Configure func(*app.Config)
	// RegistryOptions configure the embedded registry (devstack.WithBlobTamper).
	RegistryOptions []devstack.RegistryOption
	// HTCondor serves the site with the htcondor launcher plugin over a mini-condor pool
	// (test/minicondor) instead of the local launcher.
	HTCondor bool
	// Runtime is the agents' container runtime, "oci" (when ""; crun where it can run, else
	// runc, as on the dev site), "runc", "crun" or "docker": tests pin it, never "auto", so a
	// Docker engine that happens to run does not change what they test.
	Runtime string
}

// Site is a running dev site, closed when the test ends.
type Site struct {
	// Env is the running dev environment: the stack, the coordinator, the dev users' tokens.
	Env *devmode.Env
	// Demo configures test/demo against this site: every connection field is set; Prefix,
	// Containers and Timeout are the caller's to set.
	Demo demo.Config
	// API is a client of the coordinator's HTTP API.
	API *demo.Client
	// Log is the coordinator's logger (restart the coordinator with it).
	Log *slog.Logger
	// Condor is the mini-condor pool behind the site (Options.HTCondor), else nil.
	Condor *Condor

	logs *lockedBuffer
}

// Start starts a dev site for t, skipping or failing t as RequireEnv does. The site is closed
// when t ends; if t failed, the coordinator's log and the agents' stderr are logged first.
func Start(t testing.TB, opts Options) *Site {
	t.Helper()
	bins := RequireEnv(t)
	if opts.AgentPath == "" {
		opts.AgentPath = bins.Agent
	}
	s := &Site{logs: &lockedBuffer{}}
	s.Log = slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	configure := opts.Configure
	if opts.HTCondor {
		s.Condor = newCondor(t, opts.AgentPath)
		configure = func(cfg *app.Config) {
			s.Condor.configure(cfg)
			if opts.Configure != nil {
				opts.Configure(cfg)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if opts.Runtime == "" {
		opts.Runtime = "oci"
	}
	if opts.Runtime == "docker" {
		dockertest.Require(t)
	}
	// Agents of a test whose process died (go test's timeout kills it without cleanups) give
	// up on the vanished coordinator within minutes, not the production 6 hours. A test's
	// Configure may set another bound.
	// siteDirs are the launchers' work folders outside the dev site's folder (a Configure may
	// point a site elsewhere): their agents are the site's too (EndProcesses below).
	var siteDirs []string
	withBound := func(cfg *app.Config) {
		if configure != nil {
			configure(cfg)
		}
		siteDirs = siteDirs[:0]
		for i := range cfg.Sites {
			if wd, ok := cfg.Sites[i].PluginConfig["work_dir"].(string); ok && filepath.IsAbs(wd) {
				siteDirs = append(siteDirs, wd)
			}
			if env, ok := cfg.Sites[i].PluginConfig["env"].(map[string]string); ok {
				if _, set := env[coordinatorTimeoutKey]; !set {
					env[coordinatorTimeoutKey] = testCoordinatorTimeoutMin
				}
			}
		}
	}
	env, err := devmode.Start(ctx, devmode.Options{
		Dir: t.TempDir(), AgentPath: opts.AgentPath, LauncherPath: bins.Launcher, Log: s.Log,
		Configure: withBound, RegistryOptions: opts.RegistryOptions, AgentRuntime: opts.Runtime,
	})
	if err != nil {
		t.Fatalf("start dev site: %v", err)
	}
	dirs := append([]string{env.Dir}, siteDirs...)
	if s.Condor != nil {
		dirs = append(dirs, filepath.Dir(s.Condor.StateDir))
	}
	t.Cleanup(func() {
		// The agents first, while the coordinator still takes their final reports.
		EndProcesses(t, dirs...)
		if err := env.Close(); err != nil {
			t.Errorf("close dev site: %v", err)
		}
		if t.Failed() {
			t.Logf("coordinator log:\n%s", s.Logs())
			dumpAgentLogs(t, env.Dir)
		}
	})
	s.Env = env
	s.API = &demo.Client{URL: env.URL}
	s.Demo = demo.Config{
		URL: env.URL, UserToken: env.UserToken, AdminToken: env.AdminToken,
		S3Endpoint: env.Stack.S3.Endpoint, S3Access: env.Stack.S3.AccessKey, S3Secret: env.Stack.S3.SecretKey,
		S3Region: env.Stack.S3.Region, Registry: env.Stack.Registry.Host(), Bucket: devmode.DataBucket,
		Site: devmode.SiteName, ToolBinary: bins.DemoTool, Out: testWriter{t},
	}
	return s
}

// Logs returns what the coordinator has logged so far (JSON lines).
func (s *Site) Logs() string { return s.logs.String() }

// dumpAgentLogs logs the end of the stderr of every agent the local launcher started.
func dumpAgentLogs(t testing.TB, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "agents", "*", "*", "*", "agent.err"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("%s:\n%s", f, b)
	}
}

// AdminJob returns the admin view of job id.
func (s *Site) AdminJob(t testing.TB, id string) map[string]any {
	t.Helper()
	var j map[string]any
	if err := s.API.Do(t.Context(), "GET", "/admin/jobs/"+id, s.Demo.AdminToken, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// WaitState polls the admin view of job id until its state is one of states and returns it;
// it fails t when that takes longer than within.
func (s *Site) WaitState(t testing.TB, id string, within time.Duration, states ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := s.AdminJob(t, id)
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

// RegisterDemo builds the demo image (test/demo: Demo.ToolBinary as its entrypoint, tagged
// with Demo.Prefix), pushes it, registers it and returns the reference jobs use.
func (s *Site) RegisterDemo(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), registerTimeout)
	defer cancel()
	image, err := demo.BuildAndRegister(ctx, s.Demo, s.API)
	if err != nil {
		t.Fatal(err)
	}
	return image
}

// PutInput stores data as key in the data bucket, with its CRC64/NVME, and returns the
// "bucket/key" jobs name it by.
func (s *Site) PutInput(t testing.TB, key string, data []byte) string {
	t.Helper()
	if _, err := demo.PutWithCRC(t.Context(), s.Env.Stack.S3.Client(), devmode.DataBucket, key, data); err != nil {
		t.Fatal(err)
	}
	return devmode.DataBucket + "/" + key
}

// PushTool pushes to the site's registry, as cts/testtool:tag, an image whose entrypoint is the
// binary bin (installed as /usr/bin/testtool, the tag in /etc/cts-test-tag), and returns its
// reference and digest.
func (s *Site) PushTool(t testing.TB, bin, tag string) (ref, digest string) {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The tag is in the image too: each tag is its own image (digest), which a site may
	// register beside the others.
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/usr/bin/testtool", Mode: 0o755, Data: data},
		{Path: "/etc/cts-test-tag", Mode: 0o644, Data: []byte(tag + "\n")}},
		[]string{"/usr/bin/testtool"}, []string{"PATH=/usr/bin:/bin"})
	if err != nil {
		t.Fatal(err)
	}
	ref = s.Demo.Registry + "/cts/testtool:" + tag
	if digest, err = imagebuild.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	return ref, digest
}

// RegisterTool is PushTool followed by registering the image with the coordinator; it returns
// the reference jobs use.
func (s *Site) RegisterTool(t testing.TB, bin, tag string) string {
	t.Helper()
	ref, _ := s.PushTool(t, bin, tag)
	if err := s.API.Do(t.Context(), "POST", "/admin/images/"+ref, s.Demo.AdminToken, nil, nil); err != nil {
		t.Fatalf("register image: %v", err)
	}
	return ref
}

// lockedBuffer is the coordinator's log: written by its goroutines, read by the test.
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

// testWriter sends test/demo's progress lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Containers lists the containers whose state lies under an OCI state root (a site's is
// <Env.Dir>/runc), whichever engine made them: the directories holding runc's state.json or
// crun's status, as `runc list` and `crun list` each find their own. A missing root holds none.
func Containers(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, e := range entries {
		for _, state := range []string{"state.json", "status"} {
			if _, err := os.Stat(filepath.Join(root, e.Name(), state)); err == nil {
				ids = append(ids, e.Name())
				break
			}
		}
	}
	return ids
}
