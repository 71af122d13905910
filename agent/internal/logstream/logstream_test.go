package logstream

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type sink struct {
	mu    sync.Mutex
	lines []string
}

func (s *sink) Log(stream string, lines []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range lines {
		s.lines = append(s.lines, stream+":"+l)
	}
}

func (s *sink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestStream(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		cfg   Config
		write func(s *Stream, c *clock)
		want  []string
	}{
		{
			name: "lines split across writes, partial line delivered at close",
			write: func(s *Stream, _ *clock) {
				fmt.Fprint(s, "hel")
				fmt.Fprint(s, "lo\nwor")
				fmt.Fprint(s, "ld\n\nlast")
			},
			want: []string{"out:hello", "out:world", "out:", "out:last"},
		},
		{
			name: "line rate: burst of one second, then a marker",
			cfg:  Config{LinesPerSecond: 3},
			write: func(s *Stream, c *clock) {
				for i := range 6 {
					fmt.Fprintf(s, "l%d\n", i)
				}
				c.add(time.Second)
				fmt.Fprint(s, "after\n")
			},
			want: []string{"out:l0", "out:l1", "out:l2", "out:[cts-agent: 3 lines dropped (live log rate limit; the log file keeps them)]", "out:after"},
		},
		{
			name: "byte rate",
			cfg:  Config{BytesPerSecond: 10},
			write: func(s *Stream, _ *clock) {
				fmt.Fprint(s, "12345678\n") // 9 bytes with the newline
				fmt.Fprint(s, "abc\n")      // no budget left
			},
			want: []string{"out:12345678", "out:[cts-agent: 1 lines dropped (live log rate limit; the log file keeps them)]"},
		},
		{
			name: "long line truncated, its remainder skipped",
			cfg:  Config{MaxLineBytes: 4},
			write: func(s *Stream, _ *clock) {
				fmt.Fprint(s, "abcdefgh\nxy\n")
			},
			want: []string{"out:abcd [truncated]", "out:xy"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1000, 0)}
			tc.cfg.Now = c.now
			tc.cfg.FlushInterval = time.Hour // only Close and full batches flush
			k := &sink{}
			s := New("out", k, tc.cfg)
			tc.write(s, c)
			s.Close()
			got := k.all()
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestWriteNeverBlocks floods a Stream whose sink is stuck: the writer (the container's log
// pipe) keeps going at full speed.
func TestWriteNeverBlocks(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	s := New("out", blockingSink(block), Config{FlushInterval: time.Millisecond})
	line := []byte(strings.Repeat("x", 100) + "\n")
	done := make(chan struct{})
	go func() {
		for range 100000 {
			_, _ = s.Write(line)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked behind a stuck sink")
	}
	if s.Dropped() == 0 {
		t.Error("nothing dropped from 100000 lines at once")
	}
	close(block)
	s.Close()
}

type blockingSink chan struct{}

func (b blockingSink) Log(string, []string) { <-b }

func BenchmarkWrite(b *testing.B) {
	s := New("out", &sink{}, Config{})
	defer s.Close()
	line := []byte(strings.Repeat("x", 120) + "\n")
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_, _ = s.Write(line)
	}
}
