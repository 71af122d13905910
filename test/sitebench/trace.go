package sitebench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AgentEvent is a moment in the life of an agent process: its start (from the local
// launcher's record) or a line it logged.
type AgentEvent struct {
	Time time.Time
	Msg  string
	// State is the line's job state, if it names one (a state sent or acknowledged).
	State string
	// Seconds is the line's duration in seconds, if it gives one (the container's run by
	// its runtime, a transfer).
	Seconds float64
	// CPUMs and ChildrenCPUMs are the agent's CPU and its runtime processes', in its last
	// line ("agent done", debug level).
	CPUMs, ChildrenCPUMs float64
	// Runtime is the line's container runtime, if it names one ("oci (crun)", "docker").
	Runtime string
}

// AgentTrace returns the events of the agent of container 0 of job id (its first attempt), in
// order: "supervisor process started" and "supervisor running" (when their records are
// there), "agent process started", then the messages of the agent's log. It reads what the
// local launcher keeps in the site's work folder.
func (s *Site) AgentTrace(id string) ([]AgentEvent, error) {
	dir := filepath.Join(s.Env.Dir, "agents", id)
	pids, _ := filepath.Glob(filepath.Join(dir, "*", "0", "pid"))
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "0", "agent.err"))
	if len(pids) == 0 || len(logs) == 0 {
		return nil, fmt.Errorf("agent records of job %s not found under %s", id, dir)
	}
	started := func(path string) (time.Time, error) {
		var rec struct {
			Started time.Time `json:"started"`
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return time.Time{}, err
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return time.Time{}, fmt.Errorf("pid record %s: %w", path, err)
		}
		return rec.Started, nil
	}
	agent, err := started(pids[0])
	if err != nil {
		return nil, err
	}
	out := []AgentEvent{{Time: agent, Msg: "agent process started"}}
	// The launcher's records before it: the supervisor's process started by the plugin, and
	// the supervisor running (its claim of the container made).
	cdir := filepath.Dir(pids[0])
	for _, r := range []struct{ file, msg string }{{"supervisor.pid", "supervisor running"}, {"spawned", "supervisor process started"}} {
		if at, err := started(filepath.Join(cdir, r.file)); err == nil {
			out = append([]AgentEvent{{Time: at, Msg: r.msg}}, out...)
		}
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			State    string    `json:"state"`
			Seconds  float64   `json:"seconds"`
			CPU      float64   `json:"cpu_ms"`
			ChildCPU float64   `json:"children_cpu_ms"`
			Runtime  string    `json:"runtime"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg != "" {
			out = append(out, AgentEvent{l.Time, l.Msg, l.State, l.Seconds, l.CPU, l.ChildCPU, l.Runtime})
		}
	}
	return out, nil
}

// Between returns the time from the first event named from to the first event named to
// after it, and whether both were found.
func Between(ev []AgentEvent, from, to string) (time.Duration, bool) {
	for i, e := range ev {
		if e.Msg != from {
			continue
		}
		for _, f := range ev[i:] {
			if f.Msg == to {
				return f.Time.Sub(e.Time), true
			}
		}
	}
	return 0, false
}
