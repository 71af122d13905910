package container

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kbase/cts/agent/internal/untar"
)

const (
	// runcCallTimeout bounds one `runc kill`, `runc delete` or `runc state` (or crun's).
	runcCallTimeout = 30 * time.Second
	// killWait is how long a container may take to die after SIGKILL before Run gives up.
	killWait = 30 * time.Second
	// signalRetry is the pause between attempts to signal a container that runc has not
	// created yet.
	signalRetry = 100 * time.Millisecond
	// defaultCgroupParent holds one cgroup per container.
	defaultCgroupParent = "/cts"
)

// The low-level OCI runtimes the `oci` runtime can drive (OCIConfig.Engine).
const (
	// EngineRunc is runc: `runc run --keep` in the foreground.
	EngineRunc = "runc"
	// EngineCrun is crun (1.7 or later): `crun create` and `crun start`, the container's
	// process reaped by the agent (see crun.go). crun keeps each compiled seccomp filter in
	// its state root, so only the first container of a node compiles the profile.
	EngineCrun = "crun"
)

// OCIConfig configures the `oci` runtime.
type OCIConfig struct {
	// Root is the low-level runtime's --root: the state of CTS containers on this node.
	// Several agents may share it: each container's bundle holds an owner lock (flock) that
	// its agent keeps for the container's life, and Reap deletes only the containers whose
	// owner is gone. runc and crun may share it too: each container's state says which of
	// them made it (runc's state.json, crun's status), and Reap ends it with that one.
	Root string
	// CacheDir holds the OCI-layout image cache; agents on one node may share it.
	CacheDir string
	// BundleDir holds one bundle (config.json + rootfs + owner lock) per running container.
	// It may be shared like Root: Reap removes only the bundles whose owner lock is free.
	BundleDir string
	// Engine is the low-level runtime new containers run with: EngineRunc (when "") or
	// EngineCrun.
	Engine string
	// RuncPath is the runc binary ("runc" from PATH when empty).
	RuncPath string
	// CrunPath is the crun binary ("crun" from PATH when empty).
	CrunPath string
	// Insecure allows plain-http registries (e.g. 127.0.0.1 in tests and the dev site's registry).
	Insecure bool
	// Keychain supplies registry credentials (authn.DefaultKeychain when nil).
	Keychain authn.Keychain
	// MaxUnpackBytes bounds the regular-file bytes of one unpacked image
	// (DefaultMaxUnpackBytes when 0).
	MaxUnpackBytes int64
	// CgroupParent is the absolute cgroup path under which each container gets a cgroup
	// named by its ID ("/cts/<8 hex digits of the root's SHA-256>" when empty).
	CgroupParent string
	// TmpfsBytes sizes the container's /tmp (DefaultTmpfsBytes when 0).
	TmpfsBytes int64
	// PrivateRootfs unpacks each container's root file system from the image's layers into
	// its bundle, instead of mounting an overlay of the image's shared unpacked tree (see
	// rootfs.go). The runtime falls back to it by itself where overlayfs cannot be mounted.
	PrivateRootfs bool
	// Logger receives notes (skipped layer entries, cleanup problems). Discarded when nil.
	Logger *slog.Logger
}

// OCI is the `oci` Runtime: a go-containerregistry OCI-layout cache and runc or crun.
type OCI struct {
	cfg OCIConfig
	// engine runs new containers; the other engine is found when Reap meets a container of
	// its (other).
	engine     engine
	keychain   authn.Keychain
	log        *slog.Logger
	hostNofile uint64
	cache      *cache

	initMu sync.Mutex
	inited bool

	// held are the use locks of the images this runtime pulled (see prune.go).
	heldMu sync.Mutex
	held   map[string]func()

	// noOverlay is set once an overlay mount failed: containers then get private copies.
	noOverlay atomic.Bool

	// filterMiss holds the filter cache keys of the containers prepared without a cached
	// seccomp program (see crun.go).
	filterMu   sync.Mutex
	filterMiss map[string]string

	// later holds the deletions of the containers that exited by themselves, which Run leaves
	// for Wait (see Waiter).
	laterMu sync.Mutex
	later   []func()
}

var (
	_ Runtime = (*OCI)(nil)
	_ Waiter  = (*OCI)(nil)
)

