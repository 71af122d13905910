package container

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The `oci` runtime with crun (OCIConfig.Engine = EngineCrun).
//
// crun 1.8 has no `run --keep`: a foreground `crun run` deletes the container, its cgroup with
// it, as soon as the container's process exits, so the OOM counter could no longer be read.
// The container is therefore made and started detached (`crun run --detach`; for the node's
// first container, which compiles the seccomp program, `crun create` and `crun start`), and
// this process, the subreaper of its descendants (PR_SET_CHILD_SUBREAPER, set by NewOCI), waits
// for the container's process itself: once crun (and its detached helper) exited, the kernel
// hands the process to us, and its exit status is ours to read. The container then stays
// (stopped) until `crun delete`, as runc's does with --keep. Stopping, deleting and reaping are
// the same sub-commands as runc's (`kill [--all]`, `delete --force`, `state`).
//
// The seccomp filter is compiled once per node, not once per container. crun compiles the
// profile with libseccomp inside `crun create` (about 24 ms of runc's 92 for Docker's profile;
// crun's is the same libseccomp work), and crun 1.7+ can keep compiled filters in its state
// root (containers/crun#1035), but only when built with libgcrypt, which Debian's crun 1.8.1 is
// not. So the agent keeps them itself (filterCache): the first container of a node is made
// with the profile alone; crun compiles it and leaves the program in its state
// (<root>/<id>/seccomp.bpf), which the agent copies to <root>/.cache/cts-seccomp/<key>; every
// later container with the same profile gets the program in config.json's annotation
// run.oci.seccomp_bpf_data, which crun loads as it is, compiling nothing. config.json keeps
// the profile too. The key covers what the program depends on: the whole profile (errno
// values included), crun's binary, the kernel's release, version and machine; the entry also
// names the libseccomp file crun had loaded, and is not used once that file changed.
//
// A crun built with libgcrypt also keeps its own cache (<root>/.cache/seccomp), keyed without
// the profile's errno values: addCacheKeyRule puts them into its key.

// engine is a low-level OCI runtime binary.
type engine struct {
	name string // EngineRunc or EngineCrun
	path string
}

// findEngine looks up the binary of engine name (cfg's path for it, else its name on PATH).
func findEngine(cfg OCIConfig, name string) (engine, error) {
	p := cfg.RuncPath
	if name == EngineCrun {
		p = cfg.CrunPath
	}
	found, err := exec.LookPath(p)
	if err != nil {
		return engine{}, fmt.Errorf("find %s: %w", name, err)
	}
	return engine{name: name, path: found}, nil
}

// stateFile returns the name of the state file the engine that made container id keeps under
// root ("state.json" for runc, "status" for crun), or "" when there is none that parses.
func stateFile(root, id string) string {
	for _, name := range []string{"state.json", "status"} {
		b, err := os.ReadFile(filepath.Join(root, id, name))
		if err == nil && json.Valid(b) {
			return name
		}
	}
	return ""
}

// engineName names the engine that made container id under root ("runc" when unknown).
func engineName(root, id string) string {
	if stateFile(root, id) == "status" {
		return EngineCrun
	}
	return EngineRunc
}

// engineOf returns the engine that made container id: the state under Root says which; a
// container without state is this runtime's own engine's.
func (o *OCI) engineOf(id string) (engine, error) {
	name := o.engine.name
	switch stateFile(o.cfg.Root, id) {
	case "state.json":
		name = EngineRunc
	case "status":
		name = EngineCrun
	}
	if name == o.engine.name {
		return o.engine, nil
	}
	eng, err := findEngine(o.cfg, name)
	if err != nil {
		return engine{}, fmt.Errorf("container %s under %s was made by %s, which this node no longer has (%w): install %s, or remove the container (its processes, its cgroups and %s) by hand",
			id, o.cfg.Root, name, err, name, filepath.Join(o.cfg.Root, id))
	}
	return eng, nil
}

// Engine returns the low-level runtime new containers run with (EngineRunc or EngineCrun) and
// its binary.
func (o *OCI) Engine() (name, path string) { return o.engine.name, o.engine.path }

