package htcondor_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kbase/cts/plugins/htcondor"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/launcher/launchertest"
)

// credentialFiles lists the credential files (and leftover temporary ones) in dir.
func credentialFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	for _, pattern := range []string{"*" + htcondor.CredentialSuffix, "*" + htcondor.CredentialSuffix + ".tmp"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			names = append(names, filepath.Base(f))
		}
	}
	slices.Sort(names)
	return names
}

// waitFiles polls until the credential files of dir are want (generous deadline: the machine
// may be loaded).
func waitFiles(t *testing.T, dir string, want []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := credentialFiles(t, dir)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("credential files in initial_dir: %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCredentialFilesRemoved runs through the real plugin binary and mini-condor: a proc's
// credential file stays while the proc is in the queue and goes once it has left (completed
// or removed by a cancel), and a failed condor_submit leaves none behind.
func TestCredentialFilesRemoved(t *testing.T) {
	t.Parallel()
	p := newPool(t, time.Second)
	p.cfg.CredentialSweepSeconds = 0.2
	h := p.harness(t)
	c := configured(t, p)
	name := func(job string, attempt, proc int) string {
		return filepath.Base(htcondor.CredentialFile(p.cfg, job, attempt, proc))
	}

	jobID := launchertest.NewJobID("cred")
	req := h.Request(jobID, 0, launchertest.Behaviour{}, launchertest.Behaviour{Sleep: time.Hour})
	if len(req.Credentials) != 2 {
		t.Fatalf("the harness gives %d credentials, want 2", len(req.Credentials))
	}
	resp, err := c.Submit(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	ref := launcher.JobRef{JobID: jobID, Handle: resp.Handle}
	// Container 0 completes and leaves the queue; container 1 still runs and keeps its file.
	waitFiles(t, p.initial, []string{name(jobID, 0, 1)})
	sts, err := c.Status(ctx(t), []launcher.JobRef{ref})
	if err != nil || sts[0].Err != nil {
		t.Fatal(err, sts[0].Err)
	}
	if st := sts[0].Containers[1].State; st != launcher.StateRunning {
		t.Fatalf("container 1 is %s, want running (its file must stay while it runs)", st)
	}
	info, err := os.Stat(filepath.Join(p.initial, name(jobID, 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", info.Mode().Perm())
	}
	// A cancelled proc's file goes once the proc has left the queue.
	if err := c.Cancel(ctx(t), ref); err != nil {
		t.Fatal(err)
	}
	waitFiles(t, p.initial, nil)
	sts, err = c.Status(ctx(t), []launcher.JobRef{ref})
	if err != nil || sts[0].Err != nil {
		t.Fatal(err, sts[0].Err)
	}
	if st := sts[0].Containers[1].State; st != launcher.StateRemoved {
		t.Errorf("container 1 is %s after its file went, want removed", st)
	}

	// condor_submit fails and no cluster exists: the files written for it are removed at once.
	if err := os.MkdirAll(filepath.Join(p.state, "fail"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.state, "fail", "condor_submit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failed := launchertest.NewJobID("credfail")
	if _, err := c.Submit(ctx(t), h.Request(failed, 0, launchertest.Behaviour{}, launchertest.Behaviour{})); err == nil {
		t.Fatal("submit succeeded with condor_submit failing")
	}
	if got := credentialFiles(t, p.initial); len(got) != 0 {
		t.Errorf("a failed submit left credential files: %v", got)
	}
}
