package agentws

import (
	"fmt"
	"time"

	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/shared/protocol"
)

// admit checks the hello against the session's credential. It returns the launch attempt the
// agent may act for (ingest.NoLaunch for a dry run without a credential), or why it is
// refused.
func (s *session) admit(h *protocol.Hello) (int, string) {
	c := s.claims
	if c == nil {
		if !h.DryRun {
			return ingest.NoLaunch, "The site-wide executor token cannot act on a job: an agent presents the credential its launcher " +
				"gave its container (the file named by CTS_AGENT_CREDENTIAL_FILE)"
		}
		return ingest.NoLaunch, ""
	}
	switch {
	case c.Site != "":
		return 0, "A reference data staging credential cannot run a job's container"
	case h.JobID != c.JobID || h.Container != c.Container:
		return 0, fmt.Sprintf("The agent credential is for container %d of job %s, not container %d of job %s",
			c.Container, c.JobID, h.Container, h.JobID)
	case c.Kind == agentcred.KindSession && c.AgentAttempt != h.Attempt:
		return 0, fmt.Sprintf("The session credential is for agent attempt %s, not %s", c.AgentAttempt, h.Attempt)
	}
	return c.Launch, ""
}

// sendCredential gives the agent a new session credential, bound to its container, launch
// and attempt. Without a credential (dry runs) there is nothing to renew.
func (s *session) sendCredential(a ingest.Agent) error {
	if s.claims == nil || s.h.cfg.Credentials == nil {
		return nil
	}
	// Whole seconds (the claims' unit), rounded up.
	exp := time.Now().Add(s.h.cfg.SessionTTL + time.Second - 1).UTC().Truncate(time.Second)
	tok := s.h.cfg.Credentials.Mint(agentcred.Claims{Kind: agentcred.KindSession, JobID: a.JobID, Container: a.Container,
		Launch: a.Launch, AgentAttempt: a.Attempt, Expires: exp.Unix()})
	return s.send(protocol.Credential{Token: tok, Expires: exp})
}

// Bounds of an agent's live log lines: the agent rate-limits itself; these hold even when it
// does not.
const (
	// maxLinesPerMessage is the most lines one Log message may add.
	maxLinesPerMessage = 1000
	// lineRate and lineBurst are a session's sustained lines per second and its burst.
	lineRate  = 200
	lineBurst = 2000
)

// limitLines returns the lines of one Log message the session may still add at now: at most
// maxLinesPerMessage, within the session's token bucket; the rest are replaced by one line
// saying how many were dropped.
func (s *session) limitLines(lines []string, now time.Time) []string {
	if s.lineLast.IsZero() {
		s.lineTokens = lineBurst
	} else {
		s.lineTokens = min(lineBurst, s.lineTokens+now.Sub(s.lineLast).Seconds()*lineRate)
	}
	s.lineLast = now
	keep := min(len(lines), maxLinesPerMessage, int(s.lineTokens))
	s.lineTokens -= float64(keep)
	if keep == len(lines) {
		return lines
	}
	out := append(lines[:keep:keep], fmt.Sprintf("[the coordinator dropped %d lines: more than %d lines a second]", len(lines)-keep, lineRate))
	return out
}

// Bounds of a sane transfer progress report.
const (
	maxProgressBytes = 1 << 50 // 1 PiB
	maxProgressFiles = 10_000_000
)

// checkProgress returns why a progress report is not sane, or "".
func checkProgress(p *protocol.Progress) string {
	switch {
	case p.Phase != protocol.PhaseDownload && p.Phase != protocol.PhaseUpload:
		return fmt.Sprintf("unknown phase %q", p.Phase)
	case p.BytesDone < 0 || p.BytesTotal < 0 || p.FilesDone < 0 || p.FilesTotal < 0:
		return "a negative count"
	case p.BytesDone > p.BytesTotal || p.FilesDone > p.FilesTotal:
		return fmt.Sprintf("more done (%d bytes, %d files) than in total (%d bytes, %d files)", p.BytesDone, p.FilesDone, p.BytesTotal, p.FilesTotal)
	case p.BytesTotal > maxProgressBytes || p.FilesTotal > maxProgressFiles:
		return fmt.Sprintf("totals of %d bytes and %d files are beyond any job", p.BytesTotal, p.FilesTotal)
	}
	return ""
}