// NewOCI checks cfg, creates the directories and finds the engine's binary. With crun it
// also checks that crun can create cgroups on this node (CrunUsable) and makes this process
// the subreaper of its descendants, so that it can wait for its containers' processes.
func NewOCI(cfg OCIConfig) (*OCI, error) {
	var errs []error
	for _, d := range []struct{ name, val string }{{"root", cfg.Root}, {"cache dir", cfg.CacheDir}, {"bundle dir", cfg.BundleDir}} {
		if d.val == "" {
			errs = append(errs, fmt.Errorf("%s is required", d.name))
		}
	}
	if cfg.MaxUnpackBytes < 0 {
		errs = append(errs, errors.New("max unpack bytes is negative"))
	}
	if cfg.CgroupParent != "" && !path.IsAbs(cfg.CgroupParent) {
		errs = append(errs, fmt.Errorf("cgroup parent %q is not absolute", cfg.CgroupParent))
	}
	if cfg.Engine == "" {
		cfg.Engine = EngineRunc
	}
	if cfg.Engine != EngineRunc && cfg.Engine != EngineCrun {
		errs = append(errs, fmt.Errorf("engine must be %s or %s, got %q", EngineRunc, EngineCrun, cfg.Engine))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oci runtime config: %w", errors.Join(errs...))
	}
	for _, p := range []*string{&cfg.Root, &cfg.CacheDir, &cfg.BundleDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("oci runtime config: %w", err)
		}
		*p = abs
	}
	if cfg.RuncPath == "" {
		cfg.RuncPath = EngineRunc
	}
	if cfg.CrunPath == "" {
		cfg.CrunPath = EngineCrun
	}
	eng, err := findEngine(cfg, cfg.Engine)
	if err != nil {
		return nil, fmt.Errorf("oci runtime: %w", err)
	}
	if eng.name == EngineCrun {
		if err := CrunUsable(); err != nil {
			return nil, fmt.Errorf("oci runtime: %w", err)
		}
		if err := becomeSubreaper(); err != nil {
			return nil, fmt.Errorf("oci runtime: crun: %w", err)
		}
	}
	if cfg.MaxUnpackBytes == 0 {
		cfg.MaxUnpackBytes = DefaultMaxUnpackBytes
	}
	if cfg.CgroupParent == "" {
		// One parent per runc root: the reaper of one root never sees the cgroups of another
		// (a second site's agents on the same machine, tests).
		sum := sha256.Sum256([]byte(cfg.Root))
		cfg.CgroupParent = defaultCgroupParent + "/" + hex.EncodeToString(sum[:4])
	}
	if cfg.TmpfsBytes <= 0 {
		cfg.TmpfsBytes = DefaultTmpfsBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{cfg.Root, cfg.BundleDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("oci runtime: %w", err)
		}
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil, fmt.Errorf("oci runtime: nofile limit: %w", err)
	}
	return &OCI{
		cfg:        cfg,
		engine:     eng,
		keychain:   keychainOrDefault(cfg.Keychain),
		log:        log,
		hostNofile: rl.Max,
		cache:      &cache{dir: cfg.CacheDir, layout: filepath.Join(cfg.CacheDir, "layout")},
		held:       map[string]func(){},
		filterMiss: map[string]string{},
	}, nil
}

// ensureCache creates the cache layout on first use (NewOCI has no context to wait for the
// cache lock with).
func (o *OCI) ensureCache(ctx context.Context) error {
	o.initMu.Lock()
	defer o.initMu.Unlock()
	if o.inited {
		return nil
	}
	if err := o.cache.init(ctx); err != nil {
		return err
	}
	o.inited = true
	return nil
}

