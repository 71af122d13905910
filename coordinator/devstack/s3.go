package devstack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"

	"github.com/kbase/cts/test/ports"
)

// s3ChildEnv marks a process started by StartS3 as the gateway child; Main looks for it.
const s3ChildEnv = "CTS_DEVSTACK_S3_CHILD"

const (
	s3Region       = "us-east-1"
	s3StartTimeout = 20 * time.Second
	s3StopTimeout  = 10 * time.Second
)

// s3ChildConfig is what the parent sends the child as one JSON line on its stdin (not in the
// environment, so the secret does not show in /proc/PID/environ).
type s3ChildConfig struct {
	DataDir   string `json:"data_dir"`
	MetaDir   string `json:"meta_dir"`
	Addr      string `json:"addr"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
	Region    string `json:"region"`
}

// Main must be called first in main() of any binary, and in TestMain of any test package,
// that starts the S3 server (StartS3, TestS3, Start, TestStack). If this process was started
// as the embedded S3 child process, Main runs the gateway and never returns (the process exits
// when the parent closes the child's stdin, dies, or sends SIGTERM/SIGINT); otherwise it
// returns immediately.
func Main() {
	if os.Getenv(s3ChildEnv) == "" {
		return
	}
	if err := runS3Child(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack s3 child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runS3Child is the child's whole life: read the config, serve until stdin reaches EOF or a
// termination signal arrives.
// s3ChildGrace is how long the S3 child lets in-flight requests finish once told to stop.
const s3ChildGrace = time.Second

func runS3Child() error {
	stdin := bufio.NewReader(os.Stdin)
	line, err := stdin.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg s3ChildConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// The parent holds our stdin open for as long as it wants the gateway: EOF means
		// Close was called or the parent is gone.
		_, _ = io.Copy(io.Discard, stdin)
		stop()
	}()
	go func() {
		// The gateway's graceful shutdown waits for every keep-alive connection a client
		// still holds, which can take long. Every acknowledged write is already on disk, so
		// after a short grace the child simply exits.
		<-ctx.Done()
		time.Sleep(s3ChildGrace)
		os.Exit(0)
	}()
	sc, err := meta.NewSideCar(cfg.MetaDir)
	if err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	// posix.New chdirs into DataDir: harmless here, this process does nothing else.
	be, err := posix.New(cfg.DataDir, sc, posix.PosixOpts{SideCarDir: cfg.MetaDir})
	if err != nil {
		return fmt.Errorf("posix backend: %w", err)
	}
	err = embedgw.RunVersityGW(ctx, be, &embedgw.Config{
		RootUserAccess:    cfg.AccessKey,
		RootUserSecret:    cfg.SecretKey,
		Region:            cfg.Region,
		Ports:             []string{cfg.Addr},
		MaxConnections:    1024,
		MaxRequests:       1024,
		MultipartMaxParts: 10000,
		Quiet:             true,
		KeepAlive:         true,
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// S3 is a versitygw S3 gateway (posix backend, sidecar metadata) running in a child process.
// It stores and verifies CRC64NVME checksums. Credentials are random per start.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Region    string

	cmd     *exec.Cmd
	port    *ports.Reservation // holds the address while the child runs, until Close
	stdin   io.WriteCloser
	stderr  *tailBuffer
	done    chan struct{} // closed once the child has exited; waitErr is set before
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// StartS3 starts the gateway with objects under dir/data and metadata under dir/meta (both
// created if missing), on a free 127.0.0.1 port outside the kernel's ephemeral range (or the
// At address when it is free), and waits until it answers ListBuckets. ctx bounds the start
// only; the gateway runs until Close. The process must call Main at the top of main or
// TestMain, since the child is this same executable.
//
// The root credentials are random on the first start in dir and kept in dir/credentials.json
// (mode 0600): S3 buckets belong to the credentials that created them, so a restart on the
// same dir must use the same ones.
func StartS3(ctx context.Context, dir string, opts ...Option) (*S3, error) {
	o := startOpts(opts)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start s3: %w", err)
	}
	cfg := s3ChildConfig{
		DataDir: filepath.Join(abs, "data"),
		MetaDir: filepath.Join(abs, "meta"),
		Region:  s3Region,
	}
	for _, d := range []string{cfg.DataDir, cfg.MetaDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("start s3: %w", err)
		}
	}
	if cfg.AccessKey, cfg.SecretKey, err = s3Credentials(abs); err != nil {
		return nil, fmt.Errorf("start s3: %w", err)
	}
	// The gateway binds its address itself, in the child: hold the address from now until
	// Close, so nothing can take it in between (a restarted gateway finds it again).
	port, err := reservePreferred(o.addr)
	if err != nil {
		return nil, fmt.Errorf("start s3: %w", err)
	}
	s, err := startS3Child(ctx, cfg, port)
	if err != nil {
		_ = port.Close()
		return nil, fmt.Errorf("start s3: %w", err)
	}
	return s, nil
}

// s3Credentials returns the root credentials kept in dir, making and saving them on the
// first start.
func s3Credentials(dir string) (access, secret string, err error) {
	path := filepath.Join(dir, "credentials.json")
	var c struct {
		AccessKey string `json:"access_key"`
		SecretKey string `json:"secret_key"`
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return "", "", fmt.Errorf("%s is damaged (remove the folder to start afresh)", path)
		}
		return c.AccessKey, c.SecretKey, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", "", err
	}
	c.AccessKey, c.SecretKey = randomHex(10), randomHex(20)
	b, _ = json.Marshal(c)
	if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return "", "", fmt.Errorf("save credentials: %w", err)
	}
	return c.AccessKey, c.SecretKey, nil
}

// startS3Child starts the gateway on the reserved address; the S3 it returns owns port (Close
// releases it), the caller still does when it fails.
func startS3Child(ctx context.Context, cfg s3ChildConfig, port *ports.Reservation) (*S3, error) {
	cfg.Addr = port.Addr()
	line, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The arguments matter only if the executable forgot to call Main: a test binary then
	// runs no test and exits (reported below) instead of recursing into the suite.
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), s3ChildEnv+"=1")
	cmd.SysProcAttr = childSysProcAttr()
	s := &S3{
		Endpoint:  "http://" + cfg.Addr,
		AccessKey: cfg.AccessKey,
		SecretKey: cfg.SecretKey,
		Region:    cfg.Region,
		cmd:       cmd,
		port:      port,
		stderr:    &tailBuffer{max: 16 << 10},
		done:      make(chan struct{}),
	}
	// The gateway prints a line to stdout that Quiet does not silence: keep it out of the
	// parent's stdout (which may be a CLI's output).
	cmd.Stdout = s.stderr
	cmd.Stderr = s.stderr
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", exe, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if _, err := s.stdin.Write(append(line, '\n')); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("send config to child: %w (child output: %s)", err, s.stderr)
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// waitReady polls until the gateway accepts a connection and answers ListBuckets.
func (s *S3) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s3StartTimeout)
	defer cancel()
	client := s.Client()
	addr := strings.TrimPrefix(s.Endpoint, "http://")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("s3 child exited before serving (%v); is devstack.Main called first in main/TestMain? child output: %s",
				s.waitErr, s.stderr)
		case <-ctx.Done():
			return fmt.Errorf("s3 not ready: %w (last error: %v; child output: %s)", ctx.Err(), lastErr, s.stderr)
		case <-tick.C:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			lastErr = err
			continue
		}
		_ = c.Close()
		reqCtx, reqCancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = client.ListBuckets(reqCtx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		reqCancel()
		if err == nil {
			return nil
		}
		lastErr = err
	}
}

// Client returns an aws-sdk-go-v2 S3 client for the gateway: path-style addressing, static
// credentials, and checksums computed or validated by the SDK only when an operation
// requires it (RequestChecksumCalculation and ResponseChecksumValidation WhenRequired), so
// the SDK's slow CRC stays off the data path unless a caller asks for it.
func (s *S3) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// CreateBucket creates a bucket; a bucket this gateway already owns is not an error.
func (s *S3) CreateBucket(ctx context.Context, name string) error {
	_, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "BucketAlreadyOwnedByYou" {
		return nil
	}
	if errors.As(err, &ae) && ae.ErrorCode() == "BucketAlreadyExists" {
		// Only a folder written by a version that did not keep its credentials gets here.
		return fmt.Errorf("create bucket %s: it exists but belongs to other S3 credentials than the ones kept in this folder: remove the folder to start afresh (make clean)", name)
	}
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// Close stops the child (closing its stdin; killing it if it has not exited within 10 s) and
// waits for it. It is idempotent.
func (s *S3) Close() error {
	s.closeOnce.Do(func() {
		// The port is released once the child is gone.
		defer s.port.Close()
		_ = s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(s3StopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.done
			s.closeErr = fmt.Errorf("close s3: child did not stop within %s and was killed; output: %s", s3StopTimeout, s.stderr)
			return
		}
		if s.waitErr != nil {
			s.closeErr = fmt.Errorf("close s3: child: %w; output: %s", s.waitErr, s.stderr)
		}
	})
	return s.closeErr
}

// TestS3 starts an S3 in tb.TempDir with the given buckets and closes it on tb.Cleanup; it
// calls tb.Fatal on error. The test binary's TestMain must call Main.
func TestS3(tb testing.TB, buckets ...string) *S3 {
	tb.Helper()
	s, err := StartS3(tb.Context(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	for _, b := range buckets {
		if err := s.CreateBucket(tb.Context(), b); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// tailBuffer keeps the last max bytes written to it; it is safe for concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output, trimmed, or "(none)".
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return "(none)"
	}
	return s
}
