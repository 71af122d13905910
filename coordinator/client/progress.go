package client

import (
	"context"
	"net/http"
	"time"
)

// ContainerProgress is one container's latest transfer progress, as its agent last reported
// it (GET /jobs/{id}/progress).
type ContainerProgress struct {
	Container int `json:"container"`
	// Phase is "download" (the inputs) or "upload" (the outputs).
	Phase      string    `json:"phase"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	FilesDone  int       `json:"files_done"`
	FilesTotal int       `json:"files_total"`
	Updated    time.Time `json:"updated"`
}

// Progress returns GET /jobs/{id}/progress: the latest transfer progress of each container the
// service knows of, by container number. It is best effort (kept in memory by the replica an
// agent is connected to): an empty list is a normal answer. A service older than the route
// answers an *APIError with StatusCode 404.
func (c *Client) Progress(ctx context.Context, id string) ([]ContainerProgress, error) {
	var out struct {
		Containers []ContainerProgress `json:"containers"`
	}
	if err := c.Do(ctx, http.MethodGet, jobPath("", id)+"/progress", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Containers, nil
}
