// Package launchertest is the conformance suite every launcher plugin must pass, through the
// real go-plugin gRPC path (a plugin binary, or an in-process pair from
// plugin.TestPluginGRPCConn). The containers run a stand-in for cts-agent (StandInScript) that
// records what it saw, so the suite checks behaviour, not just answers.
//
// It imports only the launcher SDK and the standard library; backend specifics come from the
// Harness. It must not be imported by non-test code.
package launchertest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// Harness is what the suite needs from one launcher.
type Harness struct {
	// Start starts a new, unconfigured plugin (a new process for a binary plugin). The suite
	// closes it.
	Start func(t *testing.T) *launcher.Client
	// Config is a valid plugin configuration whose agent is the stand-in (StandInScript),
	// with a kill grace of KillGrace.
	Config []byte
	// RecordDir is where the stand-ins write their records; it reaches them as
	// CTS_TEST_RECORD_DIR.
	RecordDir string
	// UnknownHandle returns a well-formed handle of a job that was never submitted.
	UnknownHandle func(jobID string) string
	// KillGrace is the configured time between SIGTERM and SIGKILL on Cancel.
	KillGrace time.Duration
	// Timeout bounds each wait for a container state (default 20 s).
	Timeout time.Duration
	// Env is added to every request's environment.
	Env map[string]string
}

// Run runs the conformance suite against h. Independent cases run in parallel on one plugin
// process; the restart and dead-process cases start their own.
func Run(t *testing.T, h Harness) {
	if h.Timeout <= 0 {
		h.Timeout = 20 * time.Second
	}
	s := &suite{h: h}
	s.c = s.startConfigured(t)

	t.Run("info", s.testInfo)
	t.Run("configure", s.testConfigure)
	t.Run("not_configured", s.testNotConfigured)
	t.Run("invalid_request", s.testInvalidRequest)
	t.Run("parallel", func(t *testing.T) {
		t.Run("run_and_exit", s.para(s.testRunAndExit))
		t.Run("idempotent_submit", s.para(s.testIdempotentSubmit))
		t.Run("concurrent_first_submit", s.para(s.testConcurrentFirstSubmit))
		t.Run("status_batch", s.para(s.testStatusBatch))
		t.Run("cancel_running", s.para(s.testCancelRunning))
		t.Run("cancel_finished", s.para(s.testCancelFinished))
		t.Run("cancel_unknown", s.para(s.testCancelUnknown))
		t.Run("cancel_right_after_submit", s.para(s.testCancelRightAfterSubmit))
		t.Run("cleanup", s.para(s.testCleanup))
	})
	t.Run("plugin_restart", s.testRestart)
	t.Run("plugin_exit", s.testPluginExit)
}

type suite struct {
	h Harness
	c *launcher.Client
}

func (s *suite) para(f func(t *testing.T)) func(t *testing.T) {
	return func(t *testing.T) {
		t.Parallel()
		f(t)
	}
}

func (s *suite) start(t *testing.T) *launcher.Client {
	t.Helper()
	c := s.h.Start(t)
	t.Cleanup(c.Close)
	return c
}

func (s *suite) startConfigured(t *testing.T) *launcher.Client {
	t.Helper()
	c := s.start(t)
	if err := c.Configure(ctx(t), s.h.Config); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return c
}

// ctx returns a context for one call, ended with the test.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// NewJobID returns a job ID unique to this run, readable in logs ("lt-<name>-<random>").
func NewJobID(name string) string {
	return "lt-" + name + "-" + strings.ToLower(rand.Text()[:10])
}

// Request builds a SubmitRequest for (jobID, attempt) whose containers run the stand-in with
// behaviours bs (one container per behaviour). Plugin-specific tests use it too.
func (h Harness) Request(jobID string, attempt int, bs ...Behaviour) launcher.SubmitRequest {
	env := map[string]string{
		"JOB_ID":              jobID,
		"CTS_TEST_ATTEMPT":    fmt.Sprint(attempt),
		"CTS_TEST_RECORD_DIR": h.RecordDir,
		"CTS_TEST_MARK":       "mark " + jobID,
	}
	maps.Copy(env, h.Env)
	maps.Copy(env, standInEnv(bs))
	creds := make([]string, len(bs))
	for n := range creds {
		creds[n] = Credential(jobID, attempt, n)
	}
	return launcher.SubmitRequest{
		JobID: jobID, Attempt: attempt, Containers: len(bs),
		CPUs: 1, MemoryBytes: 64 << 20, RuntimeSeconds: 600,
		User: "conformance", BatchName: "conformance " + jobID, Env: env, Credentials: creds,
	}
}

