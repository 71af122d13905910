package minicondor_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/test/minicondor"
)

// realDir holds real condor_q -json output (its README says where each file comes from).
const realDir = "../../plugins/htcondor/testdata/real"

func readReal(t *testing.T, name string) ([]byte, []minicondor.Ad) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realDir, name))
	if err != nil {
		t.Fatal(err)
	}
	ads, err := minicondor.ParseAds(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b, ads
}

// kind names a value's ClassAd type.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "undefined"
	case int64:
		return "integer"
	case float64:
		return "real"
	case string:
		return "string"
	case bool:
		return "boolean"
	case minicondor.Expression:
		return "expression"
	case minicondor.Ad:
		return "ad"
	case []any:
		return "list"
	}
	return "unknown"
}

func TestParseRealAds(t *testing.T) {
	_, running := readReal(t, "condor_q-running.json")
	_, held := readReal(t, "condor_q-held.json")
	_, two := readReal(t, "two-ads.json")
	if len(running) != 1 || len(held) != 1 || len(two) != 2 {
		t.Fatalf("%d, %d, %d ads", len(running), len(held), len(two))
	}
	r, h := running[0], held[0]
	for _, c := range []struct {
		ad   minicondor.Ad
		name string
		want any
	}{
		{r, "JobStatus", int64(2)},
		{r, "RemoteWallClockTime", 37327.0},
		{r, "Rank", 0.0},
		{r, "CPUsUsage", 0.9974730512006985},
		{r, "ExitBySignal", false},
		{r, "MemoryUsage", minicondor.Expression("((ResidentSetSize + 1023) / 1024)")},
		{r, "OnExitHold", minicondor.Expression("(ExitBySignal == true) || (ExitCode != 0)")},
		{r, "SingularityImage", minicondor.Expression("'/cvmfs/singularity.opensciencegrid.org/jeffersonlab/clas12software:production'")},
		{r, "RootDir", "/"},
		{h, "JobStatus", int64(5)},
		{h, "HoldReasonCode", int64(3)},
		{h, "MemoryUsage", minicondor.Expression("((ResidentSetSize + 1023) / 1024)")},
		{two[1], "Owner", "Alice"},
	} {
		if got := c.ad[c.name]; got != c.want {
			t.Errorf("%s = %#v (%s), want %#v", c.name, got, kind(got), c.want)
		}
	}
	if req, _ := r["Requirements"].(minicondor.Expression); !strings.Contains(string(req), `(TARGET.Arch == "X86_64")`) {
		t.Errorf("Requirements = %q", req)
	}
	if s := r.String("JOBGLIDEIN_ResourceName"); !strings.Contains(s, `"Local Job"`) {
		t.Errorf("escaped quotes: %q", s)
	}
	if _, ok := h["ExitCode"]; ok {
		t.Errorf("the held ad has an ExitCode: update the README")
	}
}

// TestRealAdRoundTrip: the simulator writes a real ad back byte for byte as condor_q printed
// it (attribute order, reals, escapes, expressions, indentation).
func TestRealAdRoundTrip(t *testing.T) {
	raw, ads := readReal(t, "condor_q-running.json")
	got, err := minicondor.MarshalAd(ads[0])
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != string(raw) {
		gl, rl := strings.Split(string(got), "\n"), strings.Split(string(raw), "\n")
		for i := range min(len(gl), len(rl)) {
			if gl[i] != rl[i] {
				t.Fatalf("line %d:\n got %s\nwant %s", i+1, gl[i], rl[i])
			}
		}
		t.Fatalf("%d lines, want %d", len(gl), len(rl))
	}
}

