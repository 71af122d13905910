package agentws

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The live log buffers of all containers together stay within MaxBytes, whatever the number
// of containers and the length of their lines; the container just written keeps its newest
// lines, and the byte count is what the buffers hold.
func TestLogBookByteBudget(t *testing.T) {
	const budget = 100 << 10
	b := newLogBook(LogConfig{LinesPerContainer: 1000, MaxContainers: 1000, MaxBytes: budget})
	line := strings.Repeat("x", 1000)
	held := func() int64 {
		var n int64
		for _, r := range b.rings {
			for _, l := range r.lines {
				n += lineCost(l)
			}
		}
		return n
	}
	now := time.Now()
	for c := range 200 {
		lines := make([]string, 50)
		for i := range lines {
			lines[i] = fmt.Sprintf("%d %d %s", c, i, line)
		}
		now = now.Add(time.Millisecond)
		b.add("job", c, "stdout", lines, now)
		if b.bytes > budget || b.bytes != held() {
			t.Fatalf("after container %d: %d bytes counted, %d held, budget %d", c, b.bytes, held(), budget)
		}
		if got := b.tail("job", c); len(got) != 50 {
			t.Fatalf("container %d just written keeps %d of its 50 lines", c, len(got))
		}
	}
	if b.tail("job", 0) != nil {
		t.Fatal("the least recently written container's buffer was kept over the budget")
	}
	// One container alone over the budget keeps its newest lines.
	lines := make([]string, 300)
	for i := range lines {
		lines[i] = fmt.Sprintf("big %d %s", i, line)
	}
	b.add("job", 999, "stdout", lines, now.Add(time.Second))
	got := b.tail("job", 999)
	if b.bytes > budget || b.bytes != held() || len(got) == 0 || !strings.HasPrefix(got[len(got)-1].Text, "big 299 ") {
		t.Fatalf("%d bytes counted, %d held (budget %d), %d lines kept", b.bytes, held(), budget, len(got))
	}
	// The ring still works after the trim: more lines append in order.
	b.add("job", 999, "stdout", []string{"after"}, now.Add(2*time.Second))
	got = b.tail("job", 999)
	if got[len(got)-1].Text != "after" || b.bytes > budget || b.bytes != held() {
		t.Fatalf("after a trim: last line %q, %d bytes counted, %d held", got[len(got)-1].Text, b.bytes, held())
	}
}