// Credential is the stand-in credential the suite sends for container n of (jobID, attempt).
func Credential(jobID string, attempt, n int) string {
	return fmt.Sprintf("ctsagent1.conformance-secret-%s-%d-%d.sig", jobID, attempt, n)
}

func (s *suite) request(jobID string, attempt int, bs ...Behaviour) launcher.SubmitRequest {
	return s.h.Request(jobID, attempt, bs...)
}

func (s *suite) submit(t *testing.T, req launcher.SubmitRequest) launcher.JobRef {
	t.Helper()
	resp, err := s.c.Submit(ctx(t), req)
	if err != nil {
		t.Fatalf("submit %s: %v", req.JobID, err)
	}
	if resp.Existing || resp.Handle == "" {
		t.Fatalf("submit %s: got %+v, want a new non-empty handle", req.JobID, resp)
	}
	return launcher.JobRef{JobID: req.JobID, Handle: resp.Handle}
}

// status returns the status of one job, failing the test on any error.
func status(t *testing.T, c *launcher.Client, ref launcher.JobRef) launcher.JobStatus {
	t.Helper()
	sts, err := c.Status(ctx(t), []launcher.JobRef{ref})
	if err != nil {
		t.Fatalf("status %s: %v", ref.JobID, err)
	}
	if len(sts) != 1 {
		t.Fatalf("status %s: %d entries, want 1", ref.JobID, len(sts))
	}
	if sts[0].Err != nil {
		t.Fatalf("status %s: %v", ref.JobID, sts[0].Err)
	}
	return sts[0]
}

// waitFor polls the job's status until cond holds, and returns it; seen records every state
// each container was observed in.
func (s *suite) waitFor(t *testing.T, c *launcher.Client, ref launcher.JobRef, timeout time.Duration,
	what string, cond func(launcher.JobStatus) bool, seen map[int]map[launcher.ContainerState]bool,
) launcher.JobStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := status(t, c, ref)
		for _, cs := range st.Containers {
			if seen != nil {
				if seen[cs.Container] == nil {
					seen[cs.Container] = map[launcher.ContainerState]bool{}
				}
				seen[cs.Container][cs.State] = true
			}
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s after %v; last status %s", ref.JobID, what, timeout, describe(st))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describe(st launcher.JobStatus) string {
	var b strings.Builder
	for _, c := range st.Containers {
		code := "-"
		if c.ExitCode != nil {
			code = fmt.Sprint(*c.ExitCode)
		}
		fmt.Fprintf(&b, "[%d %s code=%s %q] ", c.Container, c.State, code, c.Reason)
	}
	return b.String()
}

func all(want ...launcher.ContainerState) func(launcher.JobStatus) bool {
	return func(st launcher.JobStatus) bool {
		if len(st.Containers) == 0 {
			return false
		}
		for _, c := range st.Containers {
			ok := false
			for _, w := range want {
				ok = ok || c.State == w
			}
			if !ok {
				return false
			}
		}
		return true
	}
}

func terminal(st launcher.JobStatus) bool {
	for _, c := range st.Containers {
		if !c.State.Terminal() {
			return false
		}
	}
	return len(st.Containers) > 0
}

