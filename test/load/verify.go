package load

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/shared/job"
)

// Ledger is what the store holds of the events the agents sent: every event the coordinator
// acknowledged must be applied to its container (in its transitions), and so must every event
// sent and not refused, once its agent has ended. Two kinds of unacknowledged events are
// counted apart, not as lost: those whose agent the launcher killed (its job was canceled): a
// killed cts-agent never resends (Killed); and those whose agent still runs, waiting for the
// acknowledgement, when the run stopped waiting (InFlight).
type Ledger struct {
	// Sent counts distinct events sent; Acked those acknowledged; Rejected those the
	// coordinator refused (fatal); Applied those found in their container's transitions;
	// Killed and InFlight those not applied, not acknowledged, whose agent was killed or
	// still runs.
	Sent, Acked, Rejected, Applied, Killed, InFlight int
	// Lost lists events sent, not refused, and not applied (but those of Killed and
	// InFlight).
	Lost []string
}

// subJobsView is the part of GET /admin/jobs/{id}/container the ledger reads.
type subJobsView struct {
	SubJobs []struct {
		SubID       int `json:"sub_id"`
		Transitions []struct {
			State job.State `json:"state"`
		} `json:"transition_times"`
	} `json:"subjobs"`
}

// Verify builds the ledger of jobs ids from the agents' records and the stored containers.
func (s *Site) Verify(ctx context.Context, ids []string) (Ledger, error) {
	var (
		mu sync.Mutex
		l  Ledger
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			// The agents' records first, then the store: an event acknowledged before the
			// records were taken was applied before the store is read. Read the other way
			// round, an event applied and acknowledged between the two reads (a run that
			// stopped waiting while events were still being applied) looked lost.
			type record struct {
				a       *agent
				outcome string
				sent    []SentEvent
			}
			var recs []record
			for _, a := range s.Fleet.JobAgents(id) {
				outcome, _ := a.Outcome()
				recs = append(recs, record{a, outcome, a.Sent()})
			}
			var v subJobsView
			if err := s.retry(gctx, http.MethodGet, "/admin/jobs/"+id+"/container", s.AdminToken, &v); err != nil {
				return fmt.Errorf("containers of job %s: %w", id, err)
			}
			stored := map[int]map[job.State]bool{}
			for _, sj := range v.SubJobs {
				m := map[job.State]bool{}
				for _, t := range sj.Transitions {
					m[t.State] = true
				}
				stored[sj.SubID] = m
			}
			var part Ledger
			for _, r := range recs {
				a, outcome := r.a, r.outcome
				for _, ev := range r.sent {
					part.Sent++
					if ev.Acked {
						part.Acked++
					}
					if stored[a.container][ev.State] {
						// Applied, even if refused at a reconnect after its ack was lost.
						part.Applied++
						continue
					}
					if ev.Rejected {
						part.Rejected++
						continue
					}
					if !ev.Acked && outcome == "killed" {
						part.Killed++
						continue
					}
					if !ev.Acked && outcome == "" {
						part.InFlight++
						continue
					}
					part.Lost = append(part.Lost, fmt.Sprintf("job %s container %d attempt %s seq %d %s (acked %v)",
						id, a.container, a.attempt, ev.Seq, ev.State, ev.Acked))
				}
			}
			mu.Lock()
			l.Sent += part.Sent
			l.Acked += part.Acked
			l.Rejected += part.Rejected
			l.Applied += part.Applied
			l.Killed += part.Killed
			l.InFlight += part.InFlight
			l.Lost = append(l.Lost, part.Lost...)
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return l, err
}
