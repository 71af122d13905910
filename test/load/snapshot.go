package load

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// Snapshot writes what a stalled run needs to be explained into a new folder below the run's
// folder (snapshot-<time>), and returns that folder: the generator's goroutines with their
// stacks (generator.goroutines.txt), each coordinator's (<name>.goroutines.txt, from its
// /debug/pprof/), the open file descriptors of every process of the run (fds.txt), and the
// MongoDB proxy's counters with the command it runs now (mongo-stats.json, with -profile:
// the stack child writes them every 2 s). cts-load takes one on SIGUSR1.
func (s *Site) Snapshot(ctx context.Context) (string, error) {
	dir := filepath.Join(s.Opts.Dir, "snapshot-"+time.Now().UTC().Format("150405.000"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("snapshot: %w", err)
	}
	var errs []string
	f, err := os.Create(filepath.Join(dir, "generator.goroutines.txt"))
	if err == nil {
		err = pprof.Lookup("goroutine").WriteTo(f, 2)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		errs = append(errs, "generator goroutines: "+err.Error())
	}
	for _, c := range s.Coordinators {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := s.fetchInto(cctx, c, "/debug/pprof/goroutine?debug=2", filepath.Join(dir, c.Name+".goroutines.txt"))
		cancel()
		if err != nil {
			errs = append(errs, c.Name+" goroutines: "+err.Error())
		}
	}
	var fds strings.Builder
	names := s.Watch.Names()
	slices.Sort(names)
	for _, name := range names {
		for _, pid := range s.Watch.Pids(name) {
			ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if err != nil {
				fmt.Fprintf(&fds, "%s (pid %d): %v\n", name, pid, err)
				continue
			}
			sockets := 0
			for _, e := range ents {
				if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
					sockets++
				}
			}
			fmt.Fprintf(&fds, "%s (pid %d): %d open, %d sockets\n", name, pid, len(ents), sockets)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "fds.txt"), []byte(fds.String()), 0o644); err != nil {
		errs = append(errs, err.Error())
	}
	if s.Opts.Profile != "" {
		if b, err := os.ReadFile(filepath.Join(s.Opts.Profile, "mongo-stats.json")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "mongo-stats.json"), b, 0o644)
		}
	}
	now, _ := s.Stats.Online()
	summary := fmt.Sprintf("at %s: %d agents connected, %d events sent, %d acked, %d reconnects, %d ack timeouts\n%s",
		time.Now().UTC().Format(time.RFC3339), now, s.Stats.EventsSent.Load(), s.Stats.EventsAcked.Load(),
		s.Stats.Reconnects.Load(), s.Stats.AckTimeouts.Load(), fds.String())
	_ = os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(summary), 0o644)
	if len(errs) > 0 {
		return dir, fmt.Errorf("snapshot: %s", strings.Join(errs, "; "))
	}
	return dir, nil
}
