package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// What a pass reads.
//
// The rules need a container's sub-job only when one of them could end the job now: the
// launcher reports the container other than running or queued; its agent was last heard from
// longer ago than HeartbeatDeadline (or, never heard from, the connect or idle deadline has
// passed since its start); or the job has run past its runtime and RuntimeGrace. A pass reads
// every sub-job of a job the first time it meets the job (or its launch attempt changed),
// unless the job was launched less than HeartbeatDeadline ago (no stored LastSeen can be
// older than that yet, and what the replicas heard since is in their presence records), and
// afterwards only the containers for which one of these holds and that ingest does not know
// ended (Config.Ended), from what it remembers: which containers it read terminal (a terminal
// sub-job stays so), the agent attempt it read, and the latest time each agent was heard
// from (its stored LastSeen, the replicas' presence records, a connection to this replica). A job of running containers whose agents are
// connected costs no read at all; every sub-job of every running job each pass was a point
// read each, 10,000 reads a pass at 10,000 running containers on a store that answers a few
// hundred a second.
//
// An agent that connected and left before any replica recorded it (within one heartbeat
// interval) and whose replica stopped right after is the one case the memory misses: its
// container is then judged by the connect deadline from its start, not the heartbeat deadline
// from its last contact.

// jobMemo is what earlier passes learned of one job's containers.
type jobMemo struct {
	launch int // the launch attempt it is about (a relaunch starts over)
	subs   []subMemo
}

// subMemo is what earlier passes learned of one container.
type subMemo struct {
	terminal bool
	attempt  string    // the sub-job's agent attempt when read ("" : none yet)
	contact  time.Time // the latest time its agent was heard from, as far as known
}

// heardKey names a container in heard.
type heardKey struct {
	job string
	sub int
}

// heardAt is one presence record of an agent attempt.
type heardAt struct {
	attempt string
	at      time.Time
}

// heard reads the replicas' presence records (Config.Presence), by container.
func (r *Reconciler) heard(ctx context.Context) (map[heardKey][]heardAt, error) {
	out := map[heardKey][]heardAt{}
	if r.cfg.Presence == nil {
		return out, nil
	}
	ts, err := r.cfg.Presence(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the connected agents: %w", err)
	}
	for _, t := range ts {
		k := heardKey{t.JobID, t.Sub}
		out[k] = append(out[k], heardAt{t.Attempt, t.At})
	}
	return out, nil
}

// forgetAllBut drops the memory of the jobs not in active (ended, or beyond the pass's limit).
func (r *Reconciler) forgetAllBut(active []*jobs.Job) {
	keep := make(map[string]bool, len(active))
	for _, j := range active {
		keep[j.ID] = true
	}
	for id := range r.memo {
		if !keep[id] {
			delete(r.memo, id)
		}
	}
}

// launchAttempt is the job's launch attempt (-1 before a launch).
func launchAttempt(j *jobs.Job) int {
	if j.Launch == nil {
		return -1
	}
	return j.Launch.Attempt
}

// contact is the latest time the agent of container sub (of agent attempt attempt; "" for
// any) was heard from per the presence records and this replica's connections, or since.
func (r *Reconciler) contact(id string, sub int, attempt string, since time.Time, heard map[heardKey][]heardAt, now time.Time) time.Time {
	t := since
	for _, h := range heard[heardKey{id, sub}] {
		if (attempt == "" || h.attempt == attempt) && h.at.After(t) {
			t = h.at
		}
	}
	if r.cfg.Connected != nil && r.cfg.Connected(id, sub, attempt) {
		t = now
	}
	return t
}

