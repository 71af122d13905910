package runner

import (
	"fmt"
	"os"
)

// logFile is one of the container's log files (stdout or stderr), bounded: the first max
// bytes are kept, the rest is counted and dropped (the container is never slowed or stopped
// for it), and Close appends a line saying how much was dropped. A container writing 10 GB
// to stdout thus costs the node at most max bytes of disk per stream, and the log folder in S3
// the same.
type logFile struct {
	f       *os.File
	max     int64
	written int64
	dropped int64
	err     error
	closed  bool
}

func createLog(path string, max int64) (*logFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &logFile{f: f, max: max}, nil
}

// Write implements io.Writer. It reports the whole of p written even when it drops some: the
// container's output must keep flowing. A write error of the file is kept for Close.
func (l *logFile) Write(p []byte) (int, error) {
	n := len(p)
	if room := l.max - l.written; int64(len(p)) > room {
		l.dropped += int64(len(p)) - max(room, 0)
		p = p[:max(room, 0)]
	}
	if len(p) > 0 && l.err == nil {
		w, err := l.f.Write(p)
		l.written += int64(w)
		l.err = err
	}
	return n, nil
}

// Close appends the truncation note, if any, and closes the file. Later calls return the
// first one's error.
func (l *logFile) Close() error {
	if l.closed {
		return l.err
	}
	l.closed = true
	if l.dropped > 0 && l.err == nil {
		_, l.err = fmt.Fprintf(l.f, "\n[cts-agent: log truncated: the first %d bytes were kept and the next %d dropped (CTS_AGENT_LOG_MAX_MB)]\n", l.written, l.dropped)
	}
	if err := l.f.Close(); l.err == nil {
		l.err = err
	}
	return l.err
}
