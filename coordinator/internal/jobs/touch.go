package jobs

import "time"

// Touch is one agent heartbeat: the agent of attempt Attempt of sub-job (JobID, Sub) was seen
// at At. An empty Attempt counts whatever attempt the sub-job has.
type Touch struct {
	JobID   string
	Sub     int
	Attempt string
	At      time.Time
}
