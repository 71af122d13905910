package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// The `docker` runtime drives the Docker Engine API (what KBase worker nodes have) over its
// unix socket with plain net/http: no Docker SDK, whose dependency tree is larger than the
// agent. It applies the confinement of hardening.go, the same as `oci`: the same seccomp
// profile (sent inline), no capability, no new privileges, the same masked and read-only
// paths, a read-only root file system with the same tmpfs /tmp, read-only input and refdata
// mounts, memory / CPU / pids limits, network none or host. The job's runtime is enforced
// with the engine's own stop (TERM, grace, KILL), OOM kills are read from the container's
// state, and the container is always removed. Docker verifies the blobs of a pull by digest
// itself.
//
// The container's output is read through an attach opened before the start (nothing is
// missed) and the engine keeps no copy of it (log driver "none"): a container writing
// gigabytes fills neither the engine's disk nor the agent's memory, and the agent's own
// bound on the log files applies.
//
// Containers carry labels naming their owner (DockerLabelOwner: host, pid and process start
// time of the agent), so that Reap removes only the containers of agents that are gone.

// Labels the docker runtime puts on its containers.
const (
	// DockerLabel marks every container the agent creates.
	DockerLabel = "org.kbase.cts.agent"
	// DockerLabelOwner is "<hostname>/<pid>/<process start time in clock ticks>".
	DockerLabelOwner = "org.kbase.cts.owner"
)

// DefaultDockerSocket is where the Docker Engine listens on a standard install.
const DefaultDockerSocket = "/var/run/docker.sock"

// dockerAPIVersion pins the Engine API version (Docker 20.10 and later speak it), so the
// request and response shapes below do not drift with the engine.
const dockerAPIVersion = "v1.41"

// DockerConfig configures the docker runtime.
type DockerConfig struct {
	// Socket is the Engine's unix socket (DefaultDockerSocket when empty).
	Socket string
	// TmpfsBytes sizes the container's /tmp (DefaultTmpfsBytes when 0).
	TmpfsBytes int64
	// StateDir holds the records of the images agents pulled (the node's CTS_AGENT_NODE_DIR);
	// without it nothing is recorded and PruneImages removes nothing.
	StateDir string
	// Logger receives notes. Discarded when nil.
	Logger *slog.Logger
}

// Docker is the `docker` Runtime.
type Docker struct {
	cfg   DockerConfig
	hc    *http.Client
	log   *slog.Logger
	owner string

	// held are the use locks of the images this runtime pulled (see docker_images.go).
	heldMu sync.Mutex
	held   map[string]func()
}

var _ Runtime = (*Docker)(nil)

// NewDocker returns the docker runtime. It does not contact the engine: Ping does.
func NewDocker(cfg DockerConfig) *Docker {
	if cfg.Socket == "" {
		cfg.Socket = DefaultDockerSocket
	}
	if cfg.TmpfsBytes <= 0 {
		cfg.TmpfsBytes = DefaultTmpfsBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sock := cfg.Socket
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}
	return &Docker{cfg: cfg, hc: &http.Client{Transport: tr}, log: log, owner: ownerID(os.Getpid()), held: map[string]func(){}}
}

// ownerID names a live process robustly against pid reuse: host, pid and its start time.
func ownerID(pid int) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, pid, procStart(pid))
}

// procStart returns field 22 of /proc/<pid>/stat (start time in clock ticks since boot), ""
// when the process does not exist or is dead: a zombie (state Z or X) has exited, whoever has
// not reaped it yet.
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may contain spaces: skip past it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return ""
	}
	return f[19] // fields 3.. start at index 0, so field 22 is index 19
}