// CrunUsable returns nil when crun can make containers' cgroups on this node, else why not.
// crun refuses a hybrid cgroup layout (v1 hierarchies, with the v2 hierarchy mounted at
// /sys/fs/cgroup/unified) whose v2 hierarchy holds a controller: "cgroups in hybrid mode not
// supported, drop all controllers from cgroupv2". On such a node the controllers listed in
// /sys/fs/cgroup/unified/cgroup.controllers can be mounted as v1 hierarchies, which moves
// them out of the v2 one (scripts/crun-cgroups.sh does it).
func CrunUsable() error {
	unified := filepath.Join(cgroupRoot, "unified")
	b, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	if err != nil {
		return nil // not a hybrid layout
	}
	if c := strings.TrimSpace(string(b)); c != "" {
		return fmt.Errorf("crun cannot make cgroups on this node: its cgroups are hybrid and the v2 hierarchy at %s holds controllers (%s), which crun refuses; mount each as a cgroup v1 hierarchy (as root: scripts/crun-cgroups.sh), or use runc",
			unified, c)
	}
	return nil
}

// PreferredEngine is the engine the `oci` runtime uses when the configuration names none:
// crun when its binary (crunPath, else "crun" on PATH) is found and CrunUsable, else runc.
// why says which and why.
func PreferredEngine(crunPath string) (name, why string) {
	if crunPath == "" {
		crunPath = EngineCrun
	}
	p, err := exec.LookPath(crunPath)
	if err != nil {
		return EngineRunc, "no crun (" + crunPath + ") on this node"
	}
	if err := CrunUsable(); err != nil {
		return EngineRunc, err.Error()
	}
	return EngineCrun, "crun found at " + p
}

var subreaper struct {
	once sync.Once
	err  error
}

// becomeSubreaper makes this process the subreaper of its descendants: the process of a
// container that `crun create` made becomes our child when crun exits.
func becomeSubreaper() error {
	subreaper.once.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			subreaper.err = fmt.Errorf("become the subreaper of our containers' processes: %w", err)
		}
	})
	return subreaper.err
}

// crunExit is how the container's process ended, as runc reports it: its exit status, or 128
// plus the signal that killed it.
type crunExit struct{ code int }

func (e *crunExit) Error() string { return "exit status " + strconv.Itoa(e.code) }

