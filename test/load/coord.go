package load

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// Coordinator is the cts-coordinator process of the benchmark.
type Coordinator struct {
	// Name is its name in the report ("coordinator").
	Name string
	// Addr is its listen address (kept across restarts) and URL its root URL.
	Addr, URL string

	bin     string
	config  string
	env     []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startCoordinator writes the coordinator's configuration (listening on addr) and starts it; it
// returns once it answers /healthz.
func startCoordinator(ctx context.Context, name, addr, bin, dir string, cfg map[string]any, env []string) (*Coordinator, error) {
	cfg["listen"] = addr
	if _, ok := cfg["service_url"]; !ok {
		cfg["service_url"] = "http://" + addr
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: configuration: %w", name, err)
	}
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	c := &Coordinator{Name: name, Addr: addr, URL: "http://" + addr, bin: bin, config: path, env: env,
		logPath: filepath.Join(dir, name+".log")}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Start starts the process (again, after Kill or Stop) and waits for /healthz.
func (c *Coordinator) Start(ctx context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, "-config", c.config)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", c.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(c.logPath)
			return fmt.Errorf("%s exited at start: %s", c.Name, tail(b, 3000))
		case <-ctx.Done():
			c.Kill()
			return ctx.Err()
		default:
		}
		resp, err := http.Get(c.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			c.Kill()
			return fmt.Errorf("%s did not answer /healthz within 2 minutes", c.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid is the current process's pid (0 when not running).
func (c *Coordinator) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Kill ends the process at once (SIGKILL), as a crash, and waits for it.
func (c *Coordinator) Kill() {
	c.signal(syscall.SIGKILL, 0)
}

// Stop ends the process gracefully (SIGTERM, SIGKILL after 30 s) and waits for it.
func (c *Coordinator) Stop() {
	c.signal(syscall.SIGTERM, 30*time.Second)
}

func (c *Coordinator) signal(sig syscall.Signal, grace time.Duration) {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// ReplicaName is the name the coordinator takes among the replicas when replicas.name is not
// set: "<host>:<port>".
func (c *Coordinator) ReplicaName() string {
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(c.Addr)
	return host + ":" + port
}

// Log returns the end of the coordinator's log.
func (c *Coordinator) Log(n int) string {
	b, _ := os.ReadFile(c.logPath)
	return tail(b, n)
}