// ownerAlive reports whether the owner label names a live agent. An owner on another host
// name (another pid namespace: an agent inside a container) cannot be checked and counts as
// alive: its own agent reaps it.
func ownerAlive(owner string) bool {
	parts := strings.Split(owner, "/")
	if len(parts) != 3 {
		return false
	}
	host, _ := os.Hostname()
	if parts[0] != host {
		return true
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil {
		return false
	}
	start := procStart(pid)
	return start != "" && start == parts[2]
}

// dockerError is an error status of the Engine API.
type dockerError struct {
	Status  int
	Message string
}

func (e *dockerError) Error() string { return fmt.Sprintf("docker: HTTP %d: %s", e.Status, e.Message) }

// call does one API request; body (if not nil) is sent as JSON, out (if not nil) receives the
// JSON answer. A status ≥ 400 is a *dockerError.
func (d *Docker) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := d.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("docker %s %s: decode: %w", method, path, err)
	}
	return nil
}

// do sends a request and returns the response of a successful status (the caller closes it).
func (d *Docker) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := "http://docker/" + dockerAPIVersion + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker %s %s: %w", method, path, d.engineError(err))
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var m struct{ Message string }
		if json.Unmarshal(b, &m) != nil || m.Message == "" {
			m.Message = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("docker %s %s: %w", method, path, &dockerError{Status: resp.StatusCode, Message: m.Message})
	}
	return resp, nil
}

// engineError marks a failure to reach the engine at all (its socket missing, refused, not
// answering) as ErrEngineUnavailable; other errors pass unchanged.
func (d *Docker) engineError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Errorf("%w: the Docker engine at %s does not answer (is dockerd running? `cts-agent check` tells): %w", ErrEngineUnavailable, d.cfg.Socket, err)
	}
	return err
}

// pullError classifies an error the engine reported for a pull: a blob or manifest that does
// not match its digest is ErrDigestMismatch (the engine verifies them: "filesystem layer
// verification failed for digest ..."), anything else from the registry side is
// ErrImageUnavailable.
func pullError(msg string) error {
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "no space left on device") {
		return fmt.Errorf("%w: %s", ErrNoSpace, msg)
	}
	if strings.Contains(lower, "verification failed") || strings.Contains(lower, "digest mismatch") || strings.Contains(lower, "digest did not match") {
		return fmt.Errorf("%w: %s", ErrDigestMismatch, msg)
	}
	return fmt.Errorf("%w: %s", ErrImageUnavailable, msg)
}

// Ping checks that the engine answers (GET /_ping) and returns its API version.
func (d *Docker) Ping(ctx context.Context) (string, error) {
	resp, err := d.do(ctx, http.MethodGet, "/_ping", nil, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("Api-Version"), nil
}

// Pull implements Runtime: POST /images/create with the digest as the tag. The engine
// verifies every blob against the digest; the progress stream is read to its end and an
// error message in it fails the pull.
func (d *Docker) Pull(ctx context.Context, image string) error {
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return fmt.Errorf("pull %s: %w", image, err)
	}
	dg, ok := ref.(name.Digest)
	if !ok {
		return fmt.Errorf("pull %s: %w", image, ErrNotPinned)
	}
	// Already present: nothing to fetch (the engine stores images by content digest).
	if err := d.call(ctx, http.MethodGet, "/images/"+image+"/json", nil, nil, nil); err == nil {
		if err := d.holdImage(ctx, image, false); err != nil {
			return fmt.Errorf("pull %s: record: %w", image, err)
		}
		return nil
	}
	q := url.Values{"fromImage": {dg.Context().Name()}, "tag": {dg.DigestStr()}}
	resp, err := d.do(ctx, http.MethodPost, "/images/create", q, nil)
	var de *dockerError
	if errors.As(err, &de) {
		return fmt.Errorf("pull %s: %w", image, pullError(de.Message))
	}
	if err != nil {
		return fmt.Errorf("pull %s: %w", image, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("pull %s: progress stream: %w", image, err)
		}
		if m.Error != "" {
			return fmt.Errorf("pull %s: %w", image, pullError(m.Error))
		}
	}
	if err := d.call(ctx, http.MethodGet, "/images/"+image+"/json", nil, nil, nil); err != nil {
		return fmt.Errorf("pull %s: not present after the pull: %w", image, err)
	}
	if err := d.holdImage(ctx, image, true); err != nil {
		return fmt.Errorf("pull %s: record: %w", image, err)
	}
	return nil
}

