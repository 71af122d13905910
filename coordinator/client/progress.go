package client

import (
	"context"
	"net/http"

	"github.com/kbase/cts/coordinator/wire"
)

// Progress returns GET /jobs/{id}/progress: the latest transfer progress of each container the
// service knows of, by container number. It is best effort (kept in memory by the replica an
// agent is connected to): an empty list is a normal answer. A service older than the route
// answers an *APIError with StatusCode 404.
func (c *Client) Progress(ctx context.Context, id string) ([]ContainerProgress, error) {
	var out wire.JobProgress
	if err := c.Do(ctx, http.MethodGet, jobPath("", id)+"/progress", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Containers, nil
}
