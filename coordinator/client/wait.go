package client

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/kbase/cts/shared/job"
)

// Event is one state change of a job or of one of its containers, in the order Wait observed
// them.
type Event struct {
	JobID string `json:"job_id"`
	// Container is the container number, or nil for the job itself.
	Container *int      `json:"container,omitempty"`
	State     job.State `json:"state"`
	Time      time.Time `json:"time"`
}

// WaitOptions configures Wait.
type WaitOptions struct {
	// Backoff paces the status polls (zero: 0.5 s growing by 1.5 to 5 s, reset on a change).
	Backoff Backoff
	// Containers also follows each container's state through GET /admin/jobs/{id}/container.
	// That route is for admins: when it is refused or missing, Wait stops asking and goes on
	// with the job state alone. With Containers, a job the caller does not own (403) is
	// followed through GET /admin/jobs/{id}, which admins may read.
	Containers bool
	// OnEvent is called for every transition, the job's earlier ones included, in order.
	OnEvent func(Event)
	// OnPoll is called after every poll with the current status and containers (nil when not
	// followed), for live views.
	OnPoll func(st *JobStatus, containers []SubJob)
	// Tolerate is how long unanswered polls are retried before Wait gives up (default 30 s).
	Tolerate time.Duration
}

// Wait polls the job until it is terminal and returns its final status. It returns early with
// the last status seen and an error: an *APIError from the service, an error wrapping
// ErrUnreachable once polls have gone unanswered for WaitOptions.Tolerate, or ctx.Err() (a
// deadline on ctx is how callers bound the wait).
func (c *Client) Wait(ctx context.Context, id string, o WaitOptions) (*JobStatus, error) {
	bo := o.Backoff.withDefaults()
	tol := retrier{window: o.Tolerate}
	containers := o.Containers
	var last *JobStatus
	jobSeen := 0
	subSeen := map[int]int{}
	status, viaAdmin := c.Status, false
	var ownerErr error
	for {
		st, err := status(ctx, id)
		var ae *APIError
		if errors.As(err, &ae) && ae.AppCode == CodeUnauthorized {
			if !viaAdmin && o.Containers {
				// Not the job's owner: an admin follows any job through the admin route.
				status, viaAdmin, ownerErr = c.adminStatus, true, err
				continue
			}
			if ownerErr != nil {
				return last, ownerErr // not an admin either: the owner route's answer says why
			}
		}
		if err != nil {
			if !tol.retry(err) {
				return last, err
			}
			if err := sleep(ctx, bo.next(false)); err != nil {
				return last, err
			}
			continue
		}
		tol.ok()
		last = st
		var subs []SubJob
		if containers {
			// The owner's route first; an admin following someone else's job (403) or an
			// older server without it (404) uses the admin route.
			subs, err = c.Containers(ctx, id)
			var ae *APIError
			if errors.As(err, &ae) && (ae.StatusCode == http.StatusForbidden || ae.StatusCode == http.StatusNotFound) {
				subs, err = c.AdminContainers(ctx, id)
			}
			switch {
			case err == nil:
			case ctx.Err() != nil:
				return last, ctx.Err()
			case transient(err):
				subs = nil // try again on the next poll
			default:
				containers = false // not an admin, or no such route: the job state alone
				subs = nil
			}
		}
		events := newEvents(id, st, subs, &jobSeen, subSeen)
		for _, e := range events {
			if o.OnEvent != nil {
				o.OnEvent(e)
			}
		}
		if o.OnPoll != nil {
			o.OnPoll(st, subs)
		}
		if st.State.Terminal() {
			return st, nil
		}
		if err := sleep(ctx, bo.next(len(events) > 0)); err != nil {
			return last, err
		}
	}
}

// adminStatus is Status through GET /admin/jobs/{id}.
func (c *Client) adminStatus(ctx context.Context, id string) (*JobStatus, error) {
	j, err := c.AdminJob(ctx, id)
	if err != nil {
		return nil, err
	}
	return &j.JobStatus, nil
}

// newEvents returns the transitions not reported yet, merged by time while keeping each
// source's own order, and advances the counters.
func newEvents(id string, st *JobStatus, subs []SubJob, jobSeen *int, subSeen map[int]int) []Event {
	var sources [][]Event
	var jobEv []Event
	if *jobSeen > len(st.Transitions) {
		*jobSeen = 0 // cannot happen with a well-behaved service; report everything again
	}
	for _, t := range st.Transitions[*jobSeen:] {
		jobEv = append(jobEv, Event{JobID: id, State: t.State, Time: t.Time.Time})
	}
	*jobSeen = len(st.Transitions)
	sources = append(sources, jobEv)
	for _, sj := range subs {
		n := sj.SubID
		seen := min(subSeen[n], len(sj.Transitions))
		var ev []Event
		for _, t := range sj.Transitions[seen:] {
			ev = append(ev, Event{JobID: id, Container: &n, State: t.State, Time: t.Time.Time})
		}
		subSeen[n] = len(sj.Transitions)
		sources = append(sources, ev)
	}
	var out []Event
	for {
		best := -1
		for i, s := range sources {
			if len(s) > 0 && (best < 0 || s[0].Time.Before(sources[best][0].Time)) {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, sources[best][0])
		sources[best] = sources[best][1:]
	}
}
