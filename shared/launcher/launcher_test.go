package launcher_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/kbase/cts/shared/launcher"
)

// fake is a Launcher whose answers the test sets. Only tests of this package use it.
type fake struct {
	mu        sync.Mutex
	err       error
	statuses  []launcher.JobStatus
	submitted []launcher.SubmitRequest
	apiVer    int
	log       *slog.Logger
}

func (f *fake) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fake) Info(context.Context) (launcher.Info, error) {
	v := f.apiVer
	if v == 0 {
		v = launcher.APIVersion
	}
	return launcher.Info{Name: "fake", APIVersion: v, Capabilities: []string{"secret=" + os.Getenv("CTS_LAUNCHER_TEST_SECRET")}}, f.fail()
}

// Configure doubles as a remote control when the fake runs as a plugin process.
func (f *fake) Configure(ctx context.Context, config []byte) error {
	switch cmd := string(config); {
	case cmd == "stdout":
		fmt.Println("hello on stdout")
	case cmd == "log":
		f.log.Warn("plugin warning", "job_id", "j1")
	case cmd == "exit":
		os.Exit(3)
	case cmd == "hang":
		<-ctx.Done()
		return ctx.Err()
	case strings.HasPrefix(cmd, "bad"):
		return fmt.Errorf("configure: %w: field x is wrong", launcher.ErrInvalidConfig)
	}
	return f.fail()
}

func (f *fake) Submit(_ context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	f.mu.Lock()
	f.submitted = append(f.submitted, req)
	f.mu.Unlock()
	if err := f.fail(); err != nil {
		return launcher.SubmitResponse{}, err
	}
	return launcher.SubmitResponse{Handle: "fake:" + req.JobID, Existing: req.Attempt > 0}, nil
}

func (f *fake) Status(_ context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.statuses != nil {
		return f.statuses, nil
	}
	return make([]launcher.JobStatus, len(refs)), nil
}

func (f *fake) Cancel(context.Context, launcher.JobRef) error { return f.fail() }

// cleaner is a fake with the Cleanup capability.
type cleaner struct{ *fake }

func (c cleaner) Cleanup(context.Context, launcher.JobRef) error { return c.fail() }

// TestMain lets the test binary run as a plugin process: Start(os.Args[0]) with
// CTS_LAUNCHER_TEST_PLUGIN set serves a fake.
func TestMain(m *testing.M) {
	switch os.Getenv("CTS_LAUNCHER_TEST_PLUGIN") {
	case "":
		os.Exit(m.Run())
	case "badversion":
		launcher.Serve(&fake{apiVer: launcher.APIVersion + 1})
	default:
		log := launcher.NewPluginLogger(os.Stderr, slog.LevelDebug)
		launcher.Serve(&fake{log: log})
	}
	os.Exit(0)
}

