package agentws

import (
	"context"
	"sync"
	"time"
)

// LogLine is one live line of a container's output, as the agent streamed it.
type LogLine struct {
	// Stream is "stdout" or "stderr".
	Stream string
	Text   string
	// Time is when the coordinator received it.
	Time time.Time
	// Seq numbers the container's lines on the replica that received them, from 1.
	Seq int64
}

// LogConfig bounds the live log buffers.
type LogConfig struct {
	// LinesPerContainer is how many recent lines are kept per job container (default 1000).
	LinesPerContainer int
	// MaxContainers bounds how many containers have a buffer; the least recently written is
	// dropped first (default 1000).
	MaxContainers int
	// MaxBytes bounds the lines of all containers together (default 64 MiB): beyond it the
	// least recently written containers' buffers are dropped, and a single container's oldest
	// lines. Without it the two bounds above, times the 4 KiB a line may hold, allow 4 GiB.
	MaxBytes int64
}

// lineOverhead is what a stored line costs beside its text (LogLine and its slot).
const lineOverhead = 64

func lineCost(l LogLine) int64 { return int64(len(l.Text)) + lineOverhead }

// maxLineBytes bounds one stored line.
const maxLineBytes = 4 << 10

// logKey names one container of one job.
type logKey struct {
	job       string
	container int
}

// ring is the bounded buffer of one container's recent lines.
type ring struct {
	lines []LogLine
	start int // index of the oldest line when full
	seq   int64
	last  time.Time
	subs  map[chan LogLine]struct{}
}

// logBook holds the recent live lines of every container connected to this replica, and the
// subscribers that follow them. It lives in memory only: lines are best effort by design
// (the agent uploads the full logs to S3 when the container ends), and a follower on another
// replica sees the lines of the agents connected to that replica.
type logBook struct {
	cfg   LogConfig
	mu    sync.Mutex
	rings map[logKey]*ring
	// bytes is the cost of every stored line (lineCost), bounded by cfg.MaxBytes.
	bytes int64
}

func newLogBook(cfg LogConfig) *logBook {
	if cfg.LinesPerContainer <= 0 {
		cfg.LinesPerContainer = 1000
	}
	if cfg.MaxContainers <= 0 {
		cfg.MaxContainers = 1000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 64 << 20
	}
	return &logBook{cfg: cfg, rings: map[logKey]*ring{}}
}

func (b *logBook) add(job string, container int, stream string, lines []string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := logKey{job, container}
	r := b.rings[k]
	if r == nil {
		if len(b.rings) >= b.cfg.MaxContainers {
			b.evictOldest()
		}
		r = &ring{subs: map[chan LogLine]struct{}{}}
		b.rings[k] = r
	}
	r.last = now
	for _, text := range lines {
		if len(text) > maxLineBytes { // the agent truncates too; never trust it for memory
			text = text[:maxLineBytes] + " [truncated]"
		}
		r.seq++
		l := LogLine{Stream: stream, Text: text, Time: now, Seq: r.seq}
		b.bytes += lineCost(l)
		if len(r.lines) < b.cfg.LinesPerContainer {
			r.lines = append(r.lines, l)
		} else {
			b.bytes -= lineCost(r.lines[r.start])
			r.lines[r.start] = l
			r.start = (r.start + 1) % len(r.lines)
		}
		for ch := range r.subs {
			select {
			case ch <- l:
			default: // a slow follower misses lines rather than slowing the agent's session
			}
		}
	}
	b.trim(k)
}

// trim drops stored lines until they fit in cfg.MaxBytes: the buffers of the least recently
// written containers other than keep first, then keep's oldest lines. The caller holds mu.
func (b *logBook) trim(keep logKey) {
	for b.bytes > b.cfg.MaxBytes && len(b.rings) > 1 {
		r := b.rings[keep]
		delete(b.rings, keep) // not a candidate
		b.evictOldest()
		b.rings[keep] = r
	}
	r := b.rings[keep]
	if b.bytes <= b.cfg.MaxBytes || r == nil {
		return
	}
	lines := append(append([]LogLine(nil), r.lines[r.start:]...), r.lines[:r.start]...)
	for len(lines) > 0 && b.bytes > b.cfg.MaxBytes {
		b.bytes -= lineCost(lines[0])
		lines = lines[1:]
	}
	r.lines, r.start = append(make([]LogLine, 0, len(lines)), lines...), 0
}

// evictOldest drops the least recently written buffer that nobody follows (or, if all are
// followed, the least recently written one). The caller holds mu.
func (b *logBook) evictOldest() {
	var oldest logKey
	var found, foundFree bool
	var at time.Time
	for k, r := range b.rings {
		free := len(r.subs) == 0
		if !found || (free && !foundFree) || (free == foundFree && r.last.Before(at)) {
			oldest, at, found, foundFree = k, r.last, true, free
		}
	}
	if found {
		r := b.rings[oldest]
		for ch := range r.subs {
			close(ch)
		}
		for _, l := range r.lines {
			b.bytes -= lineCost(l)
		}
		delete(b.rings, oldest)
	}
}