func (s *suite) record(t *testing.T, jobID string, attempt, n int) Record {
	t.Helper()
	rec, err := ReadRecord(s.h.RecordDir, jobID, attempt, n)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// checkExitCodes checks that every container exited by itself with the given codes.
func checkExitCodes(t *testing.T, st launcher.JobStatus, codes ...int) {
	t.Helper()
	if len(st.Containers) != len(codes) {
		t.Fatalf("%d containers, want %d", len(st.Containers), len(codes))
	}
	for i, c := range st.Containers {
		if c.Container != i {
			t.Errorf("entry %d is container %d", i, c.Container)
		}
		if c.State != launcher.StateExited {
			t.Errorf("container %d: state %s, want exited", i, c.State)
		}
		if c.ExitCode == nil || *c.ExitCode != codes[i] {
			t.Errorf("container %d: exit code %v, want %d", i, ptr(c.ExitCode), codes[i])
		}
		if !c.Started.IsZero() && !c.Ended.IsZero() && c.Ended.Before(c.Started) {
			t.Errorf("container %d: ended %v before it started %v", i, c.Ended, c.Started)
		}
	}
}

func ptr(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func (s *suite) testInfo(t *testing.T) {
	info, err := s.c.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name == "" {
		t.Error("empty plugin name")
	}
	if info.APIVersion != launcher.APIVersion {
		t.Errorf("API version %d, want %d", info.APIVersion, launcher.APIVersion)
	}
	if got := s.c.PluginInfo(); got.Name != info.Name {
		t.Errorf("PluginInfo name %q, Info name %q", got.Name, info.Name)
	}
}

func (s *suite) testConfigure(t *testing.T) {
	for name, cfg := range map[string]string{
		"bad_json":   `{"agent_path": `,
		"not_object": `[1, 2]`,
		"empty":      ``,
	} {
		t.Run(name, func(t *testing.T) {
			err := s.c.Configure(ctx(t), []byte(cfg))
			if !errors.Is(err, launcher.ErrInvalidConfig) {
				t.Fatalf("configure %q: got %v, want ErrInvalidConfig", cfg, err)
			}
		})
	}
	t.Run("previous_config_stays", func(t *testing.T) {
		jobID := NewJobID("cfg")
		sts, err := s.c.Status(ctx(t), []launcher.JobRef{{JobID: jobID, Handle: s.h.UnknownHandle(jobID)}})
		if err != nil {
			t.Fatalf("status after a rejected configure: %v", err)
		}
		if !errors.Is(sts[0].Err, launcher.ErrNotFound) {
			t.Fatalf("status of unknown job: %v, want ErrNotFound", sts[0].Err)
		}
	})
	t.Run("reconfigure", func(t *testing.T) {
		if err := s.c.Configure(ctx(t), s.h.Config); err != nil {
			t.Fatalf("configure again: %v", err)
		}
	})
}

func (s *suite) testNotConfigured(t *testing.T) {
	c := s.start(t)
	if _, err := c.Info(ctx(t)); err != nil {
		t.Fatalf("info before configure: %v", err)
	}
	jobID := NewJobID("nocfg")
	if _, err := c.Submit(ctx(t), s.request(jobID, 0, Behaviour{})); !errors.Is(err, launcher.ErrNotConfigured) {
		t.Errorf("submit: got %v, want ErrNotConfigured", err)
	}
	if _, err := c.Status(ctx(t), []launcher.JobRef{{JobID: jobID, Handle: s.h.UnknownHandle(jobID)}}); !errors.Is(err, launcher.ErrNotConfigured) {
		t.Errorf("status: got %v, want ErrNotConfigured", err)
	}
	if err := c.Cancel(ctx(t), launcher.JobRef{JobID: jobID, Handle: s.h.UnknownHandle(jobID)}); !errors.Is(err, launcher.ErrNotConfigured) {
		t.Errorf("cancel: got %v, want ErrNotConfigured", err)
	}
}

func (s *suite) testInvalidRequest(t *testing.T) {
	good := s.request(NewJobID("inv"), 0, Behaviour{})
	for name, mutate := range map[string]func(*launcher.SubmitRequest){
		"job_id_path":   func(r *launcher.SubmitRequest) { r.JobID = "../escape" },
		"job_id_empty":  func(r *launcher.SubmitRequest) { r.JobID = "" },
		"no_containers": func(r *launcher.SubmitRequest) { r.Containers = 0 },
		"neg_attempt":   func(r *launcher.SubmitRequest) { r.Attempt = -1 },
		"reserved_env":  func(r *launcher.SubmitRequest) { r.Env = map[string]string{launcher.EnvContainerNumber: "9"} },
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			mutate(&r)
			if _, err := s.c.Submit(ctx(t), r); !errors.Is(err, launcher.ErrInvalidRequest) {
				t.Fatalf("submit: got %v, want ErrInvalidRequest", err)
			}
		})
	}
	t.Run("garbage_handle", func(t *testing.T) {
		ref := launcher.JobRef{JobID: good.JobID, Handle: "%%not a handle%%"}
		sts, err := s.c.Status(ctx(t), []launcher.JobRef{ref})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(sts[0].Err, launcher.ErrInvalidRequest) {
			t.Errorf("status: entry error %v, want ErrInvalidRequest", sts[0].Err)
		}
		if err := s.c.Cancel(ctx(t), ref); !errors.Is(err, launcher.ErrInvalidRequest) {
			t.Errorf("cancel: got %v, want ErrInvalidRequest", err)
		}
	})
}

