// Package logtest records what the code under test logs through log/slog, for tests that check
// that a message was logged, at which level, or that it was not. It is for tests only.
package logtest

import (
	"context"
	"log/slog"
	"sync"
)

// Record is one logged record: its level and message (attributes are not kept).
type Record struct {
	Level   slog.Level
	Message string
}

// String is "<LEVEL> <message>".
func (r Record) String() string { return r.Level.String() + " " + r.Message }

// Recorder is a slog.Handler that keeps every record, at every level. It is safe for
// concurrent use.
type Recorder struct {
	mu   sync.Mutex
	recs []Record
}

// Logger returns a logger writing to r.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r) }

// Enabled implements slog.Handler: every level is recorded.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, Record{Level: rec.Level, Message: rec.Message})
	return nil
}

// WithAttrs implements slog.Handler; the attributes are dropped.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements slog.Handler; the group is dropped.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Records returns the records logged at min or above so far, in order, as strings (see
// Record.String).
func (r *Recorder) Records(min slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Level >= min {
			out = append(out, rec.String())
		}
	}
	return out
}
