package load

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// ProcSample is one reading of a process from /proc.
type ProcSample struct {
	At  time.Time
	CPU time.Duration // user + system, all threads
	RSS int64         // bytes (VmRSS)
	HWM int64         // bytes (VmHWM: the peak RSS so far)
}

// ReadProc reads the CPU time and memory of process pid.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	// The command name is in parentheses and may hold spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("read process %d: malformed stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After the name: state(3) ... utime(14) stime(15), numbered from 1 with pid and comm.
	if len(f) < 13 {
		return s, fmt.Errorf("read process %d: short stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		if k == "VmRSS" {
			s.RSS = n << 10
		} else {
			s.HWM = n << 10
		}
	}
	return s, nil
}

// Watch samples processes once a second: their CPU and RSS over time.
type Watch struct {
	mu    sync.Mutex
	procs map[string]*watched
}

type watched struct {
	pids    []int // a restarted process gets a new pid; its CPU adds up
	last    map[int]ProcSample
	cpuDone time.Duration // CPU of pids that have ended
	peakRSS int64
	samples []ProcSample // RSS over time (CPU summed over pids)
}

// NewWatch returns an empty watch.
func NewWatch() *Watch { return &Watch{procs: map[string]*watched{}} }

// Add starts watching process pid under name; adding another pid under the same name (a
// restarted replica) keeps the name's totals.
func (w *Watch) Add(name string, pid int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.procs[name]
	if p == nil {
		p = &watched{last: map[int]ProcSample{}}
		w.procs[name] = p
	}
	for pid0, s := range p.last {
		if _, err := ReadProc(pid0); err != nil {
			p.cpuDone += s.CPU // ended: keep what it used
			delete(p.last, pid0)
		}
	}
	p.pids = append(p.pids, pid)
	if s, err := ReadProc(pid); err == nil {
		p.last[pid] = s
	}
}

// Run samples every second until ctx ends.
func (w *Watch) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		w.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watch) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.procs {
		var rss int64
		for pid := range p.last {
			s, err := ReadProc(pid)
			if err != nil {
				p.cpuDone += p.last[pid].CPU
				delete(p.last, pid)
				continue
			}
			p.last[pid] = s
			rss += s.RSS
			p.peakRSS = max(p.peakRSS, s.HWM, s.RSS)
		}
		p.samples = append(p.samples, ProcSample{At: time.Now(), CPU: p.cpuLocked(), RSS: rss})
	}
}

func (p *watched) cpuLocked() time.Duration {
	c := p.cpuDone
	for _, s := range p.last {
		c += s.CPU
	}
	return c
}

// Now returns name's CPU used so far and its current RSS (taking a fresh sample).
func (w *Watch) Now(name string) (cpu time.Duration, rss int64) {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.procs[name]
	if p == nil || len(p.samples) == 0 {
		return 0, 0
	}
	s := p.samples[len(p.samples)-1]
	return s.CPU, s.RSS
}

// Peak returns the peak RSS of name (the largest VmHWM of its processes).
func (w *Watch) Peak(name string) int64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.procs[name]; p != nil {
		return p.peakRSS
	}
	return 0
}

// Names returns the watched names.
func (w *Watch) Names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for n := range w.procs {
		out = append(out, n)
	}
	return out
}

// Pids returns the live processes of name.
func (w *Watch) Pids(name string) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int
	if p := w.procs[name]; p != nil {
		for pid := range p.last {
			out = append(out, pid)
		}
	}
	return out
}
