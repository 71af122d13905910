package load

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the generator's counters, updated by the agents as they go.
type Stats struct {
	Launches        atomic.Int64
	EventsSent      atomic.Int64 // distinct events (a resend is not counted again)
	EventsAcked     atomic.Int64
	Resent          atomic.Int64
	Reconnects      atomic.Int64
	ConnectFailures atomic.Int64
	AckTimeouts     atomic.Int64
	Fatals          atomic.Int64
	ProtocolErrors  atomic.Int64
	UploadErrors    atomic.Int64
	LogBatches      atomic.Int64
	Progress        atomic.Int64
	Cancels         atomic.Int64 // agents that received a cancel

	mu         sync.Mutex
	onlineNow  int
	onlinePeak int
	ackLat     []time.Duration
	firstEvent time.Time
	lastAck    time.Time
	outcomes   map[string]int
}

// NewStats returns zeroed stats.
func NewStats() *Stats { return &Stats{outcomes: map[string]int{}} }

func (s *Stats) online(d int) {
	s.mu.Lock()
	s.onlineNow += d
	s.onlinePeak = max(s.onlinePeak, s.onlineNow)
	s.mu.Unlock()
}

// ack records an acknowledgement and, when lat ≥ 0, its latency from the event's send.
func (s *Stats) ack(lat time.Duration) {
	s.EventsAcked.Add(1)
	now := time.Now()
	s.mu.Lock()
	if lat >= 0 {
		s.ackLat = append(s.ackLat, lat)
		if s.firstEvent.IsZero() || now.Add(-lat).Before(s.firstEvent) {
			s.firstEvent = now.Add(-lat)
		}
	}
	s.lastAck = now
	s.mu.Unlock()
}

func (s *Stats) ended(outcome string) {
	s.mu.Lock()
	s.outcomes[outcome]++
	s.mu.Unlock()
}

// Online returns the agents with an open session now, and the most there were at once.
func (s *Stats) Online() (now, peak int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onlineNow, s.onlinePeak
}

// Outcomes counts the agents that ended, by outcome.
func (s *Stats) Outcomes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.outcomes))
	for k, v := range s.outcomes {
		out[k] = v
	}
	return out
}

// AckLatencies returns the latencies of the acknowledgements received on the connection that
// carried the event, and the span from the first such event's send to the last ack.
func (s *Stats) AckLatencies() (lat []time.Duration, first, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ackLat), s.firstEvent, s.lastAck
}

// quantile returns the q-quantile (nearest rank) of ds, 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ms is d in milliseconds, to a tenth.
func ms(d time.Duration) float64 { return float64(d.Microseconds()/100) / 10 }