func (b *logBook) tail(job string, container int) []LogLine {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rings[logKey{job, container}]
	if r == nil {
		return nil
	}
	out := make([]LogLine, 0, len(r.lines))
	out = append(out, r.lines[r.start:]...)
	return append(out, r.lines[:r.start]...)
}

// recent returns up to n of the most recent lines of a container, oldest first.
func (b *logBook) recent(job string, container int, n int) []LogLine {
	ls := b.tail(job, container)
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return ls
}

func (b *logBook) subscribe(job string, container int, buffer int) (<-chan LogLine, func()) {
	_, ch, cancel := b.follow(job, container, buffer, false)
	return ch, cancel
}

// follow subscribes to a container's lines and, when withTail is set, returns its current
// tail taken under the same lock: no line is both in the tail and on the channel, and none
// falls between them.
func (b *logBook) follow(job string, container int, buffer int, withTail bool) ([]LogLine, <-chan LogLine, func()) {
	if buffer <= 0 {
		buffer = 256
	}
	ch := make(chan LogLine, buffer)
	b.mu.Lock()
	k := logKey{job, container}
	r := b.rings[k]
	if r == nil {
		if len(b.rings) >= b.cfg.MaxContainers {
			b.evictOldest()
		}
		r = &ring{subs: map[chan LogLine]struct{}{}, last: time.Now()}
		b.rings[k] = r
	}
	var tail []LogLine
	if withTail {
		tail = make([]LogLine, 0, len(r.lines))
		tail = append(tail, r.lines[r.start:]...)
		tail = append(tail, r.lines[:r.start]...)
	}
	r.subs[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return tail, ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if r, ok := b.rings[k]; ok {
				if _, ok := r.subs[ch]; ok {
					delete(r.subs, ch)
					close(ch)
				}
			}
		})
	}
}

// Tail returns the most recent live lines of a job's container received by this replica,
// oldest first (at most LogConfig.LinesPerContainer; nil when none).
func (h *Handler) Tail(jobID string, container int) []LogLine {
	return h.logs.tail(jobID, container)
}

// Subscribe follows a job container's live lines from now on. The channel is closed by the
// returned cancel function (call it exactly when done; it is idempotent), or when the
// container's buffer is evicted. A follower that does not keep up (buffer full) misses lines:
// followers never slow down an agent. Call Tail first for the recent past.
func (h *Handler) Subscribe(jobID string, container int, buffer int) (<-chan LogLine, func()) {
	return h.logs.subscribe(jobID, container, buffer)
}

// Follow is Tail and Subscribe in one step: the recent lines, then every later line on the
// channel, with none missed or repeated in between. The channel and cancel behave as
// Subscribe's. Live log streams (GET .../live) use it.
//
// With a Shared store (several replicas), the lines of the container's agent connected to
// another replica arrive too: Follow records the interest that makes that replica publish
// them, and polls them every interval until cancel (the tail then includes what was already
// published; a line may arrive up to a few intervals late).
func (h *Handler) Follow(ctx context.Context, jobID string, container int, buffer int) (tail []LogLine, lines <-chan LogLine, cancel func()) {
	tail, local, cancelLocal := h.logs.follow(jobID, container, buffer, true)
	if h.shared == nil {
		return tail, local, cancelLocal
	}
	if buffer <= 0 {
		buffer = 256
	}
	rf := &remoteFollower{h: h, job: jobID, container: container, last: map[string]int64{}}
	key := liveKey(jobID, container)
	if _, err := h.shared.setInterest(ctx, key); err != nil {
		h.log.WarnContext(ctx, "live log: record interest for the other replicas", "job_id", jobID, "error", err)
	}
	if remote, err := rf.read(ctx); err == nil {
		tail = append(tail, remote...)
	}
	out := make(chan LogLine, buffer)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		t := time.NewTicker(h.shared.interval)
		defer t.Stop()
		renew := time.NewTicker(interestRenew)
		defer renew.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case l, ok := <-local:
				if !ok {
					return
				}
				out <- l // buffer-sized, as the local channel: a slow follower is dropped there
			case <-renew.C:
				_, _ = h.shared.setInterest(ctx, key)
			case <-t.C:
				remote, err := rf.read(ctx)
				if err != nil {
					continue // the next poll tries again
				}
				for _, l := range remote {
					select {
					case out <- l:
					default: // a slow follower misses lines
					}
				}
			}
		}
	}()
	var once sync.Once
	return tail, out, func() {
		once.Do(func() {
			close(stop)
			cancelLocal()
			<-done
		})
	}
}

// String renders a line for a plain-text follower: "stderr: text".
func (l LogLine) String() string {
	return l.Stream + ": " + l.Text
}