// Run implements Runtime.
func (o *OCI) Run(ctx context.Context, s Spec) (Result, error) {
	if err := validate(s); err != nil {
		return Result{}, err
	}
	notStarted := Result{ExitCode: -1, Canceled: true}
	if ctx.Err() != nil {
		return notStarted, nil
	}
	if err := o.ensureCache(ctx); err != nil {
		if ctx.Err() != nil {
			return notStarted, nil
		}
		return Result{}, fmt.Errorf("run %s: %w", s.ID, err)
	}
	bundle := filepath.Join(o.cfg.BundleDir, s.ID)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Result{}, fmt.Errorf("run %s: %w: id in use", s.ID, ErrInvalidSpec)
		}
		return Result{}, fmt.Errorf("run %s: %w", s.ID, err)
	}
	// The owner lock tells other agents sharing Root that this container is alive. It is
	// released after the container is deleted and its bundle removed (or by the kernel when
	// this process dies, which is what makes the container reapable).
	unlock, err := takeOwnerLock(bundle)
	if err != nil {
		_ = untar.RemoveAll(bundle)
		return Result{}, fmt.Errorf("run %s: %w", s.ID, err)
	}
	release := func() {}
	cleanup := func() {
		if err := removeBundle(bundle); err != nil {
			// Reap removes it at the next start; the run's outcome stands.
			o.log.Warn("remove container bundle", "container", s.ID, "error", err)
		}
		release()
		unlock()
	}
	var deleteLater func(context.Context) error
	defer func() {
		if deleteLater == nil {
			cleanup()
			return
		}
		// The container exited by itself and its outcome is known: its deletion (a runc
		// process start, the cgroups) and its bundle's removal wait for Wait, so that they
		// take no CPU from the job's uploads and reports.
		dctx := context.WithoutCancel(ctx)
		o.laterMu.Lock()
		o.later = append(o.later, func() {
			if err := deleteLater(dctx); err != nil {
				o.log.Warn("delete an exited container; the next agent's reap removes it", "container", s.ID, "error", err)
			}
			cleanup()
		})
		o.laterMu.Unlock()
	}()
	release, err = o.prepare(ctx, s, bundle)
	if err != nil {
		if ctx.Err() != nil {
			return notStarted, nil
		}
		return Result{}, fmt.Errorf("run %s: %w", s.ID, noSpace(err))
	}
	o.log.Debug("container bundle ready", "container", s.ID)
	var res Result
	res, deleteLater, err = o.run(ctx, s, bundle)
	if err != nil {
		return res, fmt.Errorf("run %s: %w", s.ID, err)
	}
	return res, nil
}

// Wait deletes the containers that exited by themselves since the last Wait, and removes
// their bundles: an agent calls it once the job's final state is reported, before it exits
// (see Waiter).
func (o *OCI) Wait() {
	o.laterMu.Lock()
	later := o.later
	o.later = nil
	o.laterMu.Unlock()
	for _, del := range later {
		del()
	}
}