// inProcess connects a client to impl over real gRPC without a child process.
func inProcess(t *testing.T, impl launcher.Launcher) *launcher.Client {
	t.Helper()
	gc, _ := plugin.TestPluginGRPCConn(t, false, launcher.PluginSet(impl))
	c, err := launcher.NewInProcessClient(gc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestErrorsCrossTheWire(t *testing.T) {
	t.Parallel()
	sentinels := []error{
		launcher.ErrNotFound, launcher.ErrInvalidConfig, launcher.ErrInvalidRequest,
		launcher.ErrNotConfigured, launcher.ErrConflict, launcher.ErrUnavailable,
		errors.ErrUnsupported,
	}
	ref := launcher.JobRef{JobID: "j1", Handle: "h"}
	calls := map[string]func(context.Context, *launcher.Client) error{
		"info":      func(ctx context.Context, c *launcher.Client) error { _, err := c.Info(ctx); return err },
		"configure": func(ctx context.Context, c *launcher.Client) error { return c.Configure(ctx, []byte("{}")) },
		"submit": func(ctx context.Context, c *launcher.Client) error {
			_, err := c.Submit(ctx, launcher.SubmitRequest{JobID: "j1", Containers: 1})
			return err
		},
		"status": func(ctx context.Context, c *launcher.Client) error {
			_, err := c.Status(ctx, []launcher.JobRef{ref})
			return err
		},
		"cancel":  func(ctx context.Context, c *launcher.Client) error { return c.Cancel(ctx, ref) },
		"cleanup": func(ctx context.Context, c *launcher.Client) error { return c.Cleanup(ctx, ref) },
	}
	f := &fake{}
	c := inProcess(t, cleaner{f})
	for _, sentinel := range sentinels {
		for name, call := range calls {
			t.Run(name+"/"+sentinel.Error(), func(t *testing.T) {
				f.mu.Lock()
				f.err = fmt.Errorf("%s: %w: detail 42", name, sentinel)
				f.mu.Unlock()
				err := call(t.Context(), c)
				if !errors.Is(err, sentinel) {
					t.Fatalf("got %v, want it to wrap %v", err, sentinel)
				}
				for _, other := range sentinels {
					if other != sentinel && errors.Is(err, other) {
						t.Errorf("%v also matches %v", err, other)
					}
				}
				if !strings.Contains(err.Error(), "detail 42") || !strings.HasPrefix(err.Error(), "launcher "+name+": ") {
					t.Errorf("message %q lost the plugin's text or the prefix", err)
				}
				if errors.Is(err, launcher.ErrPluginExited) {
					t.Errorf("a failed call looks like a dead plugin: %v", err)
				}
			})
		}
	}
	t.Run("plain error", func(t *testing.T) {
		f.mu.Lock()
		f.err = errors.New("disk on fire")
		f.mu.Unlock()
		start := time.Now()
		err := c.Cancel(t.Context(), ref)
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("got %v", err)
		}
		for _, s := range append(sentinels, launcher.ErrPluginExited) {
			if errors.Is(err, s) {
				t.Errorf("plain error matches %v", s)
			}
		}
		if time.Since(start) > time.Second {
			t.Errorf("a plain error took %v (treated as a transport failure?)", time.Since(start))
		}
	})
}

func TestCleanupUnsupported(t *testing.T) {
	t.Parallel()
	c := inProcess(t, &fake{})
	err := c.Cleanup(t.Context(), launcher.JobRef{JobID: "j", Handle: "h"})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	zero, code := 0, 137
	started := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	want := []launcher.JobStatus{
		{JobID: "a", Containers: []launcher.ContainerStatus{
			{Container: 0, State: launcher.StateExited, ExitCode: &zero, Attempt: "x-0", Started: started, Ended: started.Add(time.Second)},
			{Container: 1, State: launcher.StateRemoved, ExitCode: &code, Reason: "killed by signal: killed", Attempt: "x-1"},
			{Container: 2, State: launcher.StateRunning, Started: started},
		}},
		{JobID: "b", Err: fmt.Errorf("job b: %w", launcher.ErrNotFound)},
	}
	f := &fake{statuses: want}
	c := inProcess(t, f)
	got, err := c.Status(t.Context(), []launcher.JobRef{{JobID: "a"}, {JobID: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d entries", len(got))
	}
	if !errors.Is(got[1].Err, launcher.ErrNotFound) || got[1].Err.Error() != "job b: not found" || got[1].Containers != nil {
		t.Errorf("entry b: %+v", got[1])
	}
	if got[0].Err != nil {
		t.Errorf("entry a error: %v", got[0].Err)
	}
	for i, w := range want[0].Containers {
		g := got[0].Containers[i]
		if !g.Started.Equal(w.Started) || !g.Ended.Equal(w.Ended) {
			t.Errorf("container %d times %v/%v, want %v/%v", i, g.Started, g.Ended, w.Started, w.Ended)
		}
		g.Started, g.Ended, w.Started, w.Ended = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("container %d: got %+v, want %+v", i, g, w)
		}
	}

	t.Run("wrong count is a plugin bug", func(t *testing.T) {
		_, err := c.Status(t.Context(), []launcher.JobRef{{JobID: "a"}})
		if err == nil || !strings.Contains(err.Error(), "plugin bug") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSubmitRoundTrip(t *testing.T) {
	t.Parallel()
	f := &fake{}
	c := inProcess(t, f)
	req := launcher.SubmitRequest{
		JobID: "job_1", Attempt: 2, Containers: 3, CPUs: 4, MemoryBytes: 5 << 30, RuntimeSeconds: 60.5,
		DiskBytes: 7, User: "u", BatchName: "b", Env: map[string]string{"JOB_ID": "job_1", "S3_URL": "http://s3"},
	}
	resp, err := c.Submit(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp != (launcher.SubmitResponse{Handle: "fake:job_1", Existing: true}) {
		t.Errorf("response %+v", resp)
	}
	if len(f.submitted) != 1 || !reflect.DeepEqual(f.submitted[0], req) {
		t.Errorf("plugin got %+v, want %+v", f.submitted, req)
	}
	// The client validates before sending: nothing reaches the plugin.
	if _, err := c.Submit(t.Context(), launcher.SubmitRequest{JobID: "a/b", Containers: 1}); !errors.Is(err, launcher.ErrInvalidRequest) {
		t.Errorf("bad job id: %v", err)
	}
	if len(f.submitted) != 1 {
		t.Errorf("an invalid request reached the plugin")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := launcher.SubmitRequest{JobID: "abc-DEF_1.2", Containers: 1, Env: map[string]string{"A": "b"}}
	cases := map[string]func(*launcher.SubmitRequest){
		"empty id":        func(r *launcher.SubmitRequest) { r.JobID = "" },
		"dot id":          func(r *launcher.SubmitRequest) { r.JobID = ".." },
		"slash id":        func(r *launcher.SubmitRequest) { r.JobID = "a/b" },
		"colon id":        func(r *launcher.SubmitRequest) { r.JobID = "a:b" },
		"long id":         func(r *launcher.SubmitRequest) { r.JobID = strings.Repeat("a", launcher.MaxJobIDLength+1) },
		"neg attempt":     func(r *launcher.SubmitRequest) { r.Attempt = -1 },
		"huge attempt":    func(r *launcher.SubmitRequest) { r.Attempt = 1 << 40 },
		"zero containers": func(r *launcher.SubmitRequest) { r.Containers = 0 },
		"many containers": func(r *launcher.SubmitRequest) { r.Containers = launcher.MaxContainers + 1 },
		"neg memory":      func(r *launcher.SubmitRequest) { r.MemoryBytes = -1 },
		"env name =":      func(r *launcher.SubmitRequest) { r.Env = map[string]string{"A=B": "c"} },
		"env empty name":  func(r *launcher.SubmitRequest) { r.Env = map[string]string{"": "c"} },
		"env NUL":         func(r *launcher.SubmitRequest) { r.Env = map[string]string{"A": "c\x00"} },
		"env reserved":    func(r *launcher.SubmitRequest) { r.Env = map[string]string{launcher.EnvAgentAttempt: "x"} },
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := ok
			mutate(&r)
			if err := r.Validate(); !errors.Is(err, launcher.ErrInvalidRequest) {
				t.Fatalf("got %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func FuzzValidateJobID(f *testing.F) {
	for _, s := range []string{"abc", "..", "a/b", ".hidden", "a\x00", "ü", strings.Repeat("x", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if launcher.ValidateJobID(id) != nil {
			return
		}
		if id == "" || id[0] == '.' || strings.ContainsAny(id, "/:\\\x00 ") || len(id) > launcher.MaxJobIDLength {
			t.Fatalf("accepted unsafe job id %q", id)
		}
	})
}

// capture is a slog handler that keeps records for inspection.
type capture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *capture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capture) WithGroup(string) slog.Handler      { return c }

// find waits up to 5 s for a record whose message contains msg.
func (c *capture) find(msg string) (slog.Record, bool) {
	for range 250 {
		c.mu.Lock()
		for _, r := range c.recs {
			if strings.Contains(r.Message, msg) {
				c.mu.Unlock()
				return r, true
			}
		}
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return slog.Record{}, false
}

func startSelf(t *testing.T, mode string, logs *capture) (*launcher.Client, error) {
	t.Helper()
	t.Setenv("CTS_LAUNCHER_TEST_SECRET", "host-secret")
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(logs)
	}
	c, err := launcher.Start(t.Context(), launcher.HostConfig{
		Path:   os.Args[0],
		Env:    []string{"CTS_LAUNCHER_TEST_PLUGIN=" + mode, "PATH=" + os.Getenv("PATH")},
		Logger: logger,
	})
	if c != nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

func TestPluginProcess(t *testing.T) {
	logs := &capture{}
	c, err := startSelf(t, "serve", logs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid() <= 0 || c.Exited() {
		t.Fatalf("pid %d exited %v", c.Pid(), c.Exited())
	}
	t.Run("host environment is not inherited", func(t *testing.T) {
		if caps := c.PluginInfo().Capabilities; len(caps) != 1 || caps[0] != "secret=" {
			t.Errorf("plugin saw the host's environment: %v", caps)
		}
	})
	t.Run("plugin stdout reaches the host log", func(t *testing.T) {
		if err := c.Configure(t.Context(), []byte("stdout")); err != nil {
			t.Fatal(err)
		}
		if _, ok := logs.find("hello on stdout"); !ok {
			t.Error("stdout line not logged")
		}
	})
	t.Run("plugin logs keep their level and fields", func(t *testing.T) {
		if err := c.Configure(t.Context(), []byte("log")); err != nil {
			t.Fatal(err)
		}
		r, ok := logs.find("plugin warning")
		if !ok {
			t.Fatal("plugin log line not relayed")
		}
		if r.Level != slog.LevelWarn {
			t.Errorf("level %v, want WARN", r.Level)
		}
		found := false
		r.Attrs(func(a slog.Attr) bool {
			found = found || (a.Key == "job_id" && a.Value.String() == "j1")
			return true
		})
		if !found {
			t.Error("job_id field lost")
		}
	})
	t.Run("sentinel from a process", func(t *testing.T) {
		if err := c.Configure(t.Context(), []byte("bad")); !errors.Is(err, launcher.ErrInvalidConfig) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("context ends a hung call", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		err := c.Configure(ctx, []byte("hang"))
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, launcher.ErrPluginExited) {
			t.Errorf("got %v, want DeadlineExceeded", err)
		}
	})
	t.Run("death during a call", func(t *testing.T) {
		start := time.Now()
		err := c.Configure(t.Context(), []byte("exit"))
		if !errors.Is(err, launcher.ErrPluginExited) {
			t.Fatalf("got %v, want ErrPluginExited", err)
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
		if _, err := c.Info(t.Context()); !errors.Is(err, launcher.ErrPluginExited) {
			t.Errorf("next call: %v", err)
		}
		c.Close() // idempotent after death
	})
}

func TestPluginKilled(t *testing.T) {
	c, err := startSelf(t, "serve", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(t.Context(), nil); !errors.Is(err, launcher.ErrPluginExited) {
		t.Fatalf("got %v, want ErrPluginExited", err)
	}
	if !c.Exited() {
		t.Error("Exited() false")
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("incompatible API version", func(t *testing.T) {
		_, err := startSelf(t, "badversion", nil)
		if !errors.Is(err, launcher.ErrIncompatible) {
			t.Fatalf("got %v, want ErrIncompatible", err)
		}
	})
	t.Run("not a plugin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := launcher.Start(ctx, launcher.HostConfig{Path: "/bin/true"})
		if err == nil {
			t.Fatal("started /bin/true as a plugin")
		}
	})
	t.Run("missing binary", func(t *testing.T) {
		_, err := launcher.Start(t.Context(), launcher.HostConfig{Path: "/nonexistent/plugin"})
		if err == nil {
			t.Fatal("no error")
		}
	})
}

// BenchmarkStatusRoundTrip measures the SDK's share of a batched Status: 100 jobs of 4
// containers over in-process gRPC, conversions and error mapping included.
func BenchmarkStatusRoundTrip(b *testing.B) {
	code := 0
	sts := make([]launcher.JobStatus, 100)
	refs := make([]launcher.JobRef, len(sts))
	for i := range sts {
		refs[i] = launcher.JobRef{JobID: fmt.Sprint("job", i), Handle: fmt.Sprint("h", i)}
		sts[i] = launcher.JobStatus{JobID: refs[i].JobID}
		for n := range 4 {
			sts[i].Containers = append(sts[i].Containers, launcher.ContainerStatus{
				Container: n, State: launcher.StateExited, ExitCode: &code, Attempt: "a", Started: time.Now(), Ended: time.Now(),
			})
		}
	}
	gc, _ := plugin.TestPluginGRPCConn(b, false, launcher.PluginSet(&fake{statuses: sts}))
	c, err := launcher.NewInProcessClient(gc)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Status(b.Context(), refs); err != nil {
			b.Fatal(err)
		}
	}
}
