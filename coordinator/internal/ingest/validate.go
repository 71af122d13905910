package ingest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/manifest"
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

// ManifestPath is where container n of job id must put its outputs manifest: its log
// folder (which users cannot write), under the name the protocol fixes.
func ManifestPath(logDir, id string, n int) string {
	return strings.TrimSuffix(logDir, "/") + "/" + id + "/" + protocol.ManifestFile(n)
}

// checkManifest checks an outputs manifest's seal: exactly at ManifestPath, with a count,
// size and CRC64/NVME a manifest can have. Its content is checked when it is read.
func checkManifest(logDir string, j *jobs.Job, n int, m *protocol.OutputsManifest) error {
	want := ManifestPath(logDir, j.ID, n)
	switch {
	case m.File != want:
		return fmt.Errorf("outputs manifest %q is not %s, where container %d's manifest goes", cut(m.File, 2000), want, n)
	case m.Count < 1 || m.Count > manifest.MaxCount:
		return fmt.Errorf("outputs manifest %s lists %d outputs, not 1 to %d", want, m.Count, manifest.MaxCount)
	case m.Size < m.Count || m.Size > m.Count*manifest.MaxLine:
		return fmt.Errorf("outputs manifest %s: %d bytes cannot hold %d outputs", want, m.Size, m.Count)
	}
	if _, err := checksum.Decode(m.CRC64NVME); err != nil {
		return fmt.Errorf("outputs manifest %s: CRC64/NVME %q: %w", want, cut(m.CRC64NVME, 100), err)
	}
	return nil
}

// checkEvent checks what an event of container n claims against its job: outputs (with
// complete only) each once, below the container's output folder, with a well-formed
// CRC64/NVME, or instead an outputs manifest at its one place; an exit code a process can
// have. It cuts oversized messages in place.
func checkEvent(logDir string, j *jobs.Job, n int, ev *protocol.Event) error {
	if ev.ExitCode != nil && (*ev.ExitCode < 0 || *ev.ExitCode > MaxExitCode) {
		return fmt.Errorf("exit code %d is not 0 to %d", *ev.ExitCode, MaxExitCode)
	}
	if (len(ev.Outputs) > 0 || ev.OutputsManifest != nil) && ev.State != job.Complete {
		return fmt.Errorf("outputs may only come with %s, not %s", job.Complete, ev.State)
	}
	if ev.OutputsManifest != nil {
		if len(ev.Outputs) > 0 {
			return fmt.Errorf("an event carries outputs or an outputs manifest, not both")
		}
		if err := checkManifest(logDir, j, n, ev.OutputsManifest); err != nil {
			return err
		}
	}
	if len(ev.Outputs) > protocol.MaxInlineOutputs {
		return fmt.Errorf("%d outputs in one event; more than %d go in an outputs manifest", len(ev.Outputs), protocol.MaxInlineOutputs)
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
