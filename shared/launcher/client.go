package launcher

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kbase/cts/shared/launcher/internal/launcherpb"
)

// HostConfig says how to start a plugin process.
type HostConfig struct {
	// Path is the plugin executable.
	Path string
	// Args are its arguments.
	Args []string
	// Logger receives go-plugin's own logs, the plugin's log lines (at their levels) and
	// anything the plugin prints on stdout/stderr. Nil discards them.
	Logger *slog.Logger
	// Env is the plugin process's whole environment (NAME=value). The host's own environment
	// is NOT inherited, so the coordinator's secrets never reach a plugin; pass PATH, HOME and
	// what the plugin needs explicitly.
	Env []string
	// StartTimeout bounds the handshake (default 30 s; ctx's deadline if earlier).
	StartTimeout time.Duration
}

// process is what Client needs of the plugin process (go-plugin's *plugin.Client).
type process interface {
	Exited() bool
	Kill()
}

// Client is the host's Launcher: it forwards every call over gRPC to a plugin process and
// translates the answers back into this package's types and sentinels. It is safe for
// concurrent use. Calls on a client whose process has exited fail fast with an error wrapping
// ErrPluginExited (also when the process dies during the call).
type Client struct {
	rpc  launcherpb.LauncherClient
	proc process
	pid  int
	info Info
}

var (
	_ Launcher = (*Client)(nil)
	_ Cleaner  = (*Client)(nil)
)

// exitWait bounds how long a failed call waits for go-plugin to notice that the process died,
// to tell a dead plugin from a failed call.
const exitWait = 2 * time.Second

// Start starts the plugin at cfg.Path, performs the go-plugin handshake (gRPC only), and checks
// that the plugin implements APIVersion (else ErrIncompatible). ctx bounds the start; the
// process itself lives until Close (or until it dies). Start does not call Configure.
func Start(ctx context.Context, cfg HostConfig) (*Client, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("plugin_path", cfg.Path)
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = append([]string(nil), cfg.Env...)
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          PluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          true,
		SkipHostEnv:      true,
		StartTimeout:     timeout,
		Logger:           newHCLogger(logger, ""),
		SyncStdout:       &lineWriter{log: logger, stream: "stdout"},
		SyncStderr:       &lineWriter{log: logger, stream: "stderr"},
	})

	type result struct {
		raw any
		err error
	}
	done := make(chan result, 1)
	go func() {
		cp, err := pc.Client()
		if err != nil {
			done <- result{err: err}
			return
		}
		raw, err := cp.Dispense(pluginName)
		done <- result{raw: raw, err: err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		pc.Kill()
		<-done
		return nil, errorf("start "+cfg.Path, ctx.Err())
	}
	if res.err != nil {
		pc.Kill()
		return nil, errorf("start "+cfg.Path, res.err)
	}
	rpc, ok := res.raw.(launcherpb.LauncherClient)
	if !ok {
		pc.Kill()
		return nil, errorf("start "+cfg.Path, fmt.Errorf("dispensed %T, not a launcher client", res.raw))
	}
	pid := 0
	if rc := pc.ReattachConfig(); rc != nil {
		pid = rc.Pid
	} else if id, err := strconv.Atoi(pc.ID()); err == nil {
		pid = id
	}
	c := &Client{rpc: rpc, proc: pc, pid: pid}
	info, err := c.Info(ctx)
	if err != nil {
		c.Close()
		return nil, errorf("start "+cfg.Path, err)
	}
	if info.APIVersion != APIVersion {
		c.Close()
		return nil, errorf("start "+cfg.Path, fmt.Errorf("%w: plugin %q implements API version %d, host %d",
			ErrIncompatible, info.Name, info.APIVersion, APIVersion))
	}
	c.info = info
	return c, nil
}

// NewInProcessClient wraps a go-plugin gRPC client that has no process of its own, as made by
// plugin.TestPluginGRPCConn(t, false, PluginSet(impl)). It is for tests of plugins and of the
// host: the real gRPC path without a child process. Close closes the connection.
func NewInProcessClient(gc *plugin.GRPCClient) (*Client, error) {
	raw, err := gc.Dispense(pluginName)
	if err != nil {
		return nil, errorf("dispense", err)
	}
	rpc, ok := raw.(launcherpb.LauncherClient)
	if !ok {
		return nil, errorf("dispense", fmt.Errorf("dispensed %T, not a launcher client", raw))
	}
	return &Client{rpc: rpc, proc: &connProcess{gc: gc}}, nil
}

// connProcess stands in for a process when the plugin runs in-process.
type connProcess struct {
	gc     *plugin.GRPCClient
	mu     sync.Mutex
	closed bool
}

func (p *connProcess) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *connProcess) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		_ = p.gc.Close()
	}
}

// Close ends the plugin process (go-plugin asks it to stop, then kills it) and waits for it.
// It is safe to call more than once. A plugin's launched containers are not affected.
func (c *Client) Close() { c.proc.Kill() }

