package container

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeEngine is the Docker Engine API as far as the docker runtime uses it, served on a
// unix socket. It checks our side of the protocol (paths, query parameters, request bodies);
// it says nothing about how a real engine behaves (see docs/agent.md).
type fakeEngine struct {
	t *testing.T

	mu      sync.Mutex
	calls   []string // "METHOD /path?query"
	created map[string]dockerCreate
	removed []string
	stopped chan struct{}
	images  map[string]bool

	// behaviour
	exitCode  int
	oom       bool
	oomEvent  bool // GET /events answers an "oom" event of the container
	stdout    string
	stderr    string
	blockWait bool   // wait returns only after a stop
	startErr  string // start answers 400 with this message
	pullErr   string // the pull stream carries this error
	list      []map[string]any
}

// socketPath is a path for a unix socket in a folder of its own with a short name: t.TempDir
// names its folder after the test, and a long subtest name makes the path longer than a
// socket address holds (108 bytes).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "docker.sock")
}

func newFakeEngine(t *testing.T) (*fakeEngine, *Docker) {
	t.Helper()
	f := &fakeEngine{t: t, created: map[string]dockerCreate{}, stopped: make(chan struct{}), images: map[string]bool{}}
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return f, NewDocker(DockerConfig{Socket: sock})
}

