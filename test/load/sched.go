package load

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// sched runs the simulated agents' actions: one timer for all of them (a heap of due times),
// and a fixed pool of workers that run what is due. No agent has a goroutine of its own but
// its connection's reader, which blocks in a read: 10,000 agents cost the generator 10,000
// parked goroutines and a heap, not 10,000 timers or busy loops.
type sched struct {
	mu   sync.Mutex
	h    itemHeap
	seq  uint64
	wake chan struct{}
	work chan func()
}

type item struct {
	at  time.Time
	seq uint64 // FIFO among equal times
	f   func()
}

type itemHeap []item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{}
	*h = old[:len(old)-1]
	return it
}

func newSched() *sched {
	return &sched{wake: make(chan struct{}, 1), work: make(chan func(), 4096)}
}

// at runs f on a worker at t (now, if t has passed).
func (s *sched) at(t time.Time, f func()) {
	s.mu.Lock()
	s.seq++
	heap.Push(&s.h, item{at: t, seq: s.seq, f: f})
	first := s.h[0].seq == s.seq
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// after runs f on a worker after d.
func (s *sched) after(d time.Duration, f func()) { s.at(time.Now().Add(d), f) }

// run dispatches due actions to workers until ctx ends, with workers goroutines; it returns
// once they have all stopped.
func (s *sched) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case f := <-s.work:
					f()
				}
			}
		}()
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		var due []func()
		now := time.Now()
		for len(s.h) > 0 && !s.h[0].at.After(now) {
			due = append(due, heap.Pop(&s.h).(item).f)
		}
		wait := time.Hour
		if len(s.h) > 0 {
			wait = time.Until(s.h[0].at)
		}
		s.mu.Unlock()
		for _, f := range due {
			select {
			case s.work <- f:
			case <-ctx.Done():
				wg.Wait()
				return
			}
		}
		if len(due) > 0 {
			continue // more may have come due while dispatching
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-s.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}
