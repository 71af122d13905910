package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogFileBound(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "stdout")
	l, err := createLog(p, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{"0123", "456789ab", "cdef"} {
		if n, err := l.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: the container's output must keep flowing", chunk, n, err)
		}
	}
	if err := l.Close(); err != nil || l.Close() != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "0123456789\n[cts-agent: log truncated: the first 10 bytes were kept and the next 6 dropped (CTS_AGENT_LOG_MAX_MB)]\n"
	if string(b) != want {
		t.Errorf("log %q, want %q", b, want)
	}
}

func TestMessagesUnits(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{100_000_000: "100 MB (100000000 bytes)", 8_000_000_000: "8 GB (8000000000 bytes)", 1_500_000: "1.5 MB (1500000 bytes)", 512: "512 bytes"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{90 * time.Second: "1.5 minutes", 30 * time.Second: "30 seconds", time.Hour: "1 hour", 5 * time.Minute: "5 minutes", 150 * time.Minute: "2.5 hours"} {
		if got := humanDuration(in); !strings.EqualFold(got, want) {
			t.Errorf("humanDuration(%s) = %q, want %q", in, got, want)
		}
	}
}