// dockerCreate is the body of POST /containers/create (the fields we set).
type dockerCreate struct {
	Image        string            `json:"Image"`
	Entrypoint   []string          `json:"Entrypoint"`
	Cmd          []string          `json:"Cmd"`
	Env          []string          `json:"Env,omitempty"`
	Labels       map[string]string `json:"Labels"`
	Tty          bool              `json:"Tty"`
	OpenStdin    bool              `json:"OpenStdin"`
	AttachStdout bool              `json:"AttachStdout"`
	AttachStderr bool              `json:"AttachStderr"`
	StopSignal   string            `json:"StopSignal"`
	StopTimeout  int               `json:"StopTimeout"`
	HostConfig   dockerHostConfig  `json:"HostConfig"`
}

type dockerHostConfig struct {
	Mounts         []dockerMount     `json:"Mounts"`
	CapDrop        []string          `json:"CapDrop"`
	SecurityOpt    []string          `json:"SecurityOpt"`
	MaskedPaths    []string          `json:"MaskedPaths"`
	ReadonlyPaths  []string          `json:"ReadonlyPaths"`
	ReadonlyRootfs bool              `json:"ReadonlyRootfs"`
	Tmpfs          map[string]string `json:"Tmpfs"`
	LogConfig      dockerLogConfig   `json:"LogConfig"`
	NetworkMode    string            `json:"NetworkMode"`
	Memory         int64             `json:"Memory,omitempty"`
	MemorySwap     int64             `json:"MemorySwap,omitempty"`
	NanoCPUs       int64             `json:"NanoCpus,omitempty"`
	PidsLimit      int64             `json:"PidsLimit"`
	Ulimits        []dockerUlimit    `json:"Ulimits"`
	AutoRemove     bool              `json:"AutoRemove"`
	Privileged     bool              `json:"Privileged"`
}

type dockerLogConfig struct {
	Type   string            `json:"Type"`
	Config map[string]string `json:"Config"`
}

type dockerMount struct {
	Type     string `json:"Type"`
	Source   string `json:"Source"`
	Target   string `json:"Target"`
	ReadOnly bool   `json:"ReadOnly"`
}

type dockerUlimit struct {
	Name string `json:"Name"`
	Soft int64  `json:"Soft"`
	Hard int64  `json:"Hard"`
}

// createBody builds the create request of a Spec: the confinement of hardening.go, in the
// Engine API's terms.
func (d *Docker) createBody(s Spec) (dockerCreate, error) {
	network := s.Network
	if network == "" {
		network = NetworkNone
	}
	grace := s.grace()
	profile, err := seccompProfile()
	if err != nil {
		return dockerCreate{}, err
	}
	var ms []dockerMount
	for _, m := range s.Mounts {
		ms = append(ms, dockerMount{Type: "bind", Source: m.Source, Target: m.Destination, ReadOnly: m.ReadOnly})
	}
	hc := dockerHostConfig{
		Mounts:         ms,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true", "seccomp=" + profile},
		MaskedPaths:    slices.Clone(maskedPaths),
		ReadonlyPaths:  slices.Clone(readonlyPaths),
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": strings.Join(tmpfsOptions(d.cfg.TmpfsBytes), ",")},
		// The agent reads the output through an attach; the engine keeps no copy.
		LogConfig:   dockerLogConfig{Type: "none", Config: map[string]string{}},
		NetworkMode: network,
		PidsLimit:   pidsOf(s),
		Ulimits:     []dockerUlimit{{Name: "nofile", Soft: nofileLimit, Hard: nofileLimit}},
	}
	if s.MemoryBytes > 0 {
		hc.Memory, hc.MemorySwap = s.MemoryBytes, s.MemoryBytes // swap included, as with oci
	}
	if s.CPUs > 0 {
		hc.NanoCPUs = int64(s.CPUs * 1e9)
	}
	return dockerCreate{
		Image: s.Image, Entrypoint: s.Command, Cmd: []string{}, Env: s.Env,
		Labels:       map[string]string{DockerLabel: "1", DockerLabelOwner: d.owner},
		AttachStdout: true, AttachStderr: true,
		StopSignal: "SIGTERM", StopTimeout: int((grace + time.Second - 1) / time.Second),
		HostConfig: hc,
	}, nil
}

