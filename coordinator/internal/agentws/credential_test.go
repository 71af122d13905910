package agentws_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// TestExecutorTokenCannotActOnAJob performs the attack: the site-wide executor token (on every
// worker) and a made-up attempt connect for a running job. Without the container's credential
// the agent gets no assignment and can report nothing; the token still serves dry runs.
func TestExecutorTokenCannotActOnAJob(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	c := f.dialWith(t, "tok-agent")
	made := hello
	made.Attempt = "made-up"
	send(t, c, made)
	wantFatalThenClose(t, c, "The site-wide executor token cannot act on a job: an agent presents the credential its launcher "+
		"gave its container (the file named by CTS_AGENT_CREDENTIAL_FILE)")

	c = f.dialWith(t, "tok-agent")
	dry := hello
	dry.DryRun = true
	send(t, c, dry)
	if a := mustRecv[protocol.Assignment](t, c); a.JobID != hello.JobID {
		t.Fatalf("dry run assignment %+v", a)
	}
	send(t, c, protocol.Event{Seq: 1, State: job.Complete})
	wantFatalThenClose(t, c, "a dry run may not report events")

	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if len(f.svc.hellos) != 1 || !f.svc.hellos[0].DryRun || f.svc.launches[0] != ingest.NoLaunch || len(f.svc.events) != 0 {
		t.Fatalf("the executor token reached the service: hellos %+v, launches %v, events %+v", f.svc.hellos, f.svc.launches, f.svc.events)
	}
}

// TestCredentialBoundToItsContainer checks a credential acts for its own container, launch and
// (session credentials) agent attempt only.
func TestCredentialBoundToItsContainer(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name  string
		cred  agentcred.Claims
		hello protocol.Hello
		fatal string
	}{
		{"another container", agentcred.Claims{Kind: agentcred.KindLaunch, JobID: "job1", Container: 0, Expires: exp}, hello,
			"The agent credential is for container 0 of job job1, not container 1 of job job1"},
		{"another job", agentcred.Claims{Kind: agentcred.KindLaunch, JobID: "job2", Container: 1, Expires: exp}, hello,
			"The agent credential is for container 1 of job job2, not container 1 of job job1"},
		{"another attempt's session", agentcred.Claims{Kind: agentcred.KindSession, JobID: "job1", Container: 1, AgentAttempt: "12.0", Expires: exp}, hello,
			"The session credential is for agent attempt 12.0, not 12.1"},
		{"a staging credential", agentcred.Claims{Kind: agentcred.KindLaunch, JobID: "job1", Container: 1, Site: "kbase", Expires: exp}, hello,
			"A reference data staging credential cannot run a job's container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dialWith(t, f.keys.Mint(tc.cred))
			send(t, c, tc.hello)
			wantFatalThenClose(t, c, tc.fatal)
		})
	}
	t.Run("refused before the upgrade", func(t *testing.T) {
		other, _ := agentcred.New([]byte(strings.Repeat("o", agentcred.MinKeyBytes)))
		for name, cred := range map[string]string{
			"another key": other.Mint(agentcred.Claims{Kind: agentcred.KindLaunch, JobID: "job1", Container: 1, Expires: exp}),
			"expired":     f.keys.Mint(agentcred.Claims{Kind: agentcred.KindLaunch, JobID: "job1", Container: 1, Expires: time.Now().Add(-time.Minute).Unix()}),
			"tampered":    f.credential("job1", 1) + "x",
		} {
			_, resp, err := websocket.DefaultDialer.DialContext(t.Context(), f.url, http.Header{"Authorization": {"Bearer " + cred}})
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: dial = %v, %v; want 401", name, err, resp)
			}
		}
	})
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if len(f.svc.hellos) != 0 {
		t.Fatalf("refused credentials reached the service: %+v", f.svc.hellos)
	}
}

// TestSessionCredential checks the agent gets a session credential bound to its attempt, that
// it is renewed while the session lasts, and that the agent reconnects with it.
func TestSessionCredential(t *testing.T) {
	f := newFixture(t, agentws.Config{SessionTTL: 3 * time.Second})
	c := f.dial(t)
	send(t, c, hello)
	_, cred := assigned(t, c)
	claims, err := f.keys.Verify(cred.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Kind != agentcred.KindSession || claims.JobID != "job1" || claims.Container != 1 || claims.AgentAttempt != "12.1" ||
		claims.Launch != 0 || !claims.ExpiresAt().Equal(cred.Expires) || time.Until(cred.Expires) > 5*time.Second {
		t.Fatalf("session credential %+v (expires %v)", claims, cred.Expires)
	}
	// Renewed every third of its lifetime: a newer one arrives before it expires.
	next := mustRecv[protocol.Credential](t, c)
	if !next.Expires.After(cred.Expires) || next.Token == cred.Token {
		t.Fatalf("renewal %+v, first %+v", next, cred)
	}
	_ = c.Close()
	c = f.dialWith(t, next.Token)
	send(t, c, hello)
	assigned(t, c)
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if len(f.svc.launches) != 2 || f.svc.launches[1] != 0 {
		t.Fatalf("launches %v", f.svc.launches)
	}
}

// TestReportsBounded performs the attack of insane progress and a flood of live log lines:
// the progress is not shown, the lines are capped.
func TestReportsBounded(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	for _, p := range []protocol.Progress{
		{Phase: protocol.PhaseUpload, BytesDone: 1 << 60, BytesTotal: -5},
		{Phase: protocol.PhaseUpload, BytesDone: 10, BytesTotal: 5},
		{Phase: protocol.PhaseUpload, FilesDone: 2, FilesTotal: 1},
		{Phase: protocol.PhaseUpload, BytesDone: 1 << 60, BytesTotal: 1 << 60},
		{Phase: "exfiltrate", BytesTotal: 1},
	} {
		send(t, c, p)
	}
	lines := make([]string, 5000)
	for i := range lines {
		lines[i] = fmt.Sprint("injected ", i)
	}
	send(t, c, protocol.Log{Stream: "stdout", Lines: lines})
	send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
	mustRecv[protocol.Ack](t, c)
	if got := f.h.Progress(t.Context(), "job1"); len(got) != 0 {
		t.Errorf("insane progress kept: %+v", got)
	}
	tail := f.h.Tail("job1", 1)
	if n := len(tail); n == 0 || n > 1001 || !strings.Contains(tail[n-1].Text, "the coordinator dropped 4000 lines") {
		t.Errorf("%d lines kept, last %q", n, tail[len(tail)-1].Text)
	}
}
