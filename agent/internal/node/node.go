// Package node owns what the agents of one worker node share besides the image cache and the
// container runtime's own state: a registry of the live agents, and the cleanup of what dead
// agents left in their work directories.
//
// Each agent registers a file <NodeDir>/agents/<pid>-<random>.json naming its attempt and
// work directory, and holds an exclusive flock on it for its whole life. The kernel releases
// a dead process's flocks when it exits (zombie or not), so a registration whose lock can be
// taken belongs to a dead agent: no pid is trusted, and pid reuse cannot fool it. Reap removes
// what such an agent created in its work directory (inputs, outputs, bundles, container logs;
// the whole directory when the agent created it, as a hand run does) and then its
// registration.
//
// It must not know containers (the runtimes reap their own leftovers, first) nor the
// coordinator.
package node

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Registration is what an agent records about itself.
type Registration struct {
	Attempt string `json:"attempt"`
	// WorkDir is the agent's work directory (absolute).
	WorkDir string `json:"work_dir"`
	// OwnWorkDir reports that the agent created WorkDir itself (a hand run's ./cts-work): its
	// reaper removes the whole directory, not only what the agent put in it.
	OwnWorkDir bool      `json:"own_work_dir"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
}

// Leftover is one thing a dead agent left on the node.
type Leftover struct {
	// Kind is "work data" or "registration" here; the runtimes add their own kinds.
	Kind string
	// Path is what is (or would be) removed.
	Path string
	// Detail says whose it was.
	Detail string
}

func (l Leftover) String() string { return fmt.Sprintf("%-12s %s (%s)", l.Kind, l.Path, l.Detail) }

// WorkData lists what an agent creates in its work directory, relative to it; Reap and a
// finished run remove these.
var WorkData = []string{"input", "output", "bundles", "container-*-stdout.txt", "container-*-stderr.txt"}

// tempSuffix marks a registration being written (not yet locked and renamed).
const tempSuffix = ".tmp"

// Registry is the node's agent registry.
type Registry struct {
	dir string
}

// Open opens (creating) the registry under nodeDir.
func Open(nodeDir string) (*Registry, error) {
	dir := filepath.Join(nodeDir, "agents")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node registry: %w", err)
	}
	return &Registry{dir: dir}, nil
}

// Register records reg and holds its lock until release is called (or the process dies).
// The file is written and locked under a temporary name and renamed into place, so a
// reaper never sees a registration that is not locked yet.
func (r *Registry) Register(reg Registration) (release func(), err error) {
	if !filepath.IsAbs(reg.WorkDir) {
		return nil, fmt.Errorf("register agent: work dir %q is not absolute", reg.WorkDir)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := filepath.Join(r.dir, fmt.Sprintf("%d-%s.json", reg.PID, hex.EncodeToString(b[:])))
	f, err := os.OpenFile(name+tempSuffix, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("register agent: %w", err)
	}
	fail := func(err error) (func(), error) {
		f.Close()
		os.Remove(name + tempSuffix)
		return nil, fmt.Errorf("register agent: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fail(err)
	}
	if err := json.NewEncoder(f).Encode(reg); err != nil {
		return fail(err)
	}
	if err := os.Rename(name+tempSuffix, name); err != nil {
		return fail(err)
	}
	return func() {
		os.Remove(name)
		// Unlock first: a forked child shares the open file until it execs.
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Reap finds the registrations of dead agents and, when apply is set, removes what each left
// in its work directory and then the registration. inUse reports whether a bundle (by its
// container ID) still belongs to a container the runtime knows: its bundle is then left for
// the runtime's own reaper. It returns what it removed (or would remove).
func (r *Registry) Reap(apply bool, inUse func(id string) bool) ([]Leftover, error) {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return nil, fmt.Errorf("reap work dirs: %w", err)
	}
	var out []Leftover
	var errs []error
	for _, e := range entries {
		p := filepath.Join(r.dir, e.Name())
		if strings.HasSuffix(e.Name(), tempSuffix) {
			// An agent died between creating and renaming its registration.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				out = append(out, Leftover{Kind: "registration", Path: p, Detail: "never completed"})
				if apply {
					_ = os.Remove(p)
				}
			}
			continue
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		left, err := r.reapOne(p, apply, inUse)
		out = append(out, left...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("reap work dirs: %w", err)
	}
	return out, nil
}

func (r *Registry) reapOne(p string, apply bool, inUse func(string) bool) ([]Leftover, error) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // its agent released it just now
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return nil, nil // a live agent holds it
	}
	var reg Registration
	if err := json.NewDecoder(f).Decode(&reg); err != nil {
		// Unreadable: nothing to clean but the file.
		out := []Leftover{{Kind: "registration", Path: p, Detail: "unreadable: " + err.Error()}}
		if apply {
			return out, os.Remove(p)
		}
		return out, nil
	}
	who := fmt.Sprintf("agent %d, attempt %s, started %s", reg.PID, reg.Attempt, reg.Started.UTC().Format(time.RFC3339))
	var out []Leftover
	var errs []error
	for _, d := range workDataPaths(reg, inUse) {
		out = append(out, Leftover{Kind: "work data", Path: d, Detail: who})
		if apply {
			if err := removeTree(d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	out = append(out, Leftover{Kind: "registration", Path: p, Detail: who})
	if apply && len(errs) == 0 {
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// workDataPaths lists the existing paths a dead agent's reaper removes. A bundle whose
// container the runtime still knows is left alone (the runtime reaps it with its container).
func workDataPaths(reg Registration, inUse func(string) bool) []string {
	wd := filepath.Clean(reg.WorkDir)
	if !filepath.IsAbs(wd) || wd == "/" {
		return nil
	}
	if _, err := os.Stat(wd); err != nil {
		return nil
	}
	if reg.OwnWorkDir {
		busy := false
		if inUse != nil {
			bundles, _ := os.ReadDir(filepath.Join(wd, "bundles"))
			for _, b := range bundles {
				busy = busy || inUse(b.Name())
			}
		}
		if !busy {
			return []string{wd}
		}
	}
	var out []string
	for _, pattern := range WorkData {
		matches, _ := filepath.Glob(filepath.Join(wd, pattern))
		for _, m := range matches {
			if filepath.Base(m) == "bundles" && inUse != nil {
				bundles, _ := os.ReadDir(m)
				var free []string
				for _, b := range bundles {
					if !inUse(b.Name()) {
						free = append(free, filepath.Join(m, b.Name()))
					}
				}
				if len(free) < len(bundles) {
					out = append(out, free...)
					continue
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// CleanWorkDir removes what an agent created in its work directory (WorkData), or the whole
// directory when own is set: what a finished run does unless told to keep it.
func CleanWorkDir(workDir string, own bool) error {
	wd := filepath.Clean(workDir)
	if !filepath.IsAbs(wd) || wd == "/" {
		return fmt.Errorf("clean work dir: %q is not a work directory", workDir)
	}
	if own {
		if err := removeTree(wd); err != nil {
			return fmt.Errorf("clean work dir: %w", err)
		}
		return nil
	}
	var errs []error
	for _, pattern := range WorkData {
		matches, _ := filepath.Glob(filepath.Join(wd, pattern))
		for _, m := range matches {
			if err := removeTree(m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean work dir: %w", err)
	}
	return nil
}
