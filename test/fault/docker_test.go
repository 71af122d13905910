package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/test/dockertest"
	"github.com/kbase/cts/test/testsite"
)

// TestAgentKilledDuringDockerCreate kills an agent (SIGKILL) while the Docker engine creates
// its container, and lets the engine finish that create only after the agent is dead and its
// supervisor has begun cleaning up: the engine does not abandon a create whose client went
// away, so the container appears after every watcher of the agent may have looked. Nothing of
// the job may stay in the engine: the reap after the killed agent must wait for the in-flight
// create and remove what it made, not leave a never-started container to the next agent that
// happens to start on the node.
func TestAgentKilledDuringDockerCreate(t *testing.T) {
	testsite.RequireEnv(t)
	dockertest.Require(t)
	proxy := newHoldingProxy(t, dockertest.Socket)
	s := testsite.Start(t, testsite.Options{Runtime: "docker", Configure: func(cfg *app.Config) {
		cfg.Sites[0].PluginConfig["env"].(map[string]string)["CTS_AGENT_DOCKER_SOCKET"] = proxy.socket
	}})
	image := registerTestTool(t, s)
	in := s.PutInput(t, "fault/in/docker-create.txt", []byte("x\n"))
	id := submitTool(t, s, image, in, "sleep", "600")
	s.WaitState(t, id, 2*time.Minute, "job_submitted")
	pid := agentPID(t, s, id)
	select {
	case <-proxy.held:
	case <-time.After(3 * time.Minute):
		t.Fatal("the agent never asked the engine to create its container")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, pid)

	// Release the create once the supervisor's reap is under way: it says it waits for the
	// in-flight create, or (without that wait) it has already finished and the supervisor
	// recorded the agent's exit.
	dirs, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "0"))
	if len(dirs) != 1 {
		t.Fatalf("agent folders of job %s: %v", id, dirs)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		stderr, _ := os.ReadFile(filepath.Join(dirs[0], "agent.err"))
		_, exitErr := os.Stat(filepath.Join(dirs[0], "exit"))
		if bytes.Contains(stderr, []byte("create was in flight")) || exitErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the supervisor neither reaped nor recorded the killed agent's exit")
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(proxy.release)
	select {
	case status := <-proxy.created:
		t.Logf("the engine answered the held create after the agent died: HTTP %d", status)
	case <-time.After(3 * time.Minute):
		t.Fatal("the held create did not finish")
	}

	j := s.WaitState(t, id, 5*time.Minute, "error", "complete", "canceled")
	if j["state"] != "error" {
		t.Errorf("job ended %v after its agent was killed", j["state"])
	}
	prefix := "cts-" + id[:8] + "-"
	deadline = time.Now().Add(2 * time.Minute)
	for {
		names, err := dockertest.ContainerNames(context.Background(), dockertest.Socket, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers of job %s left in the engine: %v", id, names)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitNoWorkData(t, s, id)
}

// holdingProxy stands between agents and the Docker engine: it forwards every request, but
// holds the first container create until release is closed and then sends it to the engine
// on its own, as the engine goes on with a request whose client has gone.
type holdingProxy struct {
	socket  string
	held    chan struct{} // closed when the first create arrived
	release chan struct{} // close to send it on
	created chan int      // the engine's status for it
}

func newHoldingProxy(t *testing.T, engine string) *holdingProxy {
	t.Helper()
	p := &holdingProxy{socket: filepath.Join(t.TempDir(), "docker.sock"), held: make(chan struct{}),
		release: make(chan struct{}), created: make(chan int, 1)}
	ln, err := net.Listen("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", engine)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	var once sync.Once
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		first := false
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/containers/create") {
			once.Do(func() { first = true })
		}
		if first {
			close(p.held)
			<-p.release
			// The engine checks a create's bind sources first and then takes its time
			// (the root file system's layers): a create that had passed that check when
			// the agent's work folder went away still completes. Here the check comes
			// after the hold, so the folders are put back as they were at the check.
			var req struct {
				HostConfig struct{ Mounts []struct{ Source string } }
			}
			_ = json.Unmarshal(body, &req)
			for _, m := range req.HostConfig.Mounts {
				_ = os.MkdirAll(m.Source, 0o755)
			}
		}
		if r.Header.Get("Upgrade") != "" {
			hijackForward(w, r, body, dial)
			return
		}
		ctx := r.Context()
		if first {
			ctx = context.Background() // the agent is gone; the engine goes on
		}
		out, err := http.NewRequestWithContext(ctx, r.Method, "http://docker"+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if first {
			p.created <- resp.StatusCode
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
			}
			if err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		select {
		case <-p.release:
		default:
			close(p.release)
		}
		_ = srv.Close()
		tr.CloseIdleConnections()
	})
	return p
}

// hijackForward relays an upgraded request (attach) byte for byte in both directions.
func hijackForward(w http.ResponseWriter, r *http.Request, body []byte, dial func(context.Context) (net.Conn, error)) {
	up, err := dial(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "no hijack", http.StatusInternalServerError)
		return
	}
	down, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if err := r.Write(up); err != nil {
		up.Close()
		down.Close()
		return
	}
	go func() { _, _ = io.Copy(up, rw); up.Close() }()
	_, _ = io.Copy(down, up)
	down.Close()
}
