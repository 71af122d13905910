package ingest

import (
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
)

// step is one stage of the job's progress: the job moves to the first of `to` states once every
// sub-job has reached one of `reached` (anywhere in its history). When `to` has two states,
// the second is chosen if any sub-job took the error-processing branch.
type step struct {
	from    job.State
	reached [2]job.State
	to      [2]job.State
}

// steps is the fold of sub-job states into the job state, as the Python service folds them.
var steps = []step{
	{job.DownloadSubmitted, [2]job.State{job.JobSubmitting}, [2]job.State{job.JobSubmitting}},
	{job.JobSubmitting, [2]job.State{job.JobSubmitted}, [2]job.State{job.JobSubmitted}},
	{job.JobSubmitted, [2]job.State{job.UploadSubmitting, job.ErrorProcessingSubmitting}, [2]job.State{job.UploadSubmitting, job.ErrorProcessingSubmitting}},
	{job.UploadSubmitting, [2]job.State{job.UploadSubmitted, job.ErrorProcessingSubmitted}, [2]job.State{job.UploadSubmitted, job.ErrorProcessingSubmitted}},
	{job.ErrorProcessingSubmitting, [2]job.State{job.UploadSubmitted, job.ErrorProcessingSubmitted}, [2]job.State{job.ErrorProcessingSubmitted, job.ErrorProcessingSubmitted}},
}

// Fold is the next move of a job given its sub-jobs.
type Fold struct {
	// To is the state the job should move to now, or "" if it should stay.
	To job.State
	// Time is the time of the transition: the latest time at which a sub-job reached it.
	Time time.Time
	// Terminal is set when every sub-job is terminal: To is then Complete or Error and the
	// caller must do the terminal bookkeeping (output verification, error messages).
	Terminal bool
}

// NextFold computes the job's next state from its current state and its sub-jobs. It moves one
// step at a time; callers apply it and call again until To is "".
// A job that is canceling or terminal never folds.
func NextFold(current job.State, subs []jobs.SubJob) Fold {
	if current.Terminal() || current == job.Canceling || current == job.Created || len(subs) == 0 {
		return Fold{}
	}
	allTerminal, allComplete := true, true
	var latest time.Time
	for _, s := range subs {
		if !s.State.Terminal() {
			allTerminal = false
		}
		if s.State != job.Complete {
			allComplete = false
		}
		if s.UpdateTime.After(latest) {
			latest = s.UpdateTime
		}
	}
	for _, st := range steps {
		if st.from != current {
			continue
		}
		var when time.Time
		errBranch := false
		stalled := false
		for _, s := range subs {
			t, ok := jobs.ReachedAt(s, st.reached[:]...)
			if !ok {
				stalled = true
				break
			}
			if t.After(when) {
				when = t
			}
			if _, ok := jobs.ReachedAt(s, job.ErrorProcessingSubmitting); ok {
				errBranch = true
			}
		}
		if stalled {
			break
		}
		to := st.to[0]
		if errBranch && st.to[1] != "" {
			to = st.to[1]
		}
		return Fold{To: to, Time: when}
	}
	if allTerminal {
		// No step applies any more: every container has ended.
		if allComplete && current == job.UploadSubmitted {
			return Fold{To: job.Complete, Time: latest, Terminal: true}
		}
		if !allComplete {
			return Fold{To: job.Error, Time: latest, Terminal: true}
		}
	}
	return Fold{}
}