// TestFraming: several ads are framed as HTCondor's own fixture frames them; attributes are
// sorted case-insensitively (the fixture keeps insertion order, which a map cannot).
func TestFraming(t *testing.T) {
	raw, ads := readReal(t, "two-ads.json")
	got, err := minicondor.MarshalAds(ads)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture with each ad's attribute lines sorted.
	var want []string
	var block []string
	flush := func() {
		slices.SortFunc(block, func(a, b string) int {
			return strings.Compare(strings.ToLower(a), strings.ToLower(b))
		})
		for i, l := range block {
			if i < len(block)-1 {
				l += ","
			}
			want = append(want, l)
		}
		block = nil
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if strings.HasPrefix(l, "  ") {
			block = append(block, strings.TrimSuffix(l, ","))
			continue
		}
		if l == "}" {
			flush()
		}
		want = append(want, l)
	}
	if string(got) != strings.Join(want, "\n")+"\n" {
		t.Fatalf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if b, _ := minicondor.MarshalAds(nil); len(b) != 0 {
		t.Errorf("no ads printed %q, want nothing", b)
	}
}

func TestMarshalValues(t *testing.T) {
	b, err := minicondor.MarshalAd(minicondor.Ad{
		"i": int64(-3), "r": 2.0, "r2": 1e20, "r3": 0.1, "s": "a\"b\\c\n\x01/d", "u": nil,
		"e": minicondor.Expression(`a == "x"`), "l": []any{int64(1), "x"}, "b": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "b": true,
  "e": "\/Expr(a == \"x\")\/",
  "i": -3,
  "l": [
    1,
    "x"
  ],
  "r": 2.0,
  "r2": 1E+20,
  "r3": 0.1,
  "s": "a\"b\\c\n\u0001/d",
  "u": null
}`
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	back, err := minicondor.ParseAds(b)
	if err != nil || len(back) != 1 || back[0]["e"] != minicondor.Expression(`a == "x"`) || back[0]["r"] != 2.0 ||
		back[0]["i"] != int64(-3) || back[0]["s"] != "a\"b\\c\n\x01/d" {
		t.Fatalf("parsed back %#v %v", back, err)
	}
	for _, bad := range []string{`[1]`, `{"a": }`, `{"a": 1} x`, `"s"`} {
		if _, err := minicondor.ParseAds([]byte(bad)); err == nil {
			t.Errorf("ParseAds(%s) succeeded", bad)
		}
	}
}

// TestSimulatedAdsLookReal runs procs through the simulator as the HTCondor launcher submits
// them, and checks every attribute its ads share with the real ones has the real one's type.
// The attributes the launcher reads must all be among them.
func TestSimulatedAdsLookReal(t *testing.T) {
	t.Parallel()
	_, running := readReal(t, "condor_q-running.json")
	_, realHeld := readReal(t, "condor_q-held.json")
	p := newPool(t)
	exe := filepath.Join(p.dir, "job.sh")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit $1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := p.submit(`executable = ` + exe + `
arguments = "$(code)"
environment = "A=1"
initialdir = ` + p.dir + `
output = out.$(ProcId)
error = err.$(ProcId)
log = job.log
should_transfer_files = YES
when_to_transfer_output = ON_EXIT_OR_EVICT
transfer_output_files = ""
on_exit_hold = ExitCode =!= 0
request_cpus = 2
request_memory = 100
request_disk = 1024
+CTSJobID = "job-1"
+CTSContainerNumber = $(ProcId)
queue code from (
0
3
)
`)
	p.waitHistory(c, 1)
	var heldAd minicondor.Ad
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := p.run("condor_q", "-json", c+".1")
		if err != nil {
			t.Fatal(err)
		}
		ads, err := minicondor.ParseAds([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		if len(ads) == 1 && ads[0]["JobStatus"] == int64(5) {
			heldAd = ads[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proc 1 not held after 20s: %v", ads)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := p.run("condor_history", "-json", c+".0")
	if err != nil {
		t.Fatal(err)
	}
	hist, err := minicondor.ParseAds([]byte(out))
	if err != nil || len(hist) != 1 {
		t.Fatalf("history %v %v", hist, err)
	}
	if again, _ := minicondor.MarshalAds(hist); string(again) != out {
		t.Errorf("the simulator's output does not read back to itself")
	}
	// What the launcher reads (plugins/htcondor containerStatus), all of which the real ads have.
	launcherReads := []string{"ClusterId", "ProcId", "JobStatus", "LastJobStatus", "HoldReason", "HoldReasonCode",
		"ExitBySignal", "JobCurrentStartDate", "JobStartDate", "CompletionDate", "EnteredCurrentStatus", "RemoteUserCpu",
		"RemoteSysCpu", "CommittedTime", "RemoteWallClockTime", "MemoryUsage", "ResidentSetSize", "RequestCpus"}
	for _, pair := range []struct {
		name      string
		sim, real minicondor.Ad
	}{{"completed vs running", hist[0], running[0]}, {"held vs held", heldAd, realHeld[0]}} {
		shared := 0
		var simOnly []string
		for name, v := range pair.sim {
			rv, ok := pair.real[name]
			if !ok {
				simOnly = append(simOnly, name)
				continue
			}
			shared++
			if kind(v) != kind(rv) {
				t.Errorf("%s: %s is %s (%v) in the simulator, %s (%v) in the real ad", pair.name, name, kind(v), v, kind(rv), rv)
			}
		}
		for _, name := range launcherReads {
			_, inSim := pair.sim[name]
			_, inReal := pair.real[name]
			if pair.name == "completed vs running" && name == "HoldReason" || strings.HasPrefix(name, "Hold") && pair.name != "held vs held" {
				continue // a completed proc is not held
			}
			if !inSim || !inReal {
				t.Errorf("%s: %s the launcher reads is in the simulator's ad: %t, in the real one: %t", pair.name, name, inSim, inReal)
			}
		}
		slices.Sort(simOnly)
		t.Logf("%s: %d attributes compared; only in the simulator (no real example to check them against): %s",
			pair.name, shared, strings.Join(simOnly, " "))
	}
	if v := hist[0]["MemoryUsage"]; kind(v) != "expression" {
		t.Errorf("MemoryUsage = %v, want condor_submit's expression", v)
	}
	if heldAd["CompletionDate"] != int64(0) || heldAd["CommittedTime"] != int64(0) {
		t.Errorf("a held proc has CompletionDate %v, CommittedTime %v; real ones have 0", heldAd["CompletionDate"], heldAd["CommittedTime"])
	}
}
