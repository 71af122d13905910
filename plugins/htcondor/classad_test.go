package htcondor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// realAds reads a file of testdata/real (see its README) as condor_q would print it: the files
// of one pasted ad lack the surrounding array.
func realAds(t *testing.T, name string) []ad {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "real", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(string(b), "{") {
		b = append(append([]byte("[\n"), b...), "]\n"...)
	}
	ads, err := parseAds(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ads
}

func TestRealAdValues(t *testing.T) {
	r := realAds(t, "condor_q-running.json")[0]
	if n, ok := r.int("JobStatus"); !ok || n != 2 {
		t.Errorf("JobStatus %d %t", n, ok)
	}
	if n, ok := r.int("jobstatus"); !ok || n != 2 {
		t.Errorf("attribute names are case-insensitive: jobstatus %d %t", n, ok)
	}
	if f, ok := r.float("CPUsUsage"); !ok || f != 0.9974730512006985 {
		t.Errorf("CPUsUsage %v %t", f, ok)
	}
	if s := r.str("Requirements"); s != "" {
		t.Errorf("an expression read as the string %q", s)
	}
	if e, ok := r.expression("Requirements"); !ok || !strings.Contains(e, `TARGET.Arch == "X86_64"`) {
		t.Errorf("Requirements expression %q %t", e, ok)
	}
	if _, ok := r.float("MemoryUsage"); ok {
		t.Error("MemoryUsage read as a number: it is an expression in a real ad")
	}
	if s := r.str("JOBGLIDEIN_ResourceName"); !strings.Contains(s, `"Local Job"`) {
		t.Errorf("a string with escaped quotes: %q", s)
	}
	if !r.boolean("WantRemoteIO") || r.boolean("ExitBySignal") {
		t.Error("booleans")
	}
}

// TestRealAdStatus maps the real ads to container states and usage.
func TestRealAdStatus(t *testing.T) {
	mib := func(m int64) int64 { return m << 20 }
	t.Run("running", func(t *testing.T) {
		cs := containerStatus(realAds(t, "condor_q-running.json")[0], true)
		if cs.State != launcher.StateRunning || cs.ExitCode != nil || !cs.Started.Equal(time.Unix(1617115471, 0)) {
			t.Errorf("status %+v", cs)
		}
		// CommittedTime is 0 while a job runs: the wall time so far is RemoteWallClockTime. The
		// memory comes from ResidentSetSize (1,750,000 KiB), MemoryUsage being an expression.
		want := launcher.Usage{CPUSeconds: 1452 + 19, WallSeconds: 37327, MaxMemoryBytes: mib((1750000 + 1023) / 1024), CPUs: 1}
		if cs.Usage == nil || *cs.Usage != want {
			t.Errorf("usage %+v, want %+v", cs.Usage, want)
		}
		if !strings.Contains(string(cs.Details), `"MemoryUsage":"/Expr(((ResidentSetSize + 1023) / 1024))/"`) {
			t.Errorf("details do not keep the ad as printed: %s", cs.Details)
		}
	})
	t.Run("held by on_exit_hold", func(t *testing.T) {
		// This real ad has no ExitCode: the launcher cannot say the proc exited, so it is
		// held, with HTCondor's reason.
		cs := containerStatus(realAds(t, "condor_q-held.json")[0], true)
		if cs.State != launcher.StateHeld || cs.HoldCode != 3 || cs.ExitCode != nil ||
			!strings.Contains(cs.Reason, "OnExitHold expression '(ExitBySignal == true) || (ExitCode != 0)' evaluated to TRUE (HoldReasonCode 3)") {
			t.Errorf("status %+v", cs)
		}
		if cs.Usage == nil || cs.Usage.WallSeconds != 42594 || cs.Usage.CPUSeconds != 5068+35 {
			t.Errorf("usage %+v", cs.Usage)
		}
	})
	t.Run("HTCondor's fixture", func(t *testing.T) {
		ads := realAds(t, "two-ads.json")
		if len(ads) != 2 {
			t.Fatalf("%d ads", len(ads))
		}
		if cs := containerStatus(ads[0], true); cs.State != launcher.StateHeld {
			t.Errorf("JobStatus 5: %+v", cs)
		}
		if cs := containerStatus(ads[1], true); cs.State != launcher.StateRunning || !strings.HasPrefix(cs.Reason, "being removed") {
			t.Errorf("JobStatus 3 in the queue: %+v", cs)
		}
		if cs := containerStatus(ads[1], false); cs.State != launcher.StateRemoved {
			t.Errorf("JobStatus 3 in the history: %+v", cs)
		}
	})
}

func TestParseAdsEdges(t *testing.T) {
	if ads, err := parseAds([]byte(" \n")); err != nil || ads != nil {
		t.Errorf("no output: %v %v", ads, err)
	}
	for _, bad := range []string{`{"a": 1}`, `[{"a": 1}] [`, `[1]`, `[{"a": }]`} {
		if _, err := parseAds([]byte(bad)); err == nil {
			t.Errorf("parseAds(%s) succeeded", bad)
		}
	}
	ads, err := parseAds([]byte(`[{"MemoryUsage": 12.5, "CommittedTime": 7, "RemoteWallClockTime": 9.0, "Undef": null}]`))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := ads[0].memoryMiB(); m != 12.5 {
		t.Errorf("a site's numeric MemoryUsage: %v", m)
	}
	if w, _ := ads[0].wallSeconds(); w != 7 {
		t.Errorf("CommittedTime once a run completed: %v", w)
	}
	if _, ok := ads[0].int("Undef"); ok || ads[0].str("Undef") != "" {
		t.Error("undefined has a value")
	}
}
