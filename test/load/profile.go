package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ProfileCPU fetches consecutive CPU profiles of every coordinator (each period long) into
// the site's profile folder as <name>.cpu.<n>.pprof until ctx ends; `go tool pprof` merges
// them when given together. It returns at once when the site has no profile folder.
func (s *Site) ProfileCPU(ctx context.Context, period time.Duration) {
	if s.Opts.Profile == "" {
		return
	}
	for n := 0; ctx.Err() == nil; n++ {
		done := make(chan struct{}, len(s.Coordinators))
		for _, c := range s.Coordinators {
			go func() {
				defer func() { done <- struct{}{} }()
				path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(period.Seconds()))
				_ = s.fetchProfile(ctx, c, path, fmt.Sprintf("%s.cpu.%03d.pprof", c.Name, n))
			}()
		}
		for range s.Coordinators {
			<-done
		}
	}
}

// ProfileHeap writes each coordinator's heap profile and goroutine profile (with a label,
// e.g. "peak") into the site's profile folder, when it has one.
func (s *Site) ProfileHeap(ctx context.Context, label string) {
	if s.Opts.Profile == "" {
		return
	}
	for _, c := range s.Coordinators {
		if err := s.fetchProfile(ctx, c, "/debug/pprof/heap", c.Name+".heap."+label+".pprof"); err != nil {
			fmt.Fprintf(s.Opts.Log, "heap profile of %s: %v\n", c.Name, err)
		}
		_ = s.fetchProfile(ctx, c, "/debug/pprof/goroutine", c.Name+".goroutine."+label+".pprof")
	}
}

func (s *Site) fetchProfile(ctx context.Context, c *Coordinator, path, name string) error {
	return s.fetchInto(ctx, c, path, filepath.Join(s.Opts.Profile, name))
}

// fetchInto writes what the coordinator's admin endpoint path answers into the file at dst.
func (s *Site) fetchInto(ctx context.Context, c *Coordinator, path, dst string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, b)
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
