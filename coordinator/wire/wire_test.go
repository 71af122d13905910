package wire_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/wire"
)

// TestTimestamp pins the CTS rendering of times (UTC, Z, microseconds only when not zero) and
// that any RFC 3339 time reads back as the same instant.
func TestTimestamp(t *testing.T) {
	t.Parallel()
	est := time.FixedZone("EST", -5*3600)
	for _, c := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2024, 10, 24, 22, 35, 40, 0, time.UTC), `"2024-10-24T22:35:40Z"`},
		{time.Date(2024, 10, 24, 22, 35, 40, 123456789, time.UTC), `"2024-10-24T22:35:40.123456Z"`},
		{time.Date(2024, 10, 24, 17, 35, 40, 5e8, est), `"2024-10-24T22:35:40.500000Z"`},
	} {
		b, err := json.Marshal(wire.At(c.in))
		if err != nil || string(b) != c.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", c.in, b, err, c.want)
		}
		var back wire.Timestamp
		if err := json.Unmarshal(b, &back); err != nil || !back.Equal(c.in.Truncate(time.Microsecond)) {
			t.Errorf("Unmarshal(%s) = %v, %v", b, back, err)
		}
	}
}
