package minicondor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// EnvDir names the environment variable holding the state directory.
const EnvDir = "MINICONDOR_DIR"

// JobStatus codes, as HTCondor numbers them.
const (
	StatusIdle      = 1
	StatusRunning   = 2
	StatusRemoved   = 3
	StatusCompleted = 4
	StatusHeld      = 5
)

// Ad is one proc's ClassAd: attribute name → int64, float64, string, bool, Expression, nil
// (undefined), Ad or []any, the values ParseAds gives and MarshalAd writes.
type Ad map[string]any

// Int returns the integer value of attribute name (a real is truncated), and whether it has
// one.
func (a Ad) Int(name string) (int64, bool) {
	switch v := a[name].(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case float64:
		return int64(v), true
	}
	return 0, false
}

// String returns the string value of attribute name ("" when absent, not a string, or an
// expression).
func (a Ad) String(name string) string {
	s, _ := a[name].(string)
	return s
}

// Bool returns the boolean value of attribute name.
func (a Ad) Bool(name string) bool {
	b, _ := a[name].(bool)
	return b
}

// ExprText returns the text of attribute name when it is an expression (or, for an attribute
// written as a string, that string).
func (a Ad) ExprText(name string) string {
	switch v := a[name].(type) {
	case Expression:
		return string(v)
	case string:
		return v
	}
	return ""
}

// ID is "cluster.proc".
func (a Ad) ID() string {
	c, _ := a.Int("ClusterId")
	p, _ := a.Int("ProcId")
	return fmt.Sprintf("%d.%d", c, p)
}

// State is the simulator's state directory.
type State struct {
	Dir string
}

// OpenState returns the state in dir, creating its layout.
func OpenState(dir string) (*State, error) {
	if dir == "" {
		return nil, fmt.Errorf("%s is not set", EnvDir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"queue", "history", "execute", "shadow"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	return &State{Dir: abs}, nil
}

// Lock takes the state's exclusive lock; the returned function releases it.
func (s *State) Lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// nextCluster allocates a ClusterId; the caller holds the lock.
func (s *State) nextCluster() (int64, error) {
	p := filepath.Join(s.Dir, "next_cluster")
	n := int64(1)
	if b, err := os.ReadFile(p); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			n = v
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if err := writeAtomic(p, []byte(strconv.FormatInt(n+1, 10))); err != nil {
		return 0, err
	}
	return n, nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *State) queuePath(id string) string   { return filepath.Join(s.Dir, "queue", id+".json") }
func (s *State) historyPath(id string) string { return filepath.Join(s.Dir, "history", id+".json") }

// ScratchDir is the scratch directory of proc id.
func (s *State) ScratchDir(id string) string { return filepath.Join(s.Dir, "execute", id) }

// writeQueue writes ad into the queue (atomically).
func (s *State) writeQueue(ad Ad) error {
	b, err := MarshalAd(ad)
	if err != nil {
		return err
	}
	return writeAtomic(s.queuePath(ad.ID()), b)
}

// toHistory moves ad out of the queue into the history.
func (s *State) toHistory(ad Ad) error {
	b, err := MarshalAd(ad)
	if err != nil {
		return err
	}
	if err := writeAtomic(s.historyPath(ad.ID()), b); err != nil {
		return err
	}
	if err := os.Remove(s.queuePath(ad.ID())); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// readAd reads one ad file; a missing file gives (nil, nil).
func readAd(path string) (Ad, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ads, err := ParseAds(b)
	if err != nil || len(ads) != 1 {
		return nil, fmt.Errorf("ad %s: %d ads, %v", path, len(ads), err)
	}
	return ads[0], nil
}

// QueueAd reads proc id from the queue ((nil, nil) when it is not there).
func (s *State) QueueAd(id string) (Ad, error) { return readAd(s.queuePath(id)) }

// list reads every ad of one table ("queue" or "history"), sorted by cluster and proc. Files
// that vanish while listing (a proc moving to the history) are skipped.
func (s *State) list(table string) ([]Ad, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, table))
	if err != nil {
		return nil, err
	}
	var ads []Ad
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		ad, err := readAd(filepath.Join(s.Dir, table, e.Name()))
		if err != nil {
			return nil, err
		}
		if ad != nil {
			ads = append(ads, ad)
		}
	}
	sort.Slice(ads, func(i, j int) bool {
		ci, _ := ads[i].Int("ClusterId")
		cj, _ := ads[j].Int("ClusterId")
		if ci != cj {
			return ci < cj
		}
		pi, _ := ads[i].Int("ProcId")
		pj, _ := ads[j].Int("ProcId")
		return pi < pj
	})
	return ads, nil
}
