package runner

import (
	"sync"
	"time"

	"github.com/kbase/cts/shared/protocol"
)

// ProgressSink receives transfer progress reports. It must not block: session.Session queues
// them best effort, beside the live logs, so they never delay a state event.
type ProgressSink interface {
	Progress(p protocol.Progress)
}

// meter sums the per-file byte counts of the transfer client's OnProgress into one report per
// phase (the input download, the output upload), sent at most once per interval while bytes
// move, when the phase starts and when it ends. Outside a phase (the container log upload) it
// reports nothing.
type meter struct {
	sink     ProgressSink
	interval time.Duration

	mu       sync.Mutex
	active   bool
	sizes    map[string]int64 // S3 path → size (summed for a path listed twice)
	done     map[string]int64 // S3 path → bytes moved so far
	complete map[string]bool
	p        protocol.Progress
	last     time.Time
}

// start begins a phase over the files at paths with the given sizes, and reports it.
func (m *meter) start(phase string, paths []string, sizes []int64) {
	if m.sink == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active = true
	m.sizes = make(map[string]int64, len(paths))
	m.done = make(map[string]int64, len(paths))
	m.complete = map[string]bool{}
	m.p = protocol.Progress{Phase: phase, FilesTotal: len(paths)}
	for i, p := range paths {
		m.sizes[p] += sizes[i]
		m.p.BytesTotal += sizes[i]
	}
	m.send(time.Now())
}

// observe records that bytes of the file at path have moved (a restarted download counts
// from 0 again), and reports if the last report is at least interval old.
func (m *meter) observe(path string, bytes int64) {
	if m.sink == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	size, ok := m.sizes[path]
	if !m.active || !ok {
		return
	}
	bytes = min(max(bytes, 0), size)
	m.p.BytesDone += bytes - m.done[path]
	m.done[path] = bytes
	switch {
	case bytes >= size && !m.complete[path]:
		m.complete[path] = true
		m.p.FilesDone++
	case bytes < size && m.complete[path]:
		delete(m.complete, path)
		m.p.FilesDone--
	}
	if now := time.Now(); now.Sub(m.last) >= m.interval {
		m.send(now)
	}
}

// end closes the phase with a last report: everything moved when ok, else as far as it got.
func (m *meter) end(ok bool) {
	if m.sink == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.active {
		return
	}
	m.active = false
	if ok {
		m.p.BytesDone, m.p.FilesDone = m.p.BytesTotal, m.p.FilesTotal
	}
	m.send(time.Now())
}

// send reports the current progress. The caller holds mu.
func (m *meter) send(now time.Time) {
	m.last = now
	m.sink.Progress(m.p)
}

// TransferProgress counts bytes of a transfer for the progress reports (Config.Progress): plug
// it into the transfer client's OnProgress (transfer.Config). It is safe for concurrent use
// and ignores transfers outside the input download and the output upload.
func (r *Runner) TransferProgress(path string, bytes int64) {
	r.meter.observe(path, bytes)
}
