package testsite

import (
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/devmode"
)

// TestSiteEndsItsProcesses: a site whose test ends while a job's agent runs its container
// (the supervisor and agent live in sessions of their own, by design) leaves nothing of its
// own running.
func TestSiteEndsItsProcesses(t *testing.T) {
	RequireEnv(t)
	var dir string
	t.Run("site", func(t *testing.T) {
		s := Start(t, Options{})
		dir = s.Env.Dir
		image := s.RegisterTool(t, Binary(t, TestToolPkg), "procs")
		in := s.PutInput(t, "procs/in/x.txt", []byte("x\n"))
		var sub map[string]string
		if err := s.API.Do(t.Context(), "POST", "/jobs", s.Demo.UserToken, map[string]any{
			"cluster": devmode.SiteName, "image": image, "input_files": []string{in},
			"output_dir": "cts-data/procs/out", "runtime": 600,
			"params": map[string]any{"args": []any{"sleep-ignore-term", "600"}},
		}, &sub); err != nil {
			t.Fatalf("submit: %v", err)
		}
		s.WaitState(t, sub["job_id"], 2*time.Minute, "job_submitted")
		var sup, other int
		for _, p := range siteProcesses([]string{dir}) {
			if p.supervisor {
				sup++
			} else {
				other++
			}
		}
		if sup == 0 || other == 0 {
			t.Fatalf("while the job runs: %d supervisors and %d other processes of the site, want both", sup, other)
		}
	})
	if left := siteProcesses([]string{dir}); len(left) > 0 {
		t.Errorf("processes of the site still run after its test ended:%s", describe(left))
	}
}
