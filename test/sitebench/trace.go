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
}

// AgentTrace returns the events of the agent of container 0 of job id (its first attempt), in
// order: "agent process started", then the messages of the agent's log. It reads what the
// local launcher keeps in the site's work folder.
func (s *Site) AgentTrace(id string) ([]AgentEvent, error) {
	dir := filepath.Join(s.Env.Dir, "agents", id)
	pids, _ := filepath.Glob(filepath.Join(dir, "*", "0", "pid"))
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "0", "agent.err"))
	if len(pids) == 0 || len(logs) == 0 {
		return nil, fmt.Errorf("agent records of job %s not found under %s", id, dir)
	}
	var rec struct {
		Started time.Time `json:"started"`
	}
	b, err := os.ReadFile(pids[0])
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("pid record %s: %w", pids[0], err)
	}
	out := []AgentEvent{{Time: rec.Started, Msg: "agent process started"}}
	b, err = os.ReadFile(logs[0])
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			State string    `json:"state"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg != "" {
			out = append(out, AgentEvent{l.Time, l.Msg, l.State})
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