// Exited reports whether the plugin process has exited.
func (c *Client) Exited() bool { return c.proc.Exited() }

// Pid is the plugin process ID (0 when unknown or in-process).
func (c *Client) Pid() int { return c.pid }

// PluginInfo is the Info the plugin reported when it was started (zero for in-process clients).
func (c *Client) PluginInfo() Info { return c.info }

// call runs one RPC and translates its failure: a dead process becomes ErrPluginExited, a
// status the plugin sent becomes the matching sentinel, a transport failure of a live plugin
// becomes ErrUnavailable, and the caller's own cancellation stays ctx's error.
func (c *Client) call(ctx context.Context, op string, f func(context.Context) error) error {
	if c.proc.Exited() {
		return errorf(op, ErrPluginExited)
	}
	err := f(ctx)
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return errorf(op, ctxErr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return errorf(op, err)
	}
	if _, fromPlugin := sdkReason(st); fromPlugin {
		return errorf(op, fromStatus(st))
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.Internal, codes.Unknown:
		// A transport failure: either the process died or the connection broke.
		if c.waitExited(ctx) {
			return errorf(op, fmt.Errorf("%w: %s", ErrPluginExited, st.Message()))
		}
		if st.Code() == codes.Unavailable {
			return errorf(op, fmt.Errorf("%w: plugin connection: %s", ErrUnavailable, st.Message()))
		}
	}
	return errorf(op, fromStatus(st))
}

// waitExited waits up to exitWait for go-plugin to observe the process's exit.
func (c *Client) waitExited(ctx context.Context) bool {
	deadline := time.Now().Add(exitWait)
	for {
		if c.proc.Exited() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Info implements Launcher.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.call(ctx, "info", func(ctx context.Context) error {
		resp, err := c.rpc.Info(ctx, &launcherpb.InfoRequest{})
		if err != nil {
			return err
		}
		info = Info{Name: resp.GetName(), APIVersion: int(resp.GetApiVersion()), Capabilities: resp.GetCapabilities()}
		return nil
	})
	return info, err
}

// Configure implements Launcher.
func (c *Client) Configure(ctx context.Context, config []byte) error {
	return c.call(ctx, "configure", func(ctx context.Context) error {
		_, err := c.rpc.Configure(ctx, &launcherpb.ConfigureRequest{Config: config})
		return err
	})
}

// Submit implements Launcher. The request is validated here too, so a malformed one fails
// without a round trip.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (SubmitResponse, error) {
	if err := req.Validate(); err != nil {
		return SubmitResponse{}, errorf("submit", err)
	}
	var out SubmitResponse
	err := c.call(ctx, "submit", func(ctx context.Context) error {
		resp, err := c.rpc.Submit(ctx, submitToWire(req))
		if err != nil {
			return err
		}
		out = SubmitResponse{Handle: resp.GetHandle(), Existing: resp.GetExisting()}
		return nil
	})
	return out, err
}

// Status implements Launcher.
func (c *Client) Status(ctx context.Context, jobs []JobRef) ([]JobStatus, error) {
	req := &launcherpb.StatusRequest{Jobs: make([]*launcherpb.JobRef, len(jobs))}
	for i, j := range jobs {
		req.Jobs[i] = refToWire(j)
	}
	var out []JobStatus
	err := c.call(ctx, "status", func(ctx context.Context) error {
		resp, err := c.rpc.Status(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.GetJobs()) != len(jobs) {
			return fmt.Errorf("plugin returned %d statuses for %d jobs", len(resp.GetJobs()), len(jobs))
		}
		out = make([]JobStatus, len(jobs))
		for i, j := range resp.GetJobs() {
			out[i] = jobStatusFromWire(j)
		}
		return nil
	})
	return out, err
}

// Cancel implements Launcher.
func (c *Client) Cancel(ctx context.Context, ref JobRef) error {
	return c.call(ctx, "cancel", func(ctx context.Context) error {
		_, err := c.rpc.Cancel(ctx, &launcherpb.CancelRequest{Job: refToWire(ref)})
		return err
	})
}

// Cleanup implements Cleaner. A plugin without the capability gives an error wrapping
// errors.ErrUnsupported.
func (c *Client) Cleanup(ctx context.Context, ref JobRef) error {
	return c.call(ctx, "cleanup", func(ctx context.Context) error {
		_, err := c.rpc.Cleanup(ctx, &launcherpb.CleanupRequest{Job: refToWire(ref)})
		return err
	})
}

// lineWriter logs every complete line written to it; it is the host's SyncStdout/SyncStderr
// for what a plugin prints after Serve.
type lineWriter struct {
	log    *slog.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
}

// maxLine bounds a buffered partial line; a longer one is logged in pieces.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.Info(string(bytes.TrimRight(w.buf[:i], "\r")), "stream", w.stream)
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.log.Info(string(w.buf), "stream", w.stream)
		w.buf = nil
	}
	return len(p), nil
}
