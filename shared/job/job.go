// Package job owns the CTS job and container (sub-job) state machines: the state names, which
// transitions are legal, and which states are terminal. It is imported by the coordinator (which
// enforces the rules in MongoDB with conditional updates) and by the agent (which reports its
// container's progress). It performs no I/O.
//
// The job state machine (CTS names):
//
//	created ──► download_submitted ──► job_submitting ──► job_submitted ─┬─► upload_submitting ──► upload_submitted ──► complete
//	                                                                      └─► error_processing_submitting ──► error_processing_submitted ──► error
//
//	any non-terminal ──► canceling ──► canceled
//	any non-terminal (canceling included) ──► error
//
// A container (sub-job) walks the same path from download_submitted; it is never canceling or
// canceled (the job is), and error_processing_submitted leads to error.
package job

import "fmt"

// State is a job or container state, spelled as in the CTS API.
type State string

// The CTS job states, in their usual order.
const (
	Created                   State = "created"
	DownloadSubmitted         State = "download_submitted"
	JobSubmitting             State = "job_submitting"
	JobSubmitted              State = "job_submitted"
	UploadSubmitting          State = "upload_submitting"
	UploadSubmitted           State = "upload_submitted"
	Complete                  State = "complete"
	Canceling                 State = "canceling"
	Canceled                  State = "canceled"
	ErrorProcessingSubmitting State = "error_processing_submitting"
	ErrorProcessingSubmitted  State = "error_processing_submitted"
	Error                     State = "error"
)

// States lists every state in the CTS order.
var States = []State{
	Created, DownloadSubmitted, JobSubmitting, JobSubmitted, UploadSubmitting, UploadSubmitted,
	Complete, Canceling, Canceled, ErrorProcessingSubmitting, ErrorProcessingSubmitted, Error,
}

// Valid reports whether s is one of the CTS states.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s State) Terminal() bool { return s == Complete || s == Error || s == Canceled }

// forward is the happy-path and error-processing successor table shared by jobs and containers.
var forward = map[State][]State{
	Created:                   {DownloadSubmitted},
	DownloadSubmitted:         {JobSubmitting},
	JobSubmitting:             {JobSubmitted},
	JobSubmitted:              {UploadSubmitting, ErrorProcessingSubmitting},
	UploadSubmitting:          {UploadSubmitted},
	UploadSubmitted:           {Complete},
	ErrorProcessingSubmitting: {ErrorProcessingSubmitted},
	ErrorProcessingSubmitted:  {Error},
	Canceling:                 {Canceled},
}

// CanTransition reports whether a job may move from one state to another.
// Error is reachable from every non-terminal state (canceling included); canceling from every
// non-terminal state but itself.
func CanTransition(from, to State) bool {
	if from.Terminal() {
		return false
	}
	switch to {
	case Error:
		return true
	case Canceling:
		return from != Canceling
	}
	for _, s := range forward[from] {
		if s == to {
			return true
		}
	}
	return false
}

// CanTransitionContainer reports whether a container (sub-job) may move between states.
// Containers are never canceling or canceled: a canceled job's containers end in error.
func CanTransitionContainer(from, to State) bool {
	if to == Canceling || to == Canceled || from == Canceling {
		return false
	}
	return CanTransition(from, to)
}

// Predecessors returns every state from which a job may move to `to`; the coordinator uses it
// to build the conditional filter of a transition.
func Predecessors(to State) []State {
	var out []State
	for _, from := range States {
		if CanTransition(from, to) {
			out = append(out, from)
		}
	}
	return out
}

// TransitionError reports an illegal transition.
type TransitionError struct {
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal state transition from %s to %s", e.From, e.To)
}
