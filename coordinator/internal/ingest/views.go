package ingest

import (
	"sync"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// views keeps what this process last learned of the sub-jobs of the jobs it folds: each
// sub-job's state, update time and transition history (not its outputs or errors), from the
// full reads of folds and from the sub-jobs its events' writes return.
//
// A view is never ahead of the store: a sub-job's history only grows (every transition
// appends to it), and a view takes a sub-job's copy only when its history is longer than the
// one it holds. It may be behind: another replica, or another part of this one, moved a
// sub-job since. A fold therefore never moves a job from a view: it uses the view to find a
// sub-job that would keep the job where it is (blocks), reads that one sub-job again, and
// stops if it still blocks; the job cannot move while one of its sub-jobs blocks. Only when
// the view shows no blocker does the fold read every sub-job and move from that read. A job
// of n containers then costs one point read per fold instead of n, and n reads once per stage.
type views struct {
	mu   sync.Mutex
	jobs map[string][]jobs.SubJob // job ID → its sub-jobs by SubID (entries with an empty State unknown)
	// states are the job states last read or written, of the jobs with a view. A job never
	// folds past a state while one of its sub-jobs blocks in it (a sub-job never un-reaches a
	// state), and canceling and the terminal states are final: a sub-job read now that blocks
	// in a state the job was in, or that state being final, means no fold can move the job now,
	// whatever its state since. The fold then needs no read of the job (blocked).
	states map[string]job.State
	// subJobs counts the sub-jobs of all views.
	subJobs int
}

// maxViewSubJobs bounds the sub-jobs views keeps (a few hundred bytes each); beyond it other
// jobs' views are forgotten (and read in full again if they fold again).
const maxViewSubJobs = 100_000

func newViews() *views {
	return &views{jobs: map[string][]jobs.SubJob{}, states: map[string]job.State{}}
}

// setState records a state job id was in (from a read or a move).
func (v *views) setState(id string, st job.State) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.jobs[id]; ok {
		v.states[id] = st
	}
}

// state returns the state last recorded for job id ("" when none).
func (v *views) state(id string) job.State {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.states[id]
}

// trim is the part of a sub-job a view keeps.
func trim(sj *jobs.SubJob) jobs.SubJob {
	return jobs.SubJob{JobID: sj.JobID, SubID: sj.SubID, State: sj.State, UpdateTime: sj.UpdateTime,
		Transitions: append([]jobs.Transition(nil), sj.Transitions...)}
}

// nextBlocker returns the first sub-job, from index from on, that the job's view shows as
// blocking a job in state (blocks); ok is false when there is none (or no view).
func (v *views) nextBlocker(id string, state job.State, from int) (sub int, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	subs := v.jobs[id]
	for i := max(from, 0); i < len(subs); i++ {
		if blocks(state, subs[i]) {
			return i, true
		}
	}
	return 0, false
}

// put merges a full read of the job's sub-jobs into its view (creating it).
func (v *views) put(id string, subs []jobs.SubJob) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cur := v.jobs[id]
	v.subJobs -= len(cur)
	for k, other := range v.jobs {
		if v.subJobs+len(subs) <= maxViewSubJobs {
			break
		}
		if k != id {
			v.subJobs -= len(other)
			delete(v.jobs, k)
			delete(v.states, k)
		}
	}
	next := make([]jobs.SubJob, len(subs))
	for i := range subs {
		next[i] = trim(&subs[i])
		if i < len(cur) && len(cur[i].Transitions) > len(next[i].Transitions) {
			next[i] = cur[i]
		}
	}
	v.jobs[id] = next
	v.subJobs += len(next)
}

// complete returns a copy of the job's view when it holds all n of its sub-jobs (nil when it
// does not).
func (v *views) complete(id string, n int) []jobs.SubJob {
	v.mu.Lock()
	defer v.mu.Unlock()
	subs := v.jobs[id]
	if n <= 0 || len(subs) != n {
		return nil
	}
	for i := range subs {
		if subs[i].State == "" || subs[i].SubID != i {
			return nil
		}
	}
	return append([]jobs.SubJob(nil), subs...)
}

// ended reports whether the job's view shows container c terminal.
func (v *views) ended(id string, c int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	subs := v.jobs[id]
	return c >= 0 && c < len(subs) && subs[c].State.Terminal()
}

// oneWayOut reports whether the step from state, if any, has a single state to move to: its
// fold depends only on which containers reached its states and when, never on which branch
// one took.
func oneWayOut(state job.State) bool {
	for _, st := range steps {
		if st.from == state {
			return st.to[1] == "" || st.to[1] == st.to[0]
		}
	}
	return false
}

// update merges one sub-job read or written after the view was made (nothing when the job
// has no view: the next fold reads it in full).
func (v *views) update(sj *jobs.SubJob) {
	if sj == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	cur, ok := v.jobs[sj.JobID]
	if !ok || sj.SubID < 0 || sj.SubID >= len(cur) {
		return
	}
	if len(sj.Transitions) > len(cur[sj.SubID].Transitions) {
		cur[sj.SubID] = trim(sj)
	}
}

// drop forgets the job's view.
func (v *views) drop(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.subJobs -= len(v.jobs[id])
	delete(v.jobs, id)
	delete(v.states, id)
}

// blocks reports whether sub-job s alone keeps a job in state current where it is: it has not
// ended, and it has not reached the states of current's step (NextFold), or current has no
// step and only every sub-job ending moves the job.
func blocks(current job.State, s jobs.SubJob) bool {
	if s.State.Terminal() {
		return false
	}
	for _, st := range steps {
		if st.from == current {
			_, ok := jobs.ReachedAt(s, st.reached[:]...)
			return !ok
		}
	}
	return true
}

// mayFold reports whether NextFold may move a job in state current at all.
func mayFold(current job.State) bool {
	return !current.Terminal() && current != job.Canceling && current != job.Created
}
