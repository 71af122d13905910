package fault

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/test/testsite"
)

// TestAgentGivesUpOnAnUnreachableCoordinator stops the coordinator for good while an agent's
// container runs: once the coordinator has stayed unreachable for the agent's bound
// (CTS_AGENT_COORDINATOR_TIMEOUT_MIN, 3 s here) the agent stops its container, keeps its
// journal (with the final event it could not deliver) and exits non-zero with a sentence
// saying what to do, instead of retrying forever.
func TestAgentGivesUpOnAnUnreachableCoordinator(t *testing.T) {
	testsite.RequireEnv(t)
	s := startSite(t, func(cfg *app.Config) {
		cfg.Sites[0].PluginConfig["env"].(map[string]string)["CTS_AGENT_COORDINATOR_TIMEOUT_MIN"] = "0.05"
	})
	image := registerTestTool(t, s)
	in := s.PutInput(t, "fault/in/unreachable.txt", []byte("x\n"))
	id := submitTool(t, s, image, in, "sleep", "600")
	s.WaitState(t, id, 2*time.Minute, "job_submitted")
	waitOutput(t, s, id, "started")
	dirs, _ := filepath.Glob(filepath.Join(s.Env.Dir, "agents", id, "*", "0"))
	if len(dirs) != 1 {
		t.Fatalf("agent folders of job %s: %v", id, dirs)
	}
	dir := dirs[0]

	// Take the coordinator down and keep it down until the agent has exited (the restart is
	// abandoned then: the site ends without a coordinator).
	ctx, stopDown := context.WithCancel(t.Context())
	down := make(chan error, 1)
	go func() { down <- s.Env.RestartCoordinator(ctx, time.Hour, nil) }()
	defer func() { stopDown(); <-down }()

	var exit struct {
		ExitCode *int   `json:"exit_code"`
		Signal   string `json:"signal"`
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "exit"))
		if err == nil && json.Unmarshal(b, &exit) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent still runs 3 minutes after its coordinator went away (bound 3 s)")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if exit.ExitCode == nil || *exit.ExitCode != 1 || exit.Signal != "" {
		t.Errorf("agent exit %+v, want code 1", exit)
	}
	stderr, _ := os.ReadFile(filepath.Join(dir, "agent.err"))
	for _, want := range []string{"did not answer for 3s (CTS_AGENT_COORDINATOR_TIMEOUT_MIN)", "its container is stopped",
		"start the agent again with the same attempt"} {
		if !strings.Contains(string(stderr), want) {
			t.Errorf("agent stderr lacks %q:\n%s", want, stderr)
		}
	}
	journals, _ := filepath.Glob(filepath.Join(dir, "events-*.journal"))
	if len(journals) != 1 {
		t.Fatalf("journals %v, want the attempt's journal kept", journals)
	}
	if b, _ := os.ReadFile(journals[0]); !strings.Contains(string(b), `"state":"error"`) {
		t.Errorf("journal lacks the undelivered final event:\n%s", b)
	}
	left := testsite.Containers(t, filepath.Join(s.Env.Dir, "runc"))
	if prefix := "cts-" + id[:8] + "-"; strings.Contains(strings.Join(left, " "), prefix) {
		t.Errorf("the container is still there: %s", left)
	}
}
