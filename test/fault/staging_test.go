package fault

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/test/demo"
	"github.com/kbase/cts/test/testsite"
)

// TestStagerKilled: the first staging task of a reference data object hangs and is killed
// with SIGKILL, as a node failure would. The staging does not stay download_submitted: the
// reconciler sees from the launcher that the task died without reporting, restages it as a
// new attempt, and that attempt stages the data.
func TestStagerKilled(t *testing.T) {
	bins := testsite.RequireEnv(t)
	pidFile := filepath.Join(t.TempDir(), "hung.pid")
	// Attempt 0 of a staging task hangs (exec keeps the pid the script wrote); everything else
	// is the real agent, the reap included (the local launcher runs `<agent> reap --yes` with
	// the task's environment after the task was killed: a hanging reap would hold the exit
	// record back for the supervisor's ReapTimeout, 2 minutes).
	wrapper := testsite.Script(t, "agent", fmt.Sprintf(`#!/bin/sh
if [ "$CTS_AGENT_MODE" = refdata ] && [ "$REFDATA_ATTEMPT" = 0 ] && [ "$1" != reap ]; then
	echo $$ > %s.tmp && mv %s.tmp %s
	exec sleep 600
fi
exec %s "$@"
`, pidFile, pidFile, pidFile, bins.Agent))
	s := startSiteWith(t, wrapper, func(c *app.Config) { c.Reconcile.Interval = time.Second })
	ctx := context.Background()
	crc, err := demo.PutWithCRC(ctx, s.Env.Stack.S3.Client(), devmode.DataBucket, "fault/refdata/genes.txt", []byte("gene1\ngene2\n"))
	if err != nil {
		t.Fatal(err)
	}
	var rd struct {
		ID string `json:"id"`
	}
	q := url.Values{"crc64nvme": {crc}}
	if err := s.API.Do(ctx, "POST", "/admin/refdata/cts-data/fault/refdata/genes.txt?"+q.Encode(), s.Demo.AdminToken, nil, &rd); err != nil {
		t.Fatalf("register refdata: %v", err)
	}
	type status struct {
		Cluster     string `json:"cluster"`
		State       string `json:"state"`
		AdminError  string `json:"admin_error"`
		Transitions []struct {
			State string `json:"state"`
		} `json:"transition_times"`
	}
	site := func() status {
		t.Helper()
		var v struct {
			Statuses []status `json:"statuses"`
		}
		if err := s.API.Do(ctx, "GET", "/admin/refdata/"+rd.ID, s.Demo.AdminToken, nil, &v); err != nil {
			t.Fatal(err)
		}
		for _, st := range v.Statuses {
			if st.Cluster == devmode.SiteName {
				return st
			}
		}
		t.Fatalf("no status for %s: %+v", devmode.SiteName, v.Statuses)
		return status{}
	}

	deadline := time.Now().Add(2 * time.Minute)
	var pid int
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first staging task never started: %+v", site())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The task may start before the coordinator has recorded the launcher's acceptance
	// (Launched runs when Submit returns): wait for the record, bounded.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		st := site()
		if st.State == "download_submitted" {
			break
		}
		if st.State != "created" || time.Now().After(deadline) {
			t.Fatalf("staging %+v while its task runs (want download_submitted)", st)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	deadline = time.Now().Add(3 * time.Minute)
	for site().State != "complete" {
		if time.Now().After(deadline) {
			t.Fatalf("the staging did not complete after its task was killed: %+v", site())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var states []string
	for _, tr := range site().Transitions {
		states = append(states, tr.State)
	}
	// created, download_submitted (attempt 0), error → created (the restage), then attempt 1.
	want := []string{"created", "download_submitted", "error", "created", "download_submitted", "complete"}
	if !slices.Equal(states, want) {
		t.Errorf("transitions %v, want %v", states, want)
	}
	if !strings.Contains(s.Logs(), `"msg":"reconciler restaged refdata"`) || !strings.Contains(s.Logs(), "exited with code 137") {
		t.Errorf("the restage and its reason were not logged")
	}
}
