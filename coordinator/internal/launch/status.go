package launch

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/launcher"
)

// RunnerStatus returns the launcher's raw record of one container (HTCondor: the subset of
// its ClassAd the Python service showed) for GET /admin/jobs/{id}/runner_status: an empty
// object when the job was not launched yet or the launcher keeps no record, a *ctserr.Error
// for an unknown job or container.
func (s *Service) RunnerStatus(ctx context.Context, id string, container int) (json.RawMessage, error) {
	j, err := s.store.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if container < 0 || container >= j.Input.NumContainers {
		return nil, ctserr.New(ctserr.CodeNoSuchSubJob, "Job %s has no container %d", id, container)
	}
	empty := json.RawMessage(`{}`)
	if j.Launch == nil {
		return empty, nil
	}
	l, ok := s.SiteLauncher(j.Launch.Site)
	if !ok {
		return empty, nil
	}
	sl, ok := l.(StatusLauncher)
	if !ok {
		return empty, nil
	}
	sts, err := sl.Status(ctx, []launcher.JobRef{{JobID: id, Handle: j.Launch.Handle}})
	if err != nil {
		return nil, fmt.Errorf("runner status of job %s: %w", id, err)
	}
	if len(sts) != 1 {
		return nil, fmt.Errorf("runner status of job %s: launcher returned %d entries", id, len(sts))
	}
	if sts[0].Err != nil {
		return nil, fmt.Errorf("runner status of job %s: %w", id, sts[0].Err)
	}
	for _, c := range sts[0].Containers {
		if c.Container == container && len(c.Details) > 0 {
			return json.RawMessage(c.Details), nil
		}
	}
	return empty, nil
}