func (s *suite) testRunAndExit(t *testing.T) {
	jobID := NewJobID("run")
	b := func(code int) Behaviour { return Behaviour{Sleep: time.Second, Exit: code} }
	req := s.request(jobID, 0, b(0), b(3), b(7))
	ref := s.submit(t, req)
	seen := map[int]map[launcher.ContainerState]bool{}
	st := s.waitFor(t, s.c, ref, s.h.Timeout, "exited", all(launcher.StateExited), seen)
	checkExitCodes(t, st, 0, 3, 7)
	attempts := map[string]bool{}
	for n, cs := range st.Containers {
		if !seen[n][launcher.StateRunning] {
			t.Errorf("container %d never seen running (seen %v)", n, seen[n])
		}
		if cs.Attempt == "" || attempts[cs.Attempt] {
			t.Errorf("container %d: attempt %q empty or not unique", n, cs.Attempt)
		}
		attempts[cs.Attempt] = true
		rec := s.record(t, jobID, 0, n)
		if len(rec.Starts) != 1 {
			t.Fatalf("container %d started %d times, want 1", n, len(rec.Starts))
		}
		env := rec.Starts[0]
		for k, want := range map[string]string{
			"JOB_ID":                    jobID,
			launcher.EnvContainerNumber: fmt.Sprint(n),
			launcher.EnvAgentAttempt:    cs.Attempt,
			"CTS_TEST_MARK":             "mark " + jobID,
		} {
			if env[k] != want {
				t.Errorf("container %d: %s=%q, want %q", n, k, env[k], want)
			}
		}
		for k := range env {
			if k == launcher.Handshake.MagicCookieKey || strings.HasPrefix(k, "PLUGIN_") {
				t.Errorf("container %d: the plugin's own variable %s leaked into the agent environment", n, k)
			}
		}
		// Its own credential, and only its own: in a file readable by the agent's user only
		// (or, failing that, in its environment).
		want := Credential(jobID, 0, n)
		switch {
		case env[launcher.EnvCredentialFile] != "":
			if env["CTS_TEST_CREDENTIAL"] != want || env["CTS_TEST_CREDENTIAL_MODE"] != "600" {
				t.Errorf("container %d: credential file %s holds %q with mode %s, want its credential with mode 600",
					n, env[launcher.EnvCredentialFile], env["CTS_TEST_CREDENTIAL"], env["CTS_TEST_CREDENTIAL_MODE"])
			}
		case env[launcher.EnvCredential] != want:
			t.Errorf("container %d: no credential reached the agent (%s or %s)", n, launcher.EnvCredentialFile, launcher.EnvCredential)
		}
		for k, v := range env {
			if k != launcher.EnvCredential && k != "CTS_TEST_CREDENTIAL" && strings.Contains(v, "conformance-secret") {
				t.Errorf("container %d: a credential is in %s", n, k)
			}
		}
		if strings.Contains(cs.Reason, "conformance-secret") || strings.Contains(string(cs.Details), "conformance-secret") ||
			strings.Contains(ref.Handle, "conformance-secret") {
			t.Errorf("container %d: a credential is in the status the launcher reports", n)
		}
		if rec.TERMs != 0 {
			t.Errorf("container %d got SIGTERM without a cancel", n)
		}
	}
}

