package session

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kbase/cts/shared/protocol"
)

// journal is the on-disk copy of the session's unacknowledged events, so that an agent
// process that dies (or is restarted by its launcher) with events in flight resends them
// instead of losing them. It is an append-only text file:
//
//	E {"seq":1,"state":"job_submitting",...}   an event, written before it is sent
//	A 1                                        its acknowledgement
//
// Every event is written (to the page cache) before it is sent, which is what survives the
// agent process's death. A final event (complete, error) is also fsynced before it is sent,
// so that it survives the node's crash too; the states before it only record progress, and
// are not: an fsync costs a few milliseconds on a job's critical path (4 ms on this project's
// machine), and losing one in a crash of the node changes nothing a restarted attempt does
// (it cannot resume a run; the coordinator's NextSeq says what was applied). When no event is
// pending the file is truncated, so it stays a few lines long. A torn last line (a crash
// mid-write) is ignored. Acknowledgements are not fsynced: losing one only causes a resend,
// which the coordinator deduplicates by attempt and sequence number.
type journal struct {
	f       *os.File
	pending map[int64]bool
}

// openJournal opens (creating) the journal at path and returns the events it holds that were
// never acknowledged, in sequence order.
func openJournal(path string) (*journal, []protocol.Event, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal %s: %w", path, err)
	}
	events := map[int64]protocol.Event{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "E":
			var ev protocol.Event
			if json.Unmarshal([]byte(rest), &ev) == nil && ev.Seq > 0 {
				events[ev.Seq] = ev
			}
		case "A":
			if seq, err := strconv.ParseInt(rest, 10, 64); err == nil {
				delete(events, seq)
			}
		}
	}
	j := &journal{f: f, pending: map[int64]bool{}}
	var out []protocol.Event
	for seq, ev := range events {
		j.pending[seq] = true
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b protocol.Event) int { return int(a.Seq - b.Seq) })
	// Rewrite the file with only what is pending: it drops a torn tail and old history.
	if err := j.rewrite(out, true); err != nil {
		f.Close()
		return nil, nil, err
	}
	return j, out, nil
}

// rewrite replaces the file's content with evs, fsynced when sync is set.
func (j *journal) rewrite(evs []protocol.Event, sync bool) error {
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		buf.WriteString("E ")
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := j.f.WriteAt(buf.Bytes(), 0); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := j.f.Seek(int64(buf.Len()), io.SeekStart); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if !sync {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// append records ev before it may be sent: written, and fsynced when it is a final event.
func (j *journal) append(ev protocol.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	line := append(append([]byte("E "), b...), '\n')
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if ev.State.Terminal() {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("journal: %w", err)
		}
	}
	j.pending[ev.Seq] = true
	return nil
}

// ack records that seq was acknowledged; once nothing is pending the file is emptied.
func (j *journal) ack(seq int64) error {
	if !j.pending[seq] {
		return nil
	}
	delete(j.pending, seq)
	if len(j.pending) == 0 {
		return j.rewrite(nil, false) // a stale copy only causes resends
	}
	if _, err := fmt.Fprintf(j.f, "A %d\n", seq); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func (j *journal) close() error { return j.f.Close() }
