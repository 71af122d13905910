package ingest

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/s3path"
)

// Bounds of what one agent event may carry. Longer messages are cut (they are the agent's
// words, kept for people); anything else out of bounds refuses the event.
const (
	// MaxUserError, MaxAdminError and MaxTraceback bound the event's messages, in bytes.
	MaxUserError  = 16 << 10
	MaxAdminError = 64 << 10
	MaxTraceback  = 256 << 10
	// MaxExitCode is the largest exit status a process can have (128 + a signal number
	// included).
	MaxExitCode = 255
)

// OutputFolder is where container n of j may write outputs: the job's output folder, and in
// it the container's own subfolder "<n>/" when the job declobbers (the agents' layout).
func OutputFolder(j *jobs.Job, n int) (s3path.Dir, error) {
	dir := folder(j.Input.OutputDir)
	if j.Input.Params.Declobber {
		dir += strconv.Itoa(n) + "/"
	}
	return s3path.ParseDir(dir)
}

// checkEvent checks what an event of container n claims against its job: outputs (with
// complete only) each once, below the container's output folder, with a well-formed
// CRC64/NVME; an exit code a process can have. It cuts oversized messages in place.
func checkEvent(j *jobs.Job, n int, ev *protocol.Event) error {
	if ev.ExitCode != nil && (*ev.ExitCode < 0 || *ev.ExitCode > MaxExitCode) {
		return fmt.Errorf("exit code %d is not 0 to %d", *ev.ExitCode, MaxExitCode)
	}
	if len(ev.Outputs) > 0 && ev.State != job.Complete {
		return fmt.Errorf("outputs may only come with %s, not %s", job.Complete, ev.State)
	}
	if len(ev.Outputs) > 0 {
		dir, err := OutputFolder(j, n)
		if err != nil {
			return fmt.Errorf("the job's output folder: %w", err)
		}
		seen := make(map[string]bool, len(ev.Outputs))
		for i, o := range ev.Outputs {
			p, err := s3path.Parse(o.File)
			switch {
			case err != nil:
				return fmt.Errorf("output %d: %w", i, err)
			case p.String() != o.File:
				return fmt.Errorf("output %d %q is not in its normal form %q", i, o.File, p.String())
			case !dir.Contains(p):
				return fmt.Errorf("output %d %s is not in the container's output folder %s", i, o.File, dir)
			case seen[o.File]:
				return fmt.Errorf("output %s is listed twice", o.File)
			}
			seen[o.File] = true
			if _, err := checksum.Decode(o.CRC64NVME); err != nil {
				return fmt.Errorf("output %s: CRC64/NVME %q: %w", o.File, o.CRC64NVME, err)
			}
		}
	}
	ev.Error = cut(ev.Error, MaxUserError)
	ev.AdminError = cut(ev.AdminError, MaxAdminError)
	ev.Traceback = cut(ev.Traceback, MaxTraceback)
	return nil
}

// cut shortens s to at most n bytes on a rune boundary, saying so.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " [cut by the coordinator]"
	s = s[:n-len(mark)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + mark
}