// Run implements Runtime.
func (d *Docker) Run(ctx context.Context, s Spec) (res Result, err error) {
	if err := validate(s); err != nil {
		return Result{}, err
	}
	if ref, err := name.ParseReference(s.Image, name.WeakValidation); err != nil {
		return Result{}, fmt.Errorf("run %s: image %q: %w", s.ID, s.Image, err)
	} else if _, ok := ref.(name.Digest); !ok {
		return Result{}, fmt.Errorf("run %s: image %q: %w", s.ID, s.Image, ErrNotPinned)
	}
	if ctx.Err() != nil {
		return Result{ExitCode: -1, Canceled: true}, nil
	}
	body, err := d.createBody(s)
	if err != nil {
		return Result{}, fmt.Errorf("run %s: %w", s.ID, err)
	}
	// Create and start are not interrupted by ctx: an interrupted request may still have
	// created or started the container, which must then be stopped and removed, not orphaned.
	// A cancel during them is seen right after.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runcCallTimeout)
	defer cancel()
	var created struct{ ID string }
	// Recorded while in flight: should this agent die before the engine answers, the reap
	// after it waits for the container (see docker_creating.go).
	unrecord := d.recordCreate(s.ID)
	err = d.call(cctx, http.MethodPost, "/containers/create", url.Values{"name": {s.ID}}, body, &created)
	unrecord()
	var de *dockerError
	switch {
	case errors.As(err, &de) && de.Status == http.StatusConflict:
		return Result{}, fmt.Errorf("run %s: %w: id in use", s.ID, ErrInvalidSpec)
	case errors.As(err, &de) && de.Status == http.StatusNotFound:
		return Result{}, fmt.Errorf("run %s: %s: %w", s.ID, s.Image, ErrNotPulled)
	case err != nil:
		// The request may have reached the engine: make sure nothing stays.
		_ = d.remove(cctx, s.ID)
		return Result{}, fmt.Errorf("run %s: %w", s.ID, err)
	}
	// From here the container exists: remove it whatever happens (never orphan it).
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runcCallTimeout)
		defer cancel()
		if rerr := d.remove(rctx, s.ID); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	if ctx.Err() != nil {
		return Result{ExitCode: -1, Canceled: true}, nil
	}
	res, err = d.run(ctx, s)
	if err != nil {
		return res, fmt.Errorf("run %s: %w", s.ID, err)
	}
	return res, nil
}