// prepare makes <bundle>/rootfs (an overlay of the image's shared tree, or a private copy)
// and writes <bundle>/config.json. release ends the container's use of the shared tree: call
// it once the bundle's root is unmounted (it is never nil).
func (o *OCI) prepare(ctx context.Context, s Spec, bundle string) (release func(), err error) {
	release = func() {}
	_, refDigest, err := o.parseRef(s.Image)
	if err != nil {
		return release, err
	}
	imgDigest, ok, err := o.cache.lookup(ctx, refDigest)
	if err != nil {
		return release, err
	}
	if !ok {
		return release, fmt.Errorf("%s: %w", s.Image, ErrNotPulled)
	}
	rawManifest, err := o.cache.readSmallBlob(imgDigest)
	if err != nil {
		return release, o.corrupt(ctx, imgDigest, err)
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return release, fmt.Errorf("manifest %s: %w", imgDigest, err)
	}
	rawConfig, err := o.cache.readSmallBlob(manifest.Config.Digest)
	if err != nil {
		return release, o.corrupt(ctx, imgDigest, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return release, fmt.Errorf("image config %s: %w", manifest.Config.Digest, err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return release, fmt.Errorf("image %s is for %s, not linux", s.Image, cfg.OS)
	}

	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return release, fmt.Errorf("rootfs: %w", err)
	}
	log := o.log.With("container", s.ID)
	shared := false
	if !o.cfg.PrivateRootfs && !o.noOverlay.Load() {
		tree, rel, bad, err := o.sharedTree(ctx, imgDigest, manifest.Layers, log)
		if bad != nil {
			return release, o.corrupt(ctx, imgDigest, err, *bad)
		}
		if err != nil {
			return release, err
		}
		err = mountOverlay(tree, bundle)
		tree.Close()
		if err != nil {
			rel()
			if o.noOverlay.CompareAndSwap(false, true) {
				o.log.Warn("the container root cannot be an overlay of the image's shared unpacked tree on this node: each container gets its own unpacked copy (slower)",
					"error", err)
			}
		} else {
			shared, release = true, rel
		}
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return release, fmt.Errorf("rootfs: %w", err)
	}
	defer root.Close()
	if !shared {
		if bad, err := o.unpackLayers(ctx, root, manifest.Layers, log); bad != nil {
			return release, o.corrupt(ctx, imgDigest, err, *bad)
		} else if err != nil {
			return release, err
		}
	}
	user, err := resolveUser(root, cfg.Config.User)
	if err != nil {
		return release, err
	}
	cgroupsPath := path.Join(o.cfg.CgroupParent, s.ID)
	spec, err := runtimeSpec(s, cfg.Config, user, o.hostNofile, cgroupsPath, o.cfg.TmpfsBytes)
	if err != nil {
		return release, err
	}
	if o.engine.name == EngineCrun {
		if err := addCacheKeyRule(spec.Linux.Seccomp); err != nil {
			return release, err
		}
		if err := o.useCachedFilter(s.ID, spec); err != nil {
			return release, err
		}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return release, fmt.Errorf("config.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return release, fmt.Errorf("config.json: %w", err)
	}
	return release, nil
}

// corrupt evicts an image whose cached blob failed verification (and that blob), so the
// next Pull fetches it again, and returns cause.
func (o *OCI) corrupt(ctx context.Context, image v1.Hash, cause error, blobs ...v1.Hash) error {
	var blob *v1.Hash
	if len(blobs) > 0 {
		blob = &blobs[0]
	} else if errors.Is(cause, ErrDigestMismatch) {
		blob = &image
	}
	if err := o.cache.evict(context.WithoutCancel(ctx), image, blob); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// run runs the container with the engine (runRunc or runCrun).
func (o *OCI) run(ctx context.Context, s Spec, bundle string) (res Result, deleteLater func(context.Context) error, err error) {
	if o.engine.name == EngineCrun {
		return o.runCrun(ctx, s, bundle)
	}
	return o.runRunc(ctx, s, bundle)
}

// runRunc starts `runc run` and waits for it, stopping the container on cancellation or
// timeout. runc runs in its own process group so a terminal's Ctrl-C reaches the agent only;
// it is never signaled itself (see the package comment). When the container exited by itself
// (no stop, no start failure), it returns its deletion as deleteLater instead of running it;
// otherwise the container is deleted when it returns.
func (o *OCI) runRunc(ctx context.Context, s Spec, bundle string) (res Result, deleteLater func(context.Context) error, err error) {
	logPath := filepath.Join(bundle, "runc.log")
	cmd := exec.Command(o.engine.path, "--root", o.cfg.Root, "--log", logPath, "--log-format", "json",
		"run", "--keep", "--bundle", bundle, s.ID)
	cmd.Stdout, cmd.Stderr = orDiscard(s.Stdout), orDiscard(s.Stderr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The container's processes die with its init, so the streams close promptly; this
	// only bounds a pathological writer.
	cmd.WaitDelay = 10 * time.Second

	res.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return res, nil, fmt.Errorf("start runc: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitErr, stopErr := o.supervise(ctx, s, &res, done)
	res.Ended = time.Now()

	// The container was kept (--keep) so its cgroup can still be read.
	cctx := context.WithoutCancel(ctx)
	res.OOMKilled = o.oomKilled(s.ID)
	var exitErr *exec.ExitError
	switch {
	case stopErr != nil:
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &exitErr) && exitErr.ExitCode() >= 0:
		res.ExitCode = exitErr.ExitCode()
	default:
		// runc was killed by a signal, or copying the container's streams failed.
		return res, nil, errors.Join(fmt.Errorf("runc run: %w", waitErr), o.delete(cctx, s.ID))
	}
	return o.finish(cctx, s.ID, logPath, res, stopErr)
}

// finish ends a run whose exit code is in res: a stop that failed, a start failure (the
// engine exited non-zero with error lines in its log at logPath), or the container's own
// end. The container is deleted before it returns unless it exited by itself, when its
// deletion is returned as deleteLater.
func (o *OCI) finish(cctx context.Context, id, logPath string, res Result, stopErr error) (Result, func(context.Context) error, error) {
	del := func(ctx context.Context) error { return o.delete(ctx, id) }
	if stopErr != nil {
		return res, nil, errors.Join(stopErr, del(cctx))
	}
	if res.ExitCode != 0 && !res.Canceled && !res.TimedOut {
		if msg := runcErrors(logPath); msg != "" {
			return res, nil, errors.Join(&StartError{ID: id, Message: msg}, del(cctx))
		}
	}
	if res.Canceled || res.TimedOut {
		return res, nil, del(cctx)
	}
	return res, del, nil
}

// supervise waits for the container's end (done), and stops it on cancellation (setting
// res.Canceled) or when s.Timeout passes (res.TimedOut). It returns done's error, or stop's.
func (o *OCI) supervise(ctx context.Context, s Spec, res *Result, done <-chan error) (waitErr, stopErr error) {
	timeout, release := s.deadline()
	defer release()
	grace := s.grace()
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		res.Canceled = true
		waitErr, stopErr = o.stop(ctx, s.ID, grace, done)
	case <-timeout:
		res.TimedOut = true
		waitErr, stopErr = o.stop(ctx, s.ID, grace, done)
	}
	return waitErr, stopErr
}

// noSpace marks a full disk (ENOSPC, EDQUOT) as ErrNoSpace.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// stop sends TERM, waits up to grace, then sends KILL to every process of the container
// until `runc run` returns. Signals are retried while runc has not created the container
// yet. It returns runc run's wait error, or an error of its own when the container outlives
// SIGKILL by killWait.
func (o *OCI) stop(ctx context.Context, id string, grace time.Duration, done <-chan error) (waitErr, err error) {
	cctx := context.WithoutCancel(ctx)
	graceT := time.NewTimer(grace)
	defer graceT.Stop()
	termed := false
	for !termed {
		termed = o.kill(cctx, id, "TERM", false) == nil
		if termed {
			break
		}
		select {
		case err := <-done:
			return err, nil
		case <-graceT.C:
			return o.killHard(cctx, id, done)
		case <-time.After(signalRetry):
		}
	}
	select {
	case err := <-done:
		return err, nil
	case <-graceT.C:
		return o.killHard(cctx, id, done)
	}
}

func (o *OCI) killHard(ctx context.Context, id string, done <-chan error) (waitErr, err error) {
	deadline := time.NewTimer(killWait)
	defer deadline.Stop()
	for {
		if err := o.kill(ctx, id, "KILL", true); err != nil {
			o.log.Debug("runc kill", "container", id, "error", err)
		}
		select {
		case err := <-done:
			return err, nil
		case <-deadline.C:
			return nil, fmt.Errorf("container %s still running %s after SIGKILL", id, killWait)
		case <-time.After(5 * signalRetry):
		}
	}
}

// kill runs `runc kill [--all] ID SIG` (or crun's, for a container crun made).
func (o *OCI) kill(ctx context.Context, id, sig string, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := o.call(ctx, id, append(args, id, sig)...)
	return err
}

// delete runs `runc delete --force ID` (or crun's); a container that does not exist is not
// an error.
func (o *OCI) delete(ctx context.Context, id string) error {
	if _, err := os.Stat(filepath.Join(o.cfg.Root, id)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := o.call(ctx, id, "delete", "--force", id); err != nil {
		if _, serr := os.Stat(filepath.Join(o.cfg.Root, id)); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// call runs a short sub-command about container id with the engine that made it (see
// engineOf).
func (o *OCI) call(ctx context.Context, id string, args ...string) ([]byte, error) {
	eng, err := o.engineOf(id)
	if err != nil {
		return nil, err
	}
	return o.engineCall(ctx, eng, args...)
}

// runcCall runs a short sub-command of this runtime's own engine.
func (o *OCI) runcCall(ctx context.Context, args ...string) ([]byte, error) {
	return o.engineCall(ctx, o.engine, args...)
}

// engineCall runs a short runc or crun sub-command under our --root. Unlike `runc run` or a
// container's process, these may be killed by their context: they do not own the container.
func (o *OCI) engineCall(ctx context.Context, eng engine, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, runcCallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, eng.path, append([]string{"--root", o.cfg.Root}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", eng.name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// runcErrors returns the error-level messages of a runc or crun --log-format json log,
// joined.
func runcErrors(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msgs = append(msgs, e.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// oomKilled reports whether the kernel OOM-killed a process in the container's memory cgroup.
// Method: runc's state file (<root>/<id>/state.json, kept by `run --keep` until delete) names
// the container's cgroup directories, crun's (<root>/<id>/status, kept until delete) its
// cgroup path; cgroup v1 counts kills in memory.oom_control ("oom_kill N", Linux ≥ 4.13),
// cgroup v2 in memory.events ("oom_kill N"). An exit status of 137 alone cannot tell an OOM
// kill from any other SIGKILL.
func (o *OCI) oomKilled(id string) bool {
	if o.engine.name == EngineCrun {
		return o.crunOOMKilled(id)
	}
	b, err := os.ReadFile(filepath.Join(o.cfg.Root, id, "state.json"))
	if err != nil {
		return false // runc never created the container
	}
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		o.log.Warn("read runc state", "container", id, "error", err)
		return false
	}
	if p, ok := st.CgroupPaths["memory"]; ok {
		return counter(filepath.Join(p, "memory.oom_control"), "oom_kill") > 0
	}
	if p, ok := st.CgroupPaths[""]; ok {
		return counter(filepath.Join(p, "memory.events"), "oom_kill") > 0
	}
	return false
}

// counter reads "key N" from a cgroup flat-keyed file; 0 when absent.
func counter(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// ownerLockFile is the name of the owner lock inside a bundle.
const ownerLockFile = "cts-owner.lock"

// takeOwnerLock creates <bundle>/cts-owner.lock and holds an exclusive flock on it until the
// returned function is called.
func takeOwnerLock(bundle string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(bundle, ownerLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("owner lock: %w", err)
	}
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	return func() { unlockClose(f) }, nil
}

// ownerGone reports whether the agent owning the bundle is dead: its owner lock can be taken
// (or there is no lock: the bundle is gone or predates owner locks). When it returns true the
// caller holds the lock until release is called, so that two reapers do not race.
func ownerGone(bundle string) (gone bool, release func()) {
	f, err := os.OpenFile(filepath.Join(bundle, ownerLockFile), os.O_RDWR, 0)
	if err != nil {
		return true, func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false, nil
	}
	return true, func() { unlockClose(f) }
}

// bundleOf returns the bundle directory the engine recorded for container id ("" if
// unknown).
func (o *OCI) bundleOf(ctx context.Context, id string) string {
	out, err := o.call(ctx, id, "state", id)
	if err != nil {
		return ""
	}
	var st struct {
		Bundle string `json:"bundle"`
	}
	if json.Unmarshal(out, &st) != nil {
		return ""
	}
	return st.Bundle
}

// list returns the containers under Root, as `runc list` and `crun list` find them without
// their process start (~0.1 s of an agent's start-up): each directory holding a state file
// that parses, runc's state.json or crun's status. A directory without one is a container
// being created or deleted (`runc list` skips it too), or crun's seccomp cache (.cache); a
// missing Root holds none.
func (o *OCI) list() ([]string, error) {
	entries, err := os.ReadDir(o.cfg.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list containers under %s: %w", o.cfg.Root, err)
	}
	var ids []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if stateFile(o.cfg.Root, e.Name()) != "" {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Known implements Runtime: runc and crun keep a state directory per container under Root.
func (o *OCI) Known(_ context.Context, id string) bool {
	if !idPattern.MatchString(id) {
		return false
	}
	_, err := os.Stat(filepath.Join(o.cfg.Root, id))
	return err == nil
}

// Remove implements Runtime.
func (o *OCI) Remove(ctx context.Context, id string) error {
	if !idPattern.MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("remove container %q: %w: bad id", id, ErrInvalidSpec)
	}
	bundle := o.bundleOf(ctx, id)
	if o.Known(ctx, id) {
		if err := o.kill(ctx, id, "KILL", true); err != nil {
			o.log.Debug("remove: kill", "container", id, "error", err)
		}
		if err := o.delete(ctx, id); err != nil {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
	}
	for _, b := range []string{bundle, filepath.Join(o.cfg.BundleDir, id)} {
		if b == "" || !o.ours(b) {
			continue
		}
		// A live owner removes its bundle itself once its run returns.
		if gone, release := ownerGone(b); gone {
			err := removeBundle(b)
			release()
			if err != nil {
				return fmt.Errorf("remove container %s: %w", id, err)
			}
		}
	}
	return nil
}

// ours reports whether dir is a bundle this runtime made: it lies in BundleDir, or it holds an
// owner lock file. Anything else a runc state names is left alone.
func (o *OCI) ours(dir string) bool {
	if filepath.Dir(dir) == o.cfg.BundleDir {
		return true
	}
	_, err := os.Stat(filepath.Join(dir, ownerLockFile))
	return err == nil
}

// Reap implements Runtime. Root and BundleDir may be shared by several live agents, so it
// only touches what belongs to dead ones: for each container under Root it reads the bundle
// runc recorded, and kills and deletes the container only when the bundle's owner lock is
// free (the owning agent has exited: the kernel releases a dead process's flocks, so there is
// no pid reuse to be fooled by). Then it removes the bundles under BundleDir whose owner lock
// is free, and the cgroups under CgroupParent that no container of Root owns (a `runc run`
// killed half-way leaves one).
func (o *OCI) Reap(ctx context.Context, apply bool) ([]Leftover, error) {
	ids, err := o.list()
	if err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	var left []Leftover
	var errs []error
	for _, id := range ids {
		bundle := o.bundleOf(ctx, id)
		gone, release := true, func() {}
		if bundle != "" {
			gone, release = ownerGone(bundle)
		}
		if !gone {
			o.log.Debug("reap: container owned by a live agent", "container", id)
			continue
		}
		left = append(left, Leftover{Kind: "container", ID: id, Detail: engineName(o.cfg.Root, id) + " state under " + o.cfg.Root + ", owner gone"})
		if bundle != "" && o.ours(bundle) {
			left = append(left, Leftover{Kind: "bundle", ID: bundle, Detail: "of container " + id})
		}
		if !apply {
			release()
			continue
		}
		if err := o.kill(ctx, id, "KILL", true); err != nil {
			o.log.Debug("reap: kill", "container", id, "error", err)
		}
		err := o.delete(ctx, id)
		if err == nil && bundle != "" && o.ours(bundle) {
			err = removeBundle(bundle)
		}
		release()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		o.log.Info("reaped leftover container", "container", id)
	}
	entries, err := os.ReadDir(o.cfg.BundleDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		b := filepath.Join(o.cfg.BundleDir, e.Name())
		if _, err := os.Stat(filepath.Join(b, ownerLockFile)); errors.Is(err, fs.ErrNotExist) {
			// A live agent creates the lock right after the directory: leave a fresh bundle
			// without one alone.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) < time.Minute {
				continue
			}
		}
		if o.Known(ctx, e.Name()) {
			continue // handled above (owned by a live agent, or failed to delete)
		}
		gone, release := ownerGone(b)
		if !gone {
			continue
		}
		left = append(left, Leftover{Kind: "bundle", ID: b, Detail: "owner gone"})
		if apply {
			if err := removeBundle(b); err != nil {
				errs = append(errs, err)
			}
		}
		release()
	}
	cg, err := o.reapCgroups(ctx, apply)
	left = append(left, cg...)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return left, fmt.Errorf("reap: %w", err)
	}
	return left, nil
}

// cgroupRoot is where the cgroup file systems are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// cgroupMinAge is how old a cgroup without a container must be before Reap removes it (a
// variable for tests).
var cgroupMinAge = time.Minute

// reapCgroups removes the cgroups under CgroupParent (in every cgroup v1 hierarchy, or the
// v2 one) whose container runc does not know, once they are a minute old (runc creates the
// state directory before the cgroup, so a younger one may be a container being created). The
// processes still in such a cgroup are killed first.
func (o *OCI) reapCgroups(ctx context.Context, apply bool) ([]Leftover, error) {
	var parents []string
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		parents = []string{filepath.Join(cgroupRoot, o.cfg.CgroupParent)}
	} else {
		hierarchies, _ := os.ReadDir(cgroupRoot)
		for _, h := range hierarchies {
			parents = append(parents, filepath.Join(cgroupRoot, h.Name(), o.cfg.CgroupParent))
		}
	}
	var left []Leftover
	var errs []error
	for _, parent := range parents {
		children, err := os.ReadDir(parent)
		if err != nil {
			continue // this hierarchy holds none of ours
		}
		for _, c := range children {
			if !c.IsDir() || o.Known(ctx, c.Name()) {
				continue
			}
			if info, err := c.Info(); err != nil || time.Since(info.ModTime()) < cgroupMinAge {
				continue
			}
			dir := filepath.Join(parent, c.Name())
			left = append(left, Leftover{Kind: "cgroup", ID: dir, Detail: "no container " + c.Name() + " under " + o.cfg.Root})
			if !apply {
				continue
			}
			if err := removeCgroup(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return left, errors.Join(errs...)
}

// removeCgroup kills the processes left in a cgroup and removes it.
func removeCgroup(dir string) error {
	for range 50 {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		pids := strings.Fields(string(b))
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if len(pids) == 0 && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: processes keep running in it", dir)
}