// runCrun makes and starts the container (`crun run --detach`, or `crun create` and `crun
// start` when it compiles the seccomp program), and waits for its process, stopping the
// container on cancellation or timeout (as runRunc). crun runs in its own process group and is
// never signaled itself.
func (o *OCI) runCrun(ctx context.Context, s Spec, bundle string) (res Result, deleteLater func(context.Context) error, err error) {
	cctx := context.WithoutCancel(ctx)
	logPath := filepath.Join(bundle, "crun.log")
	pidFile := filepath.Join(bundle, "init.pid")

	// The container's streams: pipes whose write ends the container inherits from crun; they
	// close when its last process ends.
	streams, err := newStreams(s.Stdout, s.Stderr)
	if err != nil {
		return res, nil, err
	}
	defer streams.abandon()
	o.filterMu.Lock()
	_, compiles := o.filterMiss[s.ID]
	o.filterMu.Unlock()
	// With the seccomp program cached, one `crun run --detach` makes and starts the container
	// (a process start less than create and start: about 15 ms here). The node's first
	// container, which compiles the program, is made with `crun create`: until `crun start`
	// its process is still crun's, whose mappings name the libseccomp that compiled it.
	sub := "run"
	if compiles {
		sub = "create"
	}
	args := []string{"--root", o.cfg.Root, "--log", logPath, "--log-format", "json", sub}
	if sub == "run" {
		args = append(args, "--detach")
	}
	cmd := exec.Command(o.engine.path, append(args, "--bundle", bundle, "--pid-file", pidFile, s.ID)...)
	cmd.Stdout, cmd.Stderr = streams.outW, streams.errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	res.Started = time.Now()
	cerr := cmd.Run()
	streams.closeWriters()
	if cerr != nil {
		var exitErr *exec.ExitError
		if !errors.As(cerr, &exitErr) || exitErr.ExitCode() < 0 {
			return res, nil, errors.Join(fmt.Errorf("crun %s: %w", sub, cerr), o.delete(cctx, s.ID))
		}
		streams.wait(time.Second)
		res.Ended = time.Now()
		res.ExitCode = exitErr.ExitCode()
		if msg := runcErrors(logPath); msg != "" {
			return res, nil, errors.Join(&StartError{ID: s.ID, Message: msg}, o.delete(cctx, s.ID))
		}
		return res, nil, errors.Join(fmt.Errorf("crun %s: %w", sub, cerr), o.delete(cctx, s.ID))
	}
	pid, err := readPid(pidFile)
	if err != nil {
		return res, nil, errors.Join(err, o.delete(cctx, s.ID))
	}
	// `crun create` made the process itself, so it is our child now that crun exited; after
	// `run --detach` it is once crun's detached helper exits too, a moment later.
	exited, ws, err := adopt(pid, sub == "run")
	if err != nil {
		return res, nil, errors.Join(fmt.Errorf("container %s: %w", s.ID, err), o.delete(cctx, s.ID))
	}
	if sub == "create" {
		o.keepFilter(s.ID, pid)
		if ctx.Err() != nil {
			// Canceled while crun made it: its program never ran.
			res.Canceled, res.ExitCode, res.Ended = true, -1, time.Now()
			err := o.delete(cctx, s.ID)
			reap(pid)
			streams.wait(killWait)
			return res, nil, err
		}
		if _, err := o.engineCall(cctx, o.engine, "start", s.ID); err != nil {
			err = errors.Join(fmt.Errorf("start container %s: %w", s.ID, err), o.delete(cctx, s.ID))
			reap(pid)
			streams.wait(killWait)
			if msg := runcErrors(logPath); msg != "" {
				err = errors.Join(&StartError{ID: s.ID, Message: msg}, err)
			}
			return res, nil, err
		}
	}

	done := make(chan error, 1)
	go func() {
		code, err := exitCode(ws)
		if !exited {
			code, err = waitPid(pid)
		}
		// The container's processes die with its first one, so the streams close
		// promptly; this only bounds a pathological writer (as runRunc's WaitDelay).
		if !streams.wait(10 * time.Second) {
			err = errors.Join(err, errors.New("the container's output streams stayed open 10s after its end"))
		}
		if err == nil && code != 0 {
			err = &crunExit{code: code}
		}
		done <- err
	}()
	waitErr, stopErr := o.supervise(ctx, s, &res, done)
	res.Ended = time.Now()

	// The container stays (stopped) until `crun delete`, so its cgroup can still be read.
	res.OOMKilled = o.oomKilled(s.ID)
	var exit *crunExit
	switch {
	case stopErr != nil:
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &exit):
		res.ExitCode = exit.code
	default:
		return res, nil, errors.Join(fmt.Errorf("crun: %w", waitErr), o.delete(cctx, s.ID))
	}
	return o.finish(cctx, s.ID, logPath, res, stopErr)
}

// readPid reads the pid crun wrote to its --pid-file.
func readPid(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("crun's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("crun's pid file %s holds %q, not a pid", file, b)
	}
	return pid, nil
}

// adoptWait bounds how long adopt waits for a process to become our child.
const adoptWait = 5 * time.Second

// adopt checks that pid is our child, without waiting for it: exited says it had already
// exited, with status ws (it is then reaped). With later, a process that is not our child yet
// may become it (crun's detached helper, its parent, is exiting): adopt retries for up to
// adoptWait.
func adopt(pid int, later bool) (exited bool, ws syscall.WaitStatus, err error) {
	deadline := time.Now().Add(adoptWait)
	for {
		wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err == nil:
			return wpid == pid, ws, nil
		case errors.Is(err, syscall.ECHILD) && later && time.Now().Before(deadline):
			time.Sleep(time.Millisecond)
			continue
		}
		// Not our child: something cleared the subreaper flag.
		return false, ws, fmt.Errorf("its process %d is not this agent's child (%w): cannot wait for it", pid, err)
	}
}

// waitPid waits for our child pid and returns its exit status as runc reports a container's:
// 128 plus the signal when a signal ended it.
func waitPid(pid int) (int, error) {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("wait for the container's process %d: %w", pid, err)
		}
		break
	}
	return exitCode(ws)
}

// exitCode is a wait status as runc reports a container's: the exit status, or 128 plus the
// signal that ended it.
func exitCode(ws syscall.WaitStatus) (int, error) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), nil
	case ws.Signaled():
		return 128 + int(ws.Signal()), nil
	}
	return -1, fmt.Errorf("the container's process ended with wait status %#x", uint32(ws))
}