func (d *Docker) run(ctx context.Context, s Spec) (Result, error) {
	var res Result
	cctx := context.WithoutCancel(ctx)
	// Attach before the start, so not a byte of output is missed.
	out, err := d.attach(cctx, s.ID)
	if err != nil {
		return res, err
	}
	var logWG sync.WaitGroup
	logWG.Add(1)
	go func() {
		defer logWG.Done()
		defer out.Close()
		if err := demux(bufio.NewReaderSize(out, 64<<10), orDiscard(s.Stdout), orDiscard(s.Stderr)); err != nil {
			d.log.Warn("read container output", "container", s.ID, "error", err)
		}
	}()
	res.Started = time.Now()
	sctx, cancel := context.WithTimeout(cctx, runcCallTimeout)
	err = d.call(sctx, http.MethodPost, "/containers/"+s.ID+"/start", nil, nil, nil)
	cancel()
	if err != nil {
		out.Close()
		logWG.Wait()
		var de *dockerError
		if errors.As(err, &de) && de.Status < 500 || errors.As(err, &de) && strings.Contains(de.Message, "OCI runtime") {
			res.ExitCode = -1
			fmt.Fprintln(orDiscard(s.Stderr), de.Message)
			return res, &StartError{ID: s.ID, Message: startMessage(de.Message)}
		}
		return res, err
	}
	done := make(chan dockerWait, 1)
	go func() {
		var w struct {
			StatusCode int
			Error      *struct{ Message string }
		}
		err := d.call(cctx, http.MethodPost, "/containers/"+s.ID+"/wait", url.Values{"condition": {"not-running"}}, nil, &w)
		if err == nil && w.Error != nil && w.Error.Message != "" {
			err = errors.New(w.Error.Message)
		}
		done <- dockerWait{w.StatusCode, err}
	}()
	timeout, release := s.deadline()
	defer release()
	grace := s.grace()
	var w dockerWait
	select {
	case w = <-done:
	case <-ctx.Done():
		res.Canceled = true
		w = d.stop(cctx, s.ID, grace, done)
	case <-timeout:
		res.TimedOut = true
		w = d.stop(cctx, s.ID, grace, done)
	}
	res.Ended = time.Now()
	logWG.Wait()
	if w.err != nil {
		return res, fmt.Errorf("wait: %w", w.err)
	}
	res.ExitCode = w.code
	var st struct {
		State struct {
			OOMKilled bool
			ExitCode  int
		}
	}
	if err := d.call(cctx, http.MethodGet, "/containers/"+s.ID+"/json", nil, nil, &st); err != nil {
		return res, fmt.Errorf("inspect: %w", err)
	}
	res.OOMKilled = st.State.OOMKilled
	if !res.OOMKilled && res.ExitCode == 137 && !res.Canceled && !res.TimedOut {
		// Killed, and not by us: most likely the kernel's OOM killer. The engine sets
		// State.OOMKilled only when containerd's OOM event reached it before the exit event,
		// which a busy node does not guarantee (seen: exit 137, OOMKilled false, on Docker
		// 20.10 with both cores busy); the "oom" event it records either way settles it.
		res.OOMKilled = d.oomEvent(cctx, s.ID, res.Started)
	}
	return res, nil
}

// oomEventWait bounds how long oomEvent waits for the engine to record an OOM event that is
// still on its way.
const oomEventWait = 5 * time.Second

// oomEvent reports whether the engine recorded an "oom" event for the container since
// started (GET /events, filtered on the container and the event; the stream ends at its
// until, oomEventWait from now, or at the first event). An engine that cannot answer counts
// as no event; so does one whose in-memory event log (the last 256 events on Docker 20.10)
// rolled over between the exit and this call, which takes dozens of containers ending on the
// node in that moment.
func (d *Docker) oomEvent(ctx context.Context, id string, started time.Time) bool {
	filters, _ := json.Marshal(map[string][]string{"type": {"container"}, "container": {id}, "event": {"oom"}})
	q := url.Values{
		"since":   {strconv.FormatInt(started.Add(-time.Second).Unix(), 10)},
		"until":   {strconv.FormatInt(time.Now().Add(oomEventWait).Unix(), 10)},
		"filters": {string(filters)},
	}
	ctx, cancel := context.WithTimeout(ctx, oomEventWait+runcCallTimeout)
	defer cancel()
	resp, err := d.do(ctx, http.MethodGet, "/events", q, nil)
	if err != nil {
		d.log.Warn("docker events: cannot tell whether the container was OOM-killed", "container", id, "error", err)
		return false
	}
	defer resp.Body.Close()
	var ev struct{ Action, Status string }
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ev)
	return err == nil && (ev.Action == "oom" || ev.Status == "oom")
}

// dockerWait is the outcome of POST /containers/{id}/wait.
type dockerWait struct {
	code int
	err  error
}