func (s *suite) testIdempotentSubmit(t *testing.T) {
	jobID := NewJobID("idem")
	bs := []Behaviour{{Sleep: 1500 * time.Millisecond}, {Sleep: 1500 * time.Millisecond, Exit: 4}}
	req := s.request(jobID, 0, bs...)
	ref := s.submit(t, req)

	var wg sync.WaitGroup
	resps := make([]launcher.SubmitResponse, 6)
	errs := make([]error, len(resps))
	for i := range resps {
		wg.Go(func() { resps[i], errs[i] = s.c.Submit(ctx(t), req) })
	}
	wg.Wait()
	for i := range resps {
		if errs[i] != nil {
			t.Fatalf("resubmit %d: %v", i, errs[i])
		}
		if resps[i].Handle != ref.Handle || !resps[i].Existing {
			t.Errorf("resubmit %d: got %+v, want handle %q existing", i, resps[i], ref.Handle)
		}
	}

	other := req
	other.Containers = 3
	other.Env = maps.Clone(req.Env)
	other.Credentials = append(slices.Clone(req.Credentials), Credential(jobID, 0, 2))
	if _, err := s.c.Submit(ctx(t), other); !errors.Is(err, launcher.ErrConflict) {
		t.Errorf("same key, other container count: got %v, want ErrConflict", err)
	}

	next := s.request(jobID, 1, bs...)
	ref1 := s.submit(t, next)
	if ref1.Handle == ref.Handle {
		t.Errorf("attempt 1 got the handle of attempt 0: %q", ref1.Handle)
	}

	st0 := s.waitFor(t, s.c, ref, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	st1 := s.waitFor(t, s.c, ref1, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	checkExitCodes(t, st0, 0, 4)
	checkExitCodes(t, st1, 0, 4)
	for n := range bs {
		if st0.Containers[n].Attempt == st1.Containers[n].Attempt {
			t.Errorf("container %d: attempts 0 and 1 share the agent attempt %q", n, st0.Containers[n].Attempt)
		}
		for attempt := range 2 {
			if got := len(s.record(t, jobID, attempt, n).Starts); got != 1 {
				t.Errorf("attempt %d container %d started %d times, want 1", attempt, n, got)
			}
		}
	}
}

func (s *suite) testConcurrentFirstSubmit(t *testing.T) {
	jobID := NewJobID("race")
	req := s.request(jobID, 0, Behaviour{Sleep: 200 * time.Millisecond}, Behaviour{Sleep: 200 * time.Millisecond})
	var wg sync.WaitGroup
	resps := make([]launcher.SubmitResponse, 6)
	errs := make([]error, len(resps))
	for i := range resps {
		wg.Go(func() { resps[i], errs[i] = s.c.Submit(ctx(t), req) })
	}
	wg.Wait()
	fresh := 0
	for i, r := range resps {
		if errs[i] != nil {
			t.Fatalf("submit %d: %v", i, errs[i])
		}
		if r.Handle != resps[0].Handle {
			t.Errorf("submit %d: handle %q, submit 0: %q", i, r.Handle, resps[0].Handle)
		}
		if !r.Existing {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d submits reported a new job, want exactly 1", fresh)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resps[0].Handle}
	st := s.waitFor(t, s.c, ref, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	checkExitCodes(t, st, 0, 0)
	for n := range 2 {
		if got := len(s.record(t, jobID, 0, n).Starts); got != 1 {
			t.Errorf("container %d started %d times, want 1", n, got)
		}
	}
}

func (s *suite) testStatusBatch(t *testing.T) {
	sts, err := s.c.Status(ctx(t), nil)
	if err != nil || len(sts) != 0 {
		t.Fatalf("status of no jobs: %v, %v", sts, err)
	}
	a := s.submit(t, s.request(NewJobID("ba"), 0, Behaviour{Exit: 1}))
	b := s.submit(t, s.request(NewJobID("bb"), 0, Behaviour{}, Behaviour{Exit: 2}))
	s.waitFor(t, s.c, a, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	s.waitFor(t, s.c, b, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	unknownID := NewJobID("bu")
	unknown := launcher.JobRef{JobID: unknownID, Handle: s.h.UnknownHandle(unknownID)}

	sts, err = s.c.Status(ctx(t), []launcher.JobRef{b, unknown, a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 4 {
		t.Fatalf("%d entries, want 4", len(sts))
	}
	for i, want := range []launcher.JobRef{b, unknown, a, b} {
		if sts[i].JobID != want.JobID {
			t.Errorf("entry %d is job %q, want %q", i, sts[i].JobID, want.JobID)
		}
	}
	if !errors.Is(sts[1].Err, launcher.ErrNotFound) || len(sts[1].Containers) != 0 {
		t.Errorf("unknown job: err %v, %d containers; want ErrNotFound and none", sts[1].Err, len(sts[1].Containers))
	}
	for _, i := range []int{0, 2, 3} {
		if sts[i].Err != nil {
			t.Errorf("entry %d: %v", i, sts[i].Err)
		}
	}
	checkExitCodes(t, sts[0], 0, 2)
	checkExitCodes(t, sts[2], 1)
}

func (s *suite) testCancelRunning(t *testing.T) {
	jobID := NewJobID("cancel")
	long := time.Minute
	ref := s.submit(t, s.request(jobID, 0, Behaviour{Sleep: long}, Behaviour{Sleep: long, IgnoreTERM: true}))
	s.waitFor(t, s.c, ref, s.h.Timeout, "running", all(launcher.StateRunning), nil)
	// The stand-in records its start just after it runs; wait for it so its TERM trap is set.
	deadline := time.Now().Add(s.h.Timeout)
	for n := 0; n < 2; {
		if len(s.record(t, jobID, 0, n).Starts) == 1 {
			n++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %d never recorded its start", n)
		}
		time.Sleep(20 * time.Millisecond)
	}

	canceled := time.Now()
	if err := s.c.Cancel(ctx(t), ref); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := s.c.Cancel(ctx(t), ref); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	st := s.waitFor(t, s.c, ref, s.h.KillGrace+s.h.Timeout, "removed", all(launcher.StateRemoved), nil)
	took := time.Since(canceled)
	if took >= long {
		t.Errorf("containers ended after %v: not stopped by the cancel", took)
	}
	for n, cs := range st.Containers {
		if rec := s.record(t, jobID, 0, n); rec.TERMs == 0 {
			t.Errorf("container %d never got SIGTERM", n)
		}
		if cs.Ended.IsZero() {
			t.Errorf("container %d: removed without an end time", n)
		}
	}
	if c := st.Containers[0]; c.ExitCode != nil && *c.ExitCode != 143 {
		t.Errorf("container 0 (exits on TERM): exit code %d, want 143", *c.ExitCode)
	}
	if c := st.Containers[1]; c.ExitCode != nil && *c.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("container 1 (ignores TERM): exit code %d, want %d", *c.ExitCode, 128+int(syscall.SIGKILL))
	}
	if took < s.h.KillGrace {
		t.Errorf("the TERM-ignoring container ended after %v, before the %v grace", took, s.h.KillGrace)
	}
	if err := s.c.Cancel(ctx(t), ref); err != nil {
		t.Fatalf("cancel of a removed job: %v", err)
	}
	if after := status(t, s.c, ref); !all(launcher.StateRemoved)(after) {
		t.Errorf("state changed by a later cancel: %s", describe(after))
	}
}

func (s *suite) testCancelFinished(t *testing.T) {
	ref := s.submit(t, s.request(NewJobID("cfin"), 0, Behaviour{Exit: 5}))
	s.waitFor(t, s.c, ref, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	for i := range 2 {
		if err := s.c.Cancel(ctx(t), ref); err != nil {
			t.Fatalf("cancel %d of a finished job: %v", i, err)
		}
	}
	checkExitCodes(t, status(t, s.c, ref), 5)
}

func (s *suite) testCancelUnknown(t *testing.T) {
	jobID := NewJobID("cunk")
	if err := s.c.Cancel(ctx(t), launcher.JobRef{JobID: jobID, Handle: s.h.UnknownHandle(jobID)}); err != nil {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
}

func (s *suite) testCancelRightAfterSubmit(t *testing.T) {
	jobID := NewJobID("cfast")
	bs := []Behaviour{{Sleep: time.Minute}, {Sleep: time.Minute}, {Sleep: time.Minute}}
	ref := s.submit(t, s.request(jobID, 0, bs...))
	if err := s.c.Cancel(ctx(t), ref); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	s.waitFor(t, s.c, ref, s.h.KillGrace+s.h.Timeout, "removed", all(launcher.StateRemoved), nil)
	for n := range bs {
		rec := s.record(t, jobID, 0, n)
		if len(rec.Starts) > 1 {
			t.Errorf("container %d started %d times", n, len(rec.Starts))
		}
	}
	// Nothing may start later either.
	time.Sleep(300 * time.Millisecond)
	if st := status(t, s.c, ref); !all(launcher.StateRemoved)(st) {
		t.Errorf("after cancel: %s", describe(st))
	}
}

func (s *suite) testCleanup(t *testing.T) {
	info, err := s.c.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	jobID := NewJobID("clean")
	ref := s.submit(t, s.request(jobID, 0, Behaviour{Sleep: time.Minute}))
	if !info.HasCapability(launcher.CapabilityCleanup) {
		if err := s.c.Cleanup(ctx(t), ref); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("cleanup without the capability: got %v, want ErrUnsupported", err)
		}
		if err := s.c.Cancel(ctx(t), ref); err != nil {
			t.Fatal(err)
		}
		return
	}
	s.waitFor(t, s.c, ref, s.h.Timeout, "running", all(launcher.StateRunning), nil)
	if err := s.c.Cleanup(ctx(t), ref); !errors.Is(err, launcher.ErrConflict) {
		t.Errorf("cleanup of a running job: got %v, want ErrConflict", err)
	}
	if err := s.c.Cancel(ctx(t), ref); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, s.c, ref, s.h.KillGrace+s.h.Timeout, "terminal", terminal, nil)
	for i := range 2 {
		if err := s.c.Cleanup(ctx(t), ref); err != nil {
			t.Fatalf("cleanup %d: %v", i, err)
		}
	}
	sts, err := s.c.Status(ctx(t), []launcher.JobRef{ref})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(sts[0].Err, launcher.ErrNotFound) {
		t.Errorf("status after cleanup: %v (%s), want ErrNotFound", sts[0].Err, describe(sts[0]))
	}
}

// testRestart checks that state lives in the backend, not in the plugin process: a new plugin
// process reports and deduplicates jobs the previous one submitted, and containers survive the
// plugin's end.
func (s *suite) testRestart(t *testing.T) {
	first := s.startConfigured(t)
	jobID := NewJobID("restart")
	req := s.request(jobID, 0, Behaviour{Sleep: 2 * time.Second}, Behaviour{Sleep: 2 * time.Second, Exit: 6})
	resp, err := first.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	s.waitFor(t, first, ref, s.h.Timeout, "running", all(launcher.StateRunning), nil)
	first.Close()

	second := s.startConfigured(t)
	st := status(t, second, ref)
	if !all(launcher.StateRunning, launcher.StateExited)(st) {
		t.Errorf("after a plugin restart: %s, want running (or exited)", describe(st))
	}
	again, err := second.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Handle != ref.Handle || !again.Existing {
		t.Errorf("resubmit after restart: %+v, want handle %q existing", again, ref.Handle)
	}
	st = s.waitFor(t, second, ref, s.h.Timeout, "exited", all(launcher.StateExited), nil)
	checkExitCodes(t, st, 0, 6)
	for n := range 2 {
		if got := len(s.record(t, jobID, 0, n).Starts); got != 1 {
			t.Errorf("container %d started %d times, want 1", n, got)
		}
	}
}

// testPluginExit kills the plugin process and checks that calls fail fast with
// ErrPluginExited instead of hanging or looking like a backend error.
func (s *suite) testPluginExit(t *testing.T) {
	c := s.startConfigured(t)
	if c.Pid() <= 0 {
		t.Skip("in-process plugin: no process to kill")
	}
	if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	jobID := NewJobID("dead")
	ref := launcher.JobRef{JobID: jobID, Handle: s.h.UnknownHandle(jobID)}
	calls := map[string]func(context.Context) error{
		"info":   func(ctx context.Context) error { _, err := c.Info(ctx); return err },
		"status": func(ctx context.Context) error { _, err := c.Status(ctx, []launcher.JobRef{ref}); return err },
		"submit": func(ctx context.Context) error { _, err := c.Submit(ctx, s.request(jobID, 0, Behaviour{})); return err },
		"cancel": func(ctx context.Context) error { return c.Cancel(ctx, ref) },
	}
	for _, name := range []string{"info", "status", "submit", "cancel"} {
		cctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		start := time.Now()
		err := calls[name](cctx)
		cancel()
		if !errors.Is(err, launcher.ErrPluginExited) {
			t.Errorf("%s on a dead plugin: got %v, want ErrPluginExited", name, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s on a dead plugin took %v", name, took)
		}
	}
	if !c.Exited() {
		t.Error("Exited() is false after the process was killed")
	}
}
