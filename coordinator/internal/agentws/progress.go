package agentws

import (
	"context"
	"sync"
	"time"

	"github.com/kbase/cts/shared/protocol"
)

// ContainerProgress is the latest transfer progress an agent reported for its container.
type ContainerProgress struct {
	protocol.Progress
	// Updated is when this replica received it.
	Updated time.Time
}

// progressBook keeps the latest Progress of each container whose agent is (or was recently)
// connected to this replica. Like the live log tails it lives in memory only, is best effort,
// and holds at most max containers, dropping the least recently updated first.
type progressBook struct {
	max  int
	mu   sync.Mutex
	jobs map[string]map[int]ContainerProgress
	n    int // containers held, across jobs
}

func newProgressBook(max int) *progressBook {
	if max <= 0 {
		max = 1000
	}
	return &progressBook{max: max, jobs: map[string]map[int]ContainerProgress{}}
}

func (b *progressBook) set(job string, container int, p protocol.Progress, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.jobs[job]
	if _, ok := cs[container]; !ok {
		if b.n >= b.max {
			b.evictOldest()
		}
		if cs = b.jobs[job]; cs == nil {
			cs = map[int]ContainerProgress{}
			b.jobs[job] = cs
		}
		b.n++
	}
	cs[container] = ContainerProgress{Progress: p, Updated: now}
}

// evictOldest drops the least recently updated container. The caller holds mu.
func (b *progressBook) evictOldest() {
	var (
		oldJob string
		oldC   int
		at     time.Time
		found  bool
	)
	for j, cs := range b.jobs {
		for c, p := range cs {
			if !found || p.Updated.Before(at) {
				oldJob, oldC, at, found = j, c, p.Updated, true
			}
		}
	}
	if !found {
		return
	}
	delete(b.jobs[oldJob], oldC)
	if len(b.jobs[oldJob]) == 0 {
		delete(b.jobs, oldJob)
	}
	b.n--
}

func (b *progressBook) get(job string) map[int]ContainerProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.jobs[job]
	if len(cs) == 0 {
		return nil
	}
	out := make(map[int]ContainerProgress, len(cs))
	for c, p := range cs {
		out[c] = p
	}
	return out
}

// Progress returns the latest transfer progress of each of a job's containers, by container
// number (nil when none is known): what the agents reported to this replica and, with a
// Shared store, what the other replicas published (the first call for a job records the
// interest that makes them publish it and, when no container of the job reported here, waits
// up to two intervals for them). Best effort.
func (h *Handler) Progress(ctx context.Context, jobID string) map[int]ContainerProgress {
	local := h.progress.get(jobID)
	if h.shared == nil {
		return local
	}
	out := h.remoteProgress(ctx, jobID, len(local) == 0)
	for c, p := range local {
		if cur, ok := out[c]; !ok || p.Updated.After(cur.Updated) {
			out[c] = p
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