// stop asks the engine to stop the container (its StopSignal, then KILL after grace) and
// waits for the exit; should the engine not manage, it kills and waits killWait more.
func (d *Docker) stop(ctx context.Context, id string, grace time.Duration, done <-chan dockerWait) dockerWait {
	secs := int((grace + time.Second - 1) / time.Second)
	sctx, cancel := context.WithTimeout(ctx, grace+runcCallTimeout)
	err := d.call(sctx, http.MethodPost, "/containers/"+id+"/stop", url.Values{"t": {strconv.Itoa(secs)}}, nil, nil)
	cancel()
	if err != nil {
		d.log.Warn("docker stop", "container", id, "error", err)
		_ = d.call(ctx, http.MethodPost, "/containers/"+id+"/kill", url.Values{"signal": {"KILL"}}, nil, nil)
	}
	select {
	case w := <-done:
		return w
	case <-time.After(killWait):
		return dockerWait{-1, fmt.Errorf("container %s still running %s after stop", id, killWait)}
	}
}

// attach opens the container's output stream: POST /containers/{id}/attach with stream=1,
// upgraded to a raw connection that carries the engine's multiplexed frames until the
// container ends. The caller closes it.
func (d *Docker) attach(ctx context.Context, id string) (io.ReadCloser, error) {
	q := url.Values{"stream": {"1"}, "stdout": {"1"}, "stderr": {"1"}}
	u := "http://docker/" + dockerAPIVersion + "/containers/" + id + "/attach?" + q.Encode()
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker attach %s: %w", id, d.engineError(err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("docker attach %s: %w", id, &dockerError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))})
	}
	return resp.Body, nil
}

// startMessage shortens the engine's start error to the part a user can act on: the OCI
// runtime's own sentence (e.g. `exec: "tool": executable file not found in $PATH`).
func startMessage(msg string) string {
	if i := strings.LastIndex(msg, "exec: "); i >= 0 {
		return strings.TrimSuffix(strings.TrimSpace(msg[i:]), ": unknown")
	}
	return msg
}

// demux splits the engine's multiplexed stream.
func demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		w := stdout
		if hdr[0] == 2 {
			w = stderr
		}
		if _, err := io.CopyN(w, r, n); err != nil {
			return err
		}
	}
}

// remove force-removes a container with its anonymous volumes; a missing one is fine.
func (d *Docker) remove(ctx context.Context, id string) error {
	err := d.call(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil)
	var de *dockerError
	if errors.As(err, &de) && de.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// Known implements Runtime.
func (d *Docker) Known(ctx context.Context, id string) bool {
	return d.call(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, nil) == nil
}

// Remove implements Runtime.
func (d *Docker) Remove(ctx context.Context, id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("remove container %q: %w: bad id", id, ErrInvalidSpec)
	}
	if err := d.remove(ctx, id); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// Reap implements Runtime: it finds the containers labelled DockerLabel whose owner agent is
// gone (see ownerAlive), and removes them when apply is set; containers of live agents
// sharing the engine are left alone. With apply it first waits for the containers whose
// create was in flight when their agent died (settleCreates), so they are removed too.
func (d *Docker) Reap(ctx context.Context, apply bool) ([]Leftover, error) {
	// Creates in flight when their agent died first: their containers may appear any moment.
	creating := d.settleCreates(ctx, apply)
	filters, _ := json.Marshal(map[string][]string{"label": {DockerLabel}})
	var list []struct {
		ID     string `json:"Id"`
		Names  []string
		State  string
		Labels map[string]string
	}
	if err := d.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(filters)}}, nil, &list); err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	left := creating
	var errs []error
	for _, c := range list {
		owner := c.Labels[DockerLabelOwner]
		if ownerAlive(owner) {
			continue
		}
		name := strings.TrimPrefix(strings.Join(c.Names, ","), "/")
		left = append(left, Leftover{Kind: "container", ID: name, Detail: fmt.Sprintf("%s in the Docker engine, owner %s gone", c.State, owner)})
		if !apply {
			continue
		}
		if err := d.remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		d.log.Info("reaped leftover container", "container", name)
	}
	if err := errors.Join(errs...); err != nil {
		return left, fmt.Errorf("reap: %w", err)
	}
	return left, nil
}