// reap collects our child pid once `crun delete --force` killed it (no zombie left behind).
func reap(pid int) {
	done := make(chan struct{})
	go func() {
		_, _ = waitPid(pid)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(killWait):
	}
}

// crunOOMKilled is oomKilled for a container crun made: its status file names its cgroup
// path, the same under every hierarchy.
func (o *OCI) crunOOMKilled(id string) bool {
	b, err := os.ReadFile(filepath.Join(o.cfg.Root, id, "status"))
	if err != nil {
		return false // crun never made the container
	}
	var st struct {
		CgroupPath string `json:"cgroup-path"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.CgroupPath == "" {
		o.log.Warn("read crun's container status", "container", id, "error", err, "cgroup_path", st.CgroupPath)
		return false
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return counter(filepath.Join(cgroupRoot, st.CgroupPath, "memory.events"), "oom_kill") > 0
	}
	return counter(filepath.Join(cgroupRoot, "memory", st.CgroupPath, "memory.oom_control"), "oom_kill") > 0
}

// streams copies a container's stdout and stderr from the pipes it writes.
type streams struct {
	outR, outW, errR, errW *os.File
	done                   chan struct{}
}

func newStreams(stdout, stderr io.Writer) (*streams, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("container streams: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("container streams: %w", err)
	}
	st := &streams{outR: outR, outW: outW, errR: errR, errW: errW, done: make(chan struct{})}
	var wg sync.WaitGroup
	for _, c := range []struct {
		r *os.File
		w io.Writer
	}{{outR, orDiscard(stdout)}, {errR, orDiscard(stderr)}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A writer that fails stops being written to; the pipe is still drained so that
			// the container never blocks on it.
			if _, err := io.Copy(c.w, c.r); err != nil {
				_, _ = io.Copy(io.Discard, c.r)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(st.done)
	}()
	return st, nil
}

// closeWriters closes our copies of the write ends (the container keeps its own).
func (st *streams) closeWriters() {
	st.outW.Close()
	st.errW.Close()
}

// wait waits up to d for both streams to reach their end; false when they did not.
func (st *streams) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-st.done:
		return true
	case <-t.C:
		return false
	}
}

// abandon closes the read ends: copies still running end.
func (st *streams) abandon() {
	st.closeWriters()
	st.outR.Close()
	st.errR.Close()
}

// cacheKeyRulePrefix starts the name of the rule addCacheKeyRule adds.
const cacheKeyRulePrefix = "cts_profile_"

// addCacheKeyRule adds to a profile for crun a rule that changes nothing but crun's cache key:
// its name is "cts_profile_" and the SHA-256 of the whole profile (errno values included), and
// its action is the profile's default action with the default errno, which crun skips before
// it even resolves the name. Without it, two profiles that differ only in an errno value (as
// Docker's did when clone3 came to answer ENOSYS, which glibc needs to fall back to clone)
// would share one cached filter on a node.
func addCacheKeyRule(sc *specs.LinuxSeccomp) error {
	if sc == nil {
		return nil
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("seccomp profile: %w", err)
	}
	sum := sha256.Sum256(b)
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{
		Names:    []string{cacheKeyRulePrefix + hex.EncodeToString(sum[:])},
		Action:   sc.DefaultAction,
		ErrnoRet: sc.DefaultErrnoRet,
	})
	return nil
}

// bpfAnnotation is crun's annotation carrying a compiled seccomp program (base64).
const bpfAnnotation = "run.oci.seccomp_bpf_data"

// fileID identifies a file's content by its metadata: a package upgrade replaces the file.
type fileID struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Ino     uint64 `json:"ino"`
}

func idOf(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{Path: path, Size: st.Size, ModTime: st.Mtim.Nano(), Ino: st.Ino}, nil
}

// filterRecord is an entry of the filter cache.
type filterRecord struct {
	// Libseccomp is the libseccomp file crun had loaded when it compiled the program.
	Libseccomp fileID `json:"libseccomp"`
	// BPF is the program: struct sock_filter entries of 8 bytes.
	BPF []byte `json:"bpf"`
}

// filterCacheDir holds the filter cache under Root (crun's own is <root>/.cache/seccomp).
func (o *OCI) filterCacheDir() string { return filepath.Join(o.cfg.Root, ".cache", "cts-seccomp") }

// filterKey is the cache key of profile sc for this node's crun and kernel.
func (o *OCI) filterKey(sc *specs.LinuxSeccomp) (string, error) {
	crunID, err := idOf(o.engine.path)
	if err != nil {
		return "", fmt.Errorf("seccomp filter cache: %w", err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", fmt.Errorf("seccomp filter cache: uname: %w", err)
	}
	profile, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("seccomp filter cache: %w", err)
	}
	crun, _ := json.Marshal(crunID)
	h := sha256.New()
	for _, part := range [][]byte{[]byte("cts seccomp filter 1"), crun, uts.Release[:], uts.Version[:], uts.Machine[:], profile} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cachedFilter returns the program cached under key, if any that is still valid.
func (o *OCI) cachedFilter(key string) ([]byte, bool) {
	b, err := os.ReadFile(filepath.Join(o.filterCacheDir(), key))
	if err != nil {
		return nil, false
	}
	var rec filterRecord
	if err := json.Unmarshal(b, &rec); err != nil || len(rec.BPF) == 0 || len(rec.BPF)%8 != 0 {
		o.log.Warn("a seccomp filter cache entry is damaged: compiling the profile again", "entry", filepath.Join(o.filterCacheDir(), key), "error", err)
		return nil, false
	}
	if id, err := idOf(rec.Libseccomp.Path); err != nil || id != rec.Libseccomp {
		o.log.Info("libseccomp changed since the cached seccomp filter was compiled: compiling the profile again", "libseccomp", rec.Libseccomp.Path)
		return nil, false
	}
	return rec.BPF, true
}

// useCachedFilter puts the cached program of spec's profile into its annotations, or, when
// there is none, notes the key for keepFilter.
func (o *OCI) useCachedFilter(id string, spec *specs.Spec) error {
	if spec.Linux == nil || spec.Linux.Seccomp == nil {
		return nil
	}
	key, err := o.filterKey(spec.Linux.Seccomp)
	if err != nil {
		return err
	}
	if bpf, ok := o.cachedFilter(key); ok {
		if spec.Annotations == nil {
			spec.Annotations = map[string]string{}
		}
		spec.Annotations[bpfAnnotation] = base64.StdEncoding.EncodeToString(bpf)
		return nil
	}
	o.filterMu.Lock()
	o.filterMiss[id] = key
	o.filterMu.Unlock()
	return nil
}

// keepFilter copies the program crun compiled for container id (made without a cached one)
// to the cache; pid is the container's process, still crun's until `crun start`, whose
// mappings name the libseccomp it used. A failure only costs the next container a compile.
func (o *OCI) keepFilter(id string, pid int) {
	o.filterMu.Lock()
	key, ok := o.filterMiss[id]
	delete(o.filterMiss, id)
	o.filterMu.Unlock()
	if !ok {
		return
	}
	err := func() error {
		bpf, err := os.ReadFile(filepath.Join(o.cfg.Root, id, "seccomp.bpf"))
		if err != nil {
			return err
		}
		if len(bpf) == 0 || len(bpf)%8 != 0 {
			return fmt.Errorf("crun's program is %d bytes, not a whole number of instructions", len(bpf))
		}
		lib, err := libseccompOf(pid)
		if err != nil {
			return err
		}
		libID, err := idOf(lib)
		if err != nil {
			return err
		}
		rec, err := json.Marshal(filterRecord{Libseccomp: libID, BPF: bpf})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(o.filterCacheDir(), 0o700); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(o.filterCacheDir(), ".new-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.Write(rec); err != nil {
			tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		return os.Rename(tmp.Name(), filepath.Join(o.filterCacheDir(), key))
	}()
	if err != nil {
		o.log.Warn("keep the compiled seccomp filter; the next container compiles it again", "container", id, "error", err)
		return
	}
	o.log.Debug("seccomp filter kept for the node's next containers", "container", id, "key", key)
}

// libseccompOf returns the path of the libseccomp that process pid has mapped.
func libseccompOf(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(filepath.Base(f[5]), "libseccomp.so") {
			return f[5], nil
		}
	}
	return "", fmt.Errorf("process %d has no libseccomp mapped", pid)
}