// subJobs returns the sub-jobs of j that the rules must look at this pass (see above), their
// LastSeen the latest contact known, and whether every container of the job has ended.
func (r *Reconciler) subJobs(ctx context.Context, j *jobs.Job, st *launcher.JobStatus, heard map[heardKey][]heardAt, now time.Time) ([]jobs.SubJob, bool, error) {
	if j.Launch == nil || j.State == job.Created || j.State == job.Canceling {
		// No rule looks at the containers of a job in these states, and none folds it.
		delete(r.memo, j.ID)
		return nil, false, nil
	}
	n := j.Input.NumContainers
	m := r.memo[j.ID]
	var subs []jobs.SubJob
	if (m == nil || m.launch != launchAttempt(j) || len(m.subs) != n) && n > 0 && r.young(j, now) {
		m = &jobMemo{launch: launchAttempt(j), subs: make([]subMemo, n)}
		r.memo[j.ID] = m
	}
	if m == nil || m.launch != launchAttempt(j) || len(m.subs) != n || n == 0 {
		all, err := r.store.GetSubJobs(ctx, j.ID)
		if err != nil {
			return nil, false, err
		}
		m = &jobMemo{launch: launchAttempt(j), subs: make([]subMemo, n)}
		r.memo[j.ID] = m
		for i := range all {
			r.learn(m, &all[i], heard, now)
		}
		if len(all) < n || n == 0 {
			delete(r.memo, j.ID) // incomplete: read again next pass
			return all, false, nil
		}
		return all, m.finished(), nil
	}
	byNum := map[int]launcher.ContainerStatus{}
	if st != nil && st.Err == nil {
		for _, c := range st.Containers {
			byNum[c.Container] = c
		}
	}
	for c := range n {
		sm := &m.subs[c]
		if !sm.terminal && r.cfg.Ended != nil && r.cfg.Ended(j.ID, c) {
			sm.terminal = true
		}
		if sm.terminal {
			continue
		}
		sm.contact = r.contact(j.ID, c, sm.attempt, sm.contact, heard, now)
		cst, known := byNum[c]
		if !r.mayEnd(j, sm, cst, known, now) {
			continue
		}
		sj, err := r.store.GetSubJob(ctx, j.ID, c)
		if err != nil {
			return nil, false, fmt.Errorf("container %d: %w", c, err)
		}
		r.learn(m, sj, heard, now)
		subs = append(subs, *sj)
	}
	return subs, m.finished(), nil
}

// learn records what a read of sub-job sj tells, and sets its LastSeen to the latest contact
// known (stored, presence records, connected here, remembered).
func (r *Reconciler) learn(m *jobMemo, sj *jobs.SubJob, heard map[heardKey][]heardAt, now time.Time) {
	var sm *subMemo
	if sj.SubID >= 0 && sj.SubID < len(m.subs) {
		sm = &m.subs[sj.SubID]
		sm.terminal, sm.attempt = sj.State.Terminal(), sj.Attempt
	}
	if sj.State.Terminal() {
		return
	}
	since := sj.LastSeen
	if sm != nil && sm.contact.After(since) {
		since = sm.contact
	}
	sj.LastSeen = r.contact(sj.JobID, sj.SubID, sj.Attempt, since, heard, now)
	if sm != nil {
		sm.contact = sj.LastSeen
	}
}

// young reports whether job j was launched less than HeartbeatDeadline (and ConnectDeadline)
// ago: no rule can end it yet but from the launcher's view, so it needs no first read.
func (r *Reconciler) young(j *jobs.Job, now time.Time) bool {
	launched, _ := transitionTime(j.Transitions, job.DownloadSubmitted)
	if !j.Launch.LaunchedAt.IsZero() {
		launched = j.Launch.LaunchedAt
	}
	age := now.Sub(launched)
	return !launched.IsZero() && age >= 0 && age <= r.cfg.HeartbeatDeadline && age <= r.cfg.ConnectDeadline && age <= r.cfg.IdleDeadline
}

// finished reports whether every container is known terminal.
func (m *jobMemo) finished() bool {
	for _, s := range m.subs {
		if !s.terminal {
			return false
		}
	}
	return len(m.subs) > 0
}

// mayEnd reports whether a rule of Decide could end the job for this container now (so it
// must be read), from what is remembered of it and the launcher's view of it (cst, when known).
func (r *Reconciler) mayEnd(j *jobs.Job, sm *subMemo, cst launcher.ContainerStatus, known bool, now time.Time) bool {
	cfg := r.cfg
	if known && cst.State != launcher.StateRunning && cst.State != launcher.StateIdle {
		return true // held, exited, removed, unknown
	}
	launched, _ := transitionTime(j.Transitions, job.DownloadSubmitted)
	if !j.Launch.LaunchedAt.IsZero() {
		launched = j.Launch.LaunchedAt
	}
	if !sm.contact.IsZero() {
		if now.Sub(sm.contact) > cfg.HeartbeatDeadline {
			return true
		}
	} else {
		from, limit := launched, cfg.ConnectDeadline
		switch {
		case known && cst.State == launcher.StateIdle:
			limit = cfg.IdleDeadline
		case known && !cst.Started.IsZero():
			from = cst.Started
		}
		if from.IsZero() || now.Sub(from) > limit {
			return true
		}
	}
	if j.Input.RuntimeSeconds > 0 {
		// It ran at the earliest from the launch.
		limit := time.Duration(j.Input.RuntimeSeconds*float64(time.Second)) + cfg.RuntimeGrace
		if launched.IsZero() || now.Sub(launched) > limit {
			return true
		}
	}
	return false
}