func (f *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	p, ok := strings.CutPrefix(r.URL.Path, "/"+dockerAPIVersion)
	if !ok {
		f.t.Errorf("request %s without the pinned API version", r.URL.Path)
		http.Error(w, "no version", 400)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+p+"?"+r.URL.RawQuery)
	f.mu.Unlock()
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case r.Method == "GET" && p == "/_ping":
		w.Header().Set("Api-Version", "1.43")
		fmt.Fprint(w, "OK")
	case r.Method == "GET" && strings.HasPrefix(p, "/images/") && strings.HasSuffix(p, "/json"):
		img := strings.TrimSuffix(strings.TrimPrefix(p, "/images/"), "/json")
		f.mu.Lock()
		have := f.images[img]
		f.mu.Unlock()
		if !have {
			fail(404, "no such image")
			return
		}
		fmt.Fprint(w, "{}")
	case r.Method == "POST" && p == "/images/create":
		q := r.URL.Query()
		fmt.Fprintln(w, `{"status":"Pulling from x"}`)
		if f.pullErr != "" {
			fmt.Fprintf(w, "{\"error\":%q,\"errorDetail\":{\"message\":%q}}\n", f.pullErr, f.pullErr)
			return
		}
		f.mu.Lock()
		f.images[q.Get("fromImage")+"@"+q.Get("tag")] = true
		f.mu.Unlock()
		fmt.Fprintln(w, `{"status":"Digest: sha256:..."}`)
	case r.Method == "POST" && p == "/containers/create":
		var body dockerCreate
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			fail(400, err.Error())
			return
		}
		name := r.URL.Query().Get("name")
		f.mu.Lock()
		_, dup := f.created[name]
		if !dup {
			f.created[name] = body
		}
		f.mu.Unlock()
		if dup {
			fail(409, "Conflict. The container name is already in use")
			return
		}
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"Id":"%s-id","Warnings":[]}`, name)
	case r.Method == "POST" && len(parts) == 3 && parts[2] == "start":
		if f.startErr != "" {
			fail(400, f.startErr)
			return
		}
		w.WriteHeader(204)
	case r.Method == "POST" && len(parts) == 3 && parts[2] == "attach":
		if r.Header.Get("Upgrade") != "tcp" || r.URL.Query().Get("stream") != "1" {
			f.t.Errorf("attach without upgrade or stream: %v %s", r.Header, r.URL.RawQuery)
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			f.t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprint(buf, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		frame := func(stream byte, s string) {
			var h [8]byte
			h[0] = stream
			binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
			_, _ = buf.Write(h[:])
			_, _ = buf.WriteString(s)
		}
		frame(1, f.stdout)
		frame(2, f.stderr)
		_ = buf.Flush()
	case r.Method == "POST" && len(parts) == 3 && parts[2] == "wait":
		if f.blockWait {
			select {
			case <-f.stopped:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, `{"StatusCode":%d}`, f.exitCode)
	case r.Method == "POST" && len(parts) == 3 && parts[2] == "stop":
		close(f.stopped)
		w.WriteHeader(204)
	case r.Method == "GET" && len(parts) == 3 && parts[2] == "json":
		fmt.Fprintf(w, `{"State":{"OOMKilled":%v,"ExitCode":%d}}`, f.oom, f.exitCode)
	case r.Method == "GET" && p == "/events":
		var filters map[string][]string
		if err := json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters); err != nil ||
			!slices.Equal(filters["event"], []string{"oom"}) || len(filters["container"]) != 1 {
			f.t.Errorf("events filters %q", r.URL.Query().Get("filters"))
		}
		if f.oomEvent {
			fmt.Fprintf(w, `{"status":"oom","id":%q,"Type":"container","Action":"oom"}`+"\n", filters["container"][0])
		}
	case r.Method == "DELETE" && len(parts) == 2:
		f.mu.Lock()
		f.removed = append(f.removed, parts[1])
		f.mu.Unlock()
		w.WriteHeader(204)
	case r.Method == "GET" && p == "/containers/json":
		_ = json.NewEncoder(w).Encode(f.list)
	default:
		f.t.Errorf("unexpected call %s %s", r.Method, p)
		fail(404, "page not found")
	}
}

func (f *fakeEngine) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func dockerSpec() Spec {
	return Spec{
		ID: "cts-job-1-abcd", Image: "reg.example/tool@sha256:" + strings.Repeat("a", 64),
		Command: []string{"/bin/tool", "--in", "/in"}, Env: []string{"A=1"},
		Mounts: []Mount{
			{Source: "/work/input", Destination: "/in", ReadOnly: true},
			{Source: "/work/output", Destination: "/out"},
			{Source: "/refdata/r1", Destination: "/ref", ReadOnly: true},
		},
		CPUs: 2, MemoryBytes: 1 << 30, KillGrace: 3 * time.Second,
	}
}

func TestDockerRunRequests(t *testing.T) {
	t.Parallel()
	f, d := newFakeEngine(t)
	f.exitCode, f.stdout, f.stderr = 3, "out line\n", "err line\n"
	var out, errb bytes.Buffer
	s := dockerSpec()
	s.Stdout, s.Stderr = &out, &errb
	res, err := d.Run(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.OOMKilled || res.TimedOut || res.Canceled {
		t.Errorf("result %+v", res)
	}
	if out.String() != "out line\n" || errb.String() != "err line\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	body := f.created[s.ID]
	hc := body.HostConfig
	checks := []struct {
		name string
		ok   bool
	}{
		{"image by digest", body.Image == s.Image},
		{"entrypoint is the full argv, no Cmd", slices.Equal(body.Entrypoint, s.Command) && len(body.Cmd) == 0},
		{"env", slices.Equal(body.Env, []string{"A=1"})},
		{"no tty, no stdin", !body.Tty && !body.OpenStdin},
		{"labels", body.Labels[DockerLabel] == "1" && strings.Count(body.Labels[DockerLabelOwner], "/") == 2},
		{"stop signal and timeout", body.StopSignal == "SIGTERM" && body.StopTimeout == 3},
		{"cap drop all", slices.Equal(hc.CapDrop, []string{"ALL"})},
		{"no new privileges and the seccomp profile", len(hc.SecurityOpt) == 2 && hc.SecurityOpt[0] == "no-new-privileges:true" &&
			strings.HasPrefix(hc.SecurityOpt[1], `seccomp={"defaultAction":"SCMP_ACT_ERRNO"`)},
		{"masked and read-only paths", slices.Equal(hc.MaskedPaths, maskedPaths) && slices.Equal(hc.ReadonlyPaths, readonlyPaths)},
		{"read-only root with the tmpfs /tmp", hc.ReadonlyRootfs && hc.Tmpfs["/tmp"] == "rw,nosuid,nodev,noexec,size=1073741824,mode=1777"},
		{"the engine keeps no log", hc.LogConfig.Type == "none"},
		{"network none by default", hc.NetworkMode == "none"},
		{"memory without swap", hc.Memory == 1<<30 && hc.MemorySwap == 1<<30},
		{"nano cpus", hc.NanoCPUs == 2e9},
		{"pids limit", hc.PidsLimit == DefaultPidsLimit},
		{"not privileged, not auto-removed", !hc.Privileged && !hc.AutoRemove},
		{"mounts", slices.Equal(hc.Mounts, []dockerMount{
			{Type: "bind", Source: "/work/input", Target: "/in", ReadOnly: true},
			{Type: "bind", Source: "/work/output", Target: "/out"},
			{Type: "bind", Source: "/refdata/r1", Target: "/ref", ReadOnly: true},
		})},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("create body: %s: %+v", c.name, body)
		}
	}
	calls := f.callList()
	want := []string{
		"POST /containers/create?name=" + s.ID,
		"POST /containers/" + s.ID + "/attach?stderr=1&stdout=1&stream=1",
		"POST /containers/" + s.ID + "/start?",
		"GET /containers/" + s.ID + "/json?",
		"DELETE /containers/" + s.ID + "?force=1&v=1",
	}
	for _, w := range want {
		if !slices.Contains(calls, w) {
			t.Errorf("missing call %q in %q", w, calls)
		}
	}
	if !slices.Contains(calls, "POST /containers/"+s.ID+"/wait?condition=not-running") {
		t.Errorf("no wait for not-running in %q", calls)
	}
}

func TestDockerRunOutcomes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		setup   func(f *fakeEngine, s *Spec)
		cancel  bool
		check   func(t *testing.T, res Result, err error)
		stopped bool
	}{
		{
			name:  "oom killed",
			setup: func(f *fakeEngine, s *Spec) { f.exitCode, f.oom = 137, true },
			check: func(t *testing.T, res Result, err error) {
				if err != nil || !res.OOMKilled || res.ExitCode != 137 {
					t.Errorf("res %+v err %v", res, err)
				}
			},
		},
		{
			// The engine's state missed the OOM (its OOM event came after the exit): the
			// recorded "oom" event still tells.
			name:  "oom killed, seen in the events only",
			setup: func(f *fakeEngine, s *Spec) { f.exitCode, f.oomEvent = 137, true },
			check: func(t *testing.T, res Result, err error) {
				if err != nil || !res.OOMKilled || res.ExitCode != 137 {
					t.Errorf("res %+v err %v", res, err)
				}
			},
		},
		{
			name:  "killed by someone else: no oom event",
			setup: func(f *fakeEngine, s *Spec) { f.exitCode = 137 },
			check: func(t *testing.T, res Result, err error) {
				if err != nil || res.OOMKilled || res.ExitCode != 137 {
					t.Errorf("res %+v err %v", res, err)
				}
			},
		},
		{
			name: "runtime exceeded: stop with the grace, then the exit",
			setup: func(f *fakeEngine, s *Spec) {
				f.blockWait, f.exitCode = true, 143
				s.Timeout = 50 * time.Millisecond
			},
			stopped: true,
			check: func(t *testing.T, res Result, err error) {
				if err != nil || !res.TimedOut || res.ExitCode != 143 {
					t.Errorf("res %+v err %v", res, err)
				}
			},
		},
		{
			name:    "canceled",
			setup:   func(f *fakeEngine, s *Spec) { f.blockWait = true },
			cancel:  true,
			stopped: true,
			check: func(t *testing.T, res Result, err error) {
				if err != nil || !res.Canceled {
					t.Errorf("res %+v err %v", res, err)
				}
			},
		},
		{
			name: "start failure is a StartError",
			setup: func(f *fakeEngine, s *Spec) {
				f.startErr = "exec: \"/bin/tool\": stat /bin/tool: no such file or directory"
			},
			check: func(t *testing.T, res Result, err error) {
				var se *StartError
				if !errors.As(err, &se) || !strings.Contains(se.Message, "no such file") {
					t.Errorf("err %v, want a StartError", err)
				}
			},
		},
		{
			name:  "host network",
			setup: func(f *fakeEngine, s *Spec) { s.Network = NetworkHost },
			check: func(t *testing.T, res Result, err error) {
				if err != nil {
					t.Error(err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, d := newFakeEngine(t)
			s := dockerSpec()
			tc.setup(f, &s)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				go func() { time.Sleep(50 * time.Millisecond); cancel() }()
			}
			res, err := d.Run(ctx, s)
			tc.check(t, res, err)
			calls := f.callList()
			if got := slices.Contains(calls, "POST /containers/"+s.ID+"/stop?t=3"); got != tc.stopped {
				t.Errorf("stop called %v, want %v: %q", got, tc.stopped, calls)
			}
			if !slices.Equal(f.removed, []string{s.ID}) {
				t.Errorf("removed %q: the container must always be removed", f.removed)
			}
			if s.Network == NetworkHost && f.created[s.ID].HostConfig.NetworkMode != "host" {
				t.Errorf("network mode %q", f.created[s.ID].HostConfig.NetworkMode)
			}
		})
	}
}

func TestDockerPull(t *testing.T) {
	t.Parallel()
	img := "reg.example/tool@sha256:" + strings.Repeat("b", 64)
	t.Run("pulls by digest", func(t *testing.T) {
		t.Parallel()
		f, d := newFakeEngine(t)
		if err := d.Pull(t.Context(), img); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(f.callList(), "POST /images/create?fromImage=reg.example%2Ftool&tag=sha256%3A"+strings.Repeat("b", 64)) {
			t.Errorf("calls %q", f.callList())
		}
		n := len(f.callList())
		if err := d.Pull(t.Context(), img); err != nil || len(f.callList()) != n+1 {
			t.Errorf("second pull: %v, %d calls (want only the lookup)", err, len(f.callList())-n)
		}
	})
	t.Run("error in the progress stream", func(t *testing.T) {
		t.Parallel()
		f, d := newFakeEngine(t)
		f.pullErr = "manifest unknown"
		if err := d.Pull(t.Context(), img); err == nil || !strings.Contains(err.Error(), "manifest unknown") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("tag only is refused", func(t *testing.T) {
		t.Parallel()
		_, d := newFakeEngine(t)
		if err := d.Pull(t.Context(), "reg.example/tool:latest"); !errors.Is(err, ErrNotPinned) {
			t.Errorf("err %v", err)
		}
	})
}

func TestDockerReapOnlyDeadOwners(t *testing.T) {
	t.Parallel()
	f, d := newFakeEngine(t)
	host, _ := os.Hostname()
	f.list = []map[string]any{
		{"Id": "live", "Names": []string{"/a"}, "Labels": map[string]string{DockerLabel: "1", DockerLabelOwner: ownerID(os.Getpid())}},
		{"Id": "dead", "Names": []string{"/b"}, "Labels": map[string]string{DockerLabel: "1", DockerLabelOwner: host + "/999999999/1"}},
		{"Id": "reused", "Names": []string{"/c"}, "Labels": map[string]string{DockerLabel: "1", DockerLabelOwner: fmt.Sprintf("%s/%d/1", host, os.Getpid())}},
		{"Id": "elsewhere", "Names": []string{"/d"}, "Labels": map[string]string{DockerLabel: "1", DockerLabelOwner: "other-host/1/1"}},
	}
	if _, err := d.Reap(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	slices.Sort(f.removed)
	if !slices.Equal(f.removed, []string{"dead", "reused"}) {
		t.Errorf("removed %q, want the dead owner's and the reused pid's", f.removed)
	}
	if !slices.Contains(f.callList(), `GET /containers/json?all=1&filters=%7B%22label%22%3A%5B%22org.kbase.cts.agent%22%5D%7D`) {
		t.Errorf("list call %q", f.callList())
	}
}

func TestDemux(t *testing.T) {
	t.Parallel()
	var in bytes.Buffer
	for _, fr := range []struct {
		s byte
		p string
	}{{1, "a"}, {2, "bb"}, {1, "ccc"}, {2, ""}} {
		var h [8]byte
		h[0] = fr.s
		binary.BigEndian.PutUint32(h[4:], uint32(len(fr.p)))
		in.Write(h[:])
		in.WriteString(fr.p)
	}
	var o, e bytes.Buffer
	if err := demux(&in, &o, &e); err != nil || o.String() != "accc" || e.String() != "bb" {
		t.Errorf("stdout %q stderr %q err %v", o.String(), e.String(), err)
	}
	if err := demux(bytes.NewReader([]byte{1, 0, 0, 0, 0, 0, 0, 9, 'x'}), &o, &e); err == nil {
		t.Error("a truncated frame was accepted")
	}
}

// TestDockerDeadSocket: with no engine behind the socket every call says the runtime is not
// available (ErrEngineUnavailable, naming the socket), and nothing runs.
func TestDockerDeadSocket(t *testing.T) {
	t.Parallel()
	sock := socketPath(t) // nothing listens here
	d := NewDocker(DockerConfig{Socket: sock})
	s := dockerSpec()
	checks := map[string]error{}
	checks["pull"] = d.Pull(t.Context(), s.Image)
	_, checks["run"] = d.Run(t.Context(), s)
	_, checks["reap"] = d.Reap(t.Context(), false)
	checks["remove"] = d.Remove(t.Context(), s.ID)
	for name, err := range checks {
		if !errors.Is(err, ErrEngineUnavailable) || !strings.Contains(err.Error(), sock) {
			t.Errorf("%s: %v, want ErrEngineUnavailable naming %s", name, err, sock)
		}
	}
	if d.Known(t.Context(), s.ID) {
		t.Error("a dead engine knows a container")
	}
}
