package launcher

import (
	"time"

	"github.com/kbase/cts/shared/launcher/internal/launcherpb"
)

// Conversions between the Go types and the wire messages. Both directions live here so the
// two halves cannot drift apart.

func submitToWire(r SubmitRequest) *launcherpb.SubmitRequest {
	return &launcherpb.SubmitRequest{
		JobId:          r.JobID,
		Attempt:        int32(r.Attempt),
		Containers:     int32(r.Containers),
		Cpus:           int32(r.CPUs),
		MemoryBytes:    r.MemoryBytes,
		RuntimeSeconds: r.RuntimeSeconds,
		DiskBytes:      r.DiskBytes,
		User:           r.User,
		BatchName:      r.BatchName,
		Env:            r.Env,
		Credentials:    r.Credentials,
	}
}

func submitFromWire(r *launcherpb.SubmitRequest) SubmitRequest {
	return SubmitRequest{
		JobID:          r.GetJobId(),
		Attempt:        int(r.GetAttempt()),
		Containers:     int(r.GetContainers()),
		CPUs:           int(r.GetCpus()),
		MemoryBytes:    r.GetMemoryBytes(),
		RuntimeSeconds: r.GetRuntimeSeconds(),
		DiskBytes:      r.GetDiskBytes(),
		User:           r.GetUser(),
		BatchName:      r.GetBatchName(),
		Env:            r.GetEnv(),
		Credentials:    r.GetCredentials(),
	}
}

func refToWire(r JobRef) *launcherpb.JobRef {
	return &launcherpb.JobRef{JobId: r.JobID, Handle: r.Handle}
}

func refFromWire(r *launcherpb.JobRef) JobRef {
	return JobRef{JobID: r.GetJobId(), Handle: r.GetHandle()}
}

func timeToWire(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeFromWire(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func jobStatusToWire(s JobStatus) *launcherpb.JobStatus {
	out := &launcherpb.JobStatus{JobId: s.JobID, Error: toWireError(s.Err)}
	for _, c := range s.Containers {
		wc := &launcherpb.ContainerStatus{
			Container:       int32(c.Container),
			State:           string(c.State),
			Reason:          c.Reason,
			Attempt:         c.Attempt,
			StartedUnixNano: timeToWire(c.Started),
			EndedUnixNano:   timeToWire(c.Ended),
			HoldCode:        int32(c.HoldCode),
			DetailsJson:     c.Details,
		}
		if u := c.Usage; u != nil {
			wc.Usage = &launcherpb.Usage{CpuSeconds: u.CPUSeconds, WallSeconds: u.WallSeconds, MaxMemoryBytes: u.MaxMemoryBytes, Cpus: int32(u.CPUs)}
		}
		if c.ExitCode != nil {
			code := int32(*c.ExitCode)
			wc.ExitCode = &code
		}
		out.Containers = append(out.Containers, wc)
	}
	return out
}

func jobStatusFromWire(s *launcherpb.JobStatus) JobStatus {
	out := JobStatus{JobID: s.GetJobId(), Err: fromWireError(s.GetError())}
	for _, c := range s.GetContainers() {
		cs := ContainerStatus{
			Container: int(c.GetContainer()),
			State:     ContainerState(c.GetState()),
			Reason:    c.GetReason(),
			Attempt:   c.GetAttempt(),
			Started:   timeFromWire(c.GetStartedUnixNano()),
			Ended:     timeFromWire(c.GetEndedUnixNano()),
			HoldCode:  int(c.GetHoldCode()),
			Details:   c.GetDetailsJson(),
		}
		if u := c.GetUsage(); u != nil {
			cs.Usage = &Usage{CPUSeconds: u.GetCpuSeconds(), WallSeconds: u.GetWallSeconds(), MaxMemoryBytes: u.GetMaxMemoryBytes(), CPUs: int(u.GetCpus())}
		}
		if c.ExitCode != nil {
			code := int(c.GetExitCode())
			cs.ExitCode = &code
		}
		out.Containers = append(out.Containers, cs)
	}
	return out
}
