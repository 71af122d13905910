package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/devstack/auth2"
)

// stackChildEnv marks the process started as the embedded stack's process (see Main).
const stackChildEnv = "CTS_LOAD_STACK_CHILD"

// Main must be called first in main() of the load benchmark and in TestMain of its tests.
// The benchmark runs the embedded stack (FerretDB behind its serialising proxy, Kafka, the
// registry, auth2; S3 in a child of its own) in a child process, so that the CPU and memory of
// the coordinator, the stack and the generator are measured apart: if this process is that
// child, Main runs the stack and never returns. Otherwise it returns at once.
func Main() {
	devstack.Main() // the S3 child of the stack child
	if os.Getenv(stackChildEnv) == "" {
		return
	}
	if err := runStackChild(); err != nil {
		fmt.Fprintln(os.Stderr, "load stack child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// stackRequest is what the parent sends the stack child (one JSON line on stdin).
type stackRequest struct {
	Dir     string       `json:"dir"`
	Buckets []string     `json:"buckets"`
	Users   []auth2.User `json:"users"`
	// Profile, when set, is a folder where the child writes its CPU profile over its whole
	// life (stack.cpu.pprof) and, every 2 s and at its end, the MongoDB proxy's counters
	// (mongo-stats.json).
	Profile string `json:"profile,omitempty"`
}

// StackInfo is where the stack's services listen (the child's one JSON line on stdout).
type StackInfo struct {
	MongoURI    string   `json:"mongo_uri"`
	Kafka       []string `json:"kafka"`
	S3Endpoint  string   `json:"s3_endpoint"`
	S3AccessKey string   `json:"s3_access_key"`
	S3SecretKey string   `json:"s3_secret_key"`
	S3Region    string   `json:"s3_region"`
	AuthURL     string   `json:"auth_url"`
	Registry    string   `json:"registry"`
}

func runStackChild() error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	var req stackRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return fmt.Errorf("read request: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	st, err := devstack.Start(ctx, devstack.Options{Dir: req.Dir, Buckets: req.Buckets, Users: req.Users})
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	if req.Profile != "" {
		stopProfile, err := profileStack(req.Profile, st.Mongo)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	info := StackInfo{
		MongoURI: st.Mongo.URI(), Kafka: st.Kafka.Brokers(), S3Endpoint: st.S3.Endpoint, S3AccessKey: st.S3.AccessKey,
		S3SecretKey: st.S3.SecretKey, S3Region: st.S3.Region, AuthURL: st.Auth.URL(), Registry: st.Registry.Host(),
	}
	b, _ := json.Marshal(info)
	if _, err := os.Stdout.Write(append(b, '\n')); err != nil {
		return err
	}
	// Until the parent closes stdin (or dies), or a signal.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, in); close(eof) }()
	select {
	case <-eof:
	case <-stop:
	}
	return nil
}

// stackProc is the running stack child.
type stackProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	info  StackInfo
	done  chan struct{}
}

// profileStack starts the stack child's CPU profile and the writer of its proxy's counters
// into dir; the function it returns stops both (writing the counters a last time).
func profileStack(dir string, m *devstack.Mongo) (func(), error) {
	f, err := os.Create(filepath.Join(dir, "stack.cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profile: %w", err)
	}
	write := func() {
		b, _ := json.Marshal(m.Stats())
		tmp := filepath.Join(dir, "mongo-stats.json.tmp")
		if os.WriteFile(tmp, b, 0o644) == nil {
			_ = os.Rename(tmp, filepath.Join(dir, "mongo-stats.json"))
		}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				write()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		write()
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// readMongoStats reads the counters the stack child last wrote into dir (profileStack).
func readMongoStats(dir string) (devstack.MongoStats, error) {
	var st devstack.MongoStats
	b, err := os.ReadFile(filepath.Join(dir, "mongo-stats.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// startStack starts the stack child with its state in dir and its log in dir/stack.log;
// profile, when set, is where it writes its CPU profile and proxy counters (profileStack).
func startStack(ctx context.Context, dir, profile string, users []auth2.User, buckets []string) (*stackProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "stack.log"))
	if err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), stackChildEnv+"=1")
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	p := &stackProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	req, _ := json.Marshal(stackRequest{Dir: filepath.Join(dir, "stack"), Buckets: buckets, Users: users, Profile: profile})
	if _, err := stdin.Write(append(req, '\n')); err != nil {
		p.stop()
		return nil, fmt.Errorf("start stack: %w", err)
	}
	lines := make(chan []byte, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadBytes('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		if err := json.Unmarshal(line, &p.info); err != nil || p.info.MongoURI == "" {
			p.stop()
			b, _ := os.ReadFile(filepath.Join(dir, "stack.log"))
			return nil, fmt.Errorf("start stack: no addresses from the stack process: %s", tail(b, 2000))
		}
	case <-ctx.Done():
		p.stop()
		return nil, fmt.Errorf("start stack: %w", ctx.Err())
	}
	return p, nil
}

// pids returns the stack process's pid and its S3 child's.
func (p *stackProc) pids() (stack, s3 int) {
	stack = p.cmd.Process.Pid
	return stack, firstChild(stack)
}

// stop ends the stack child (closing its stdin), waiting up to 30 s before killing it.
func (p *stackProc) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// firstChild returns a child process of pid (0 if none), from /proc/<pid>/task/*/children.
func firstChild(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				return n
			}
		}
	}
	return 0
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
