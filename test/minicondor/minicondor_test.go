package minicondor_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/test/minicondor"
)

func TestSplitNewSyntax(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		err      bool
	}{
		{"plain", `"a=1 b=2"`, []string{"a=1", "b=2"}, false},
		{"spaces", `"a='x y'  b=2"`, []string{"a=x y", "b=2"}, false},
		{"single_quote", `"a='it''s'"`, []string{"a=it's"}, false},
		{"double_quote", `"a=say""hi"""`, []string{`a=say"hi"`}, false},
		{"mixed", `"a='x ""y"" ''z'''"`, []string{`a=x "y" 'z'`}, false},
		{"empty_value", `"a= b=''"`, []string{"a=", "b="}, false},
		{"empty", `""`, nil, false},
		{"not_quoted", `a=1`, nil, true},
		{"lone_double", `"a="b"`, nil, true},
		{"open_single", `"a='b"`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := minicondor.SplitNewSyntax(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExpr(t *testing.T) {
	ad := minicondor.Ad{"CTSJobID": "abc", "ClusterId": int64(7), "ProcId": int64(1), "Held": true}
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`CTSJobID == "abc"`, true},
		{`CTSJobID == "ABC"`, true},
		{`CTSJobID =?= "ABC"`, false},
		{`ctsjobid == "abc" && ClusterId == 7`, true},
		{`ClusterId == 6 || ClusterId == 7`, true},
		{`(ClusterId == 6 || ClusterId == 8) && ProcId == 1`, false},
		{`Missing == 1`, false},
		{`Missing =!= 1`, true},
		{`Missing =?= undefined`, true},
		{`!(ProcId > 0)`, false},
		{`ProcId >= 1 && ProcId <= 1 && Held`, true},
		{`CTSJobID != "x"`, true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := minicondor.ParseExpr(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Matches(ad); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{`(a == 1`, `a == "x`, `a ==`, `a # b`} {
		if _, err := minicondor.ParseExpr(bad); err == nil {
			t.Errorf("ParseExpr(%q) succeeded", bad)
		}
	}
}

func TestParseDescription(t *testing.T) {
	ok := "executable = /bin/true\n+A = \"x\"\nqueue n from (\n  4\n  5\n)\n"
	d, err := minicondor.ParseDescription(ok)
	if err != nil {
		t.Fatal(err)
	}
	if d.QueueVar != "n" || strings.Join(d.Items, ",") != "4,5" || d.Attrs["A"] != `"x"` {
		t.Errorf("parsed %+v", d)
	}
	for name, text := range map[string]string{
		"unknown_command": "executable = /bin/true\nfoo = 1\nqueue\n",
		"no_queue":        "executable = /bin/true\n",
		"no_executable":   "queue\n",
		"two_queues":      "executable = /bin/true\nqueue\nqueue\n",
		"getenv":          "executable = /bin/true\ngetenv = true\nqueue\n",
		"universe":        "executable = /bin/true\nuniverse = docker\nqueue\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := minicondor.ParseDescription(text); err == nil {
				t.Errorf("accepted:\n%s", text)
			}
		})
	}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// tools builds minicondor once and installs it under the tool names.
func tools(t *testing.T) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "minicondor-test-")
		if buildErr != nil {
			return
		}
		bin := filepath.Join(binDir, "minicondor")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/kbase/cts/test/minicondor/cmd/minicondor").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, string(out)}
			return
		}
		_, buildErr = minicondor.Install(bin, binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	m := map[string]string{}
	for _, n := range minicondor.Tools {
		m[n] = filepath.Join(binDir, n)
	}
	return m
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type pool struct {
	t     *testing.T
	tools map[string]string
	state string
	dir   string
}

func newPool(t *testing.T) *pool {
	return &pool{t: t, tools: tools(t), state: t.TempDir(), dir: t.TempDir()}
}

func (p *pool) run(tool string, args ...string) (string, error) {
	cmd := exec.Command(p.tools[tool], args...)
	cmd.Env = []string{minicondor.EnvDir + "=" + p.state, "PATH=" + os.Getenv("PATH")}
	cmd.Dir = p.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func (p *pool) submit(desc string) string {
	p.t.Helper()
	f := filepath.Join(p.dir, "job.sub")
	if err := os.WriteFile(f, []byte(desc), 0o644); err != nil {
		p.t.Fatal(err)
	}
	out, err := p.run("condor_submit", "-terse", f)
	if err != nil {
		p.t.Fatalf("condor_submit: %v: %s", err, out)
	}
	c, _, _ := strings.Cut(strings.TrimSpace(out), ".")
	return c
}

func (p *pool) ads(tool string, args ...string) []map[string]any {
	p.t.Helper()
	out, err := p.run(tool, append([]string{"-json"}, args...)...)
	if err != nil {
		p.t.Fatalf("%s: %v: %s", tool, err, out)
	}
	if strings.TrimSpace(out) == "" {
		return nil
	}
	var ads []map[string]any
	if err := json.Unmarshal([]byte(out), &ads); err != nil {
		p.t.Fatalf("%s output %q: %v", tool, out, err)
	}
	return ads
}

// waitHistory waits until n procs of cluster are in the history and returns them.
func (p *pool) waitHistory(cluster string, n int) []map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ads := p.ads("condor_history", cluster)
		if len(ads) >= n {
			return ads
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("cluster %s: %d procs in the history after 15s, want %d; queue %v", cluster, len(ads), n, p.ads("condor_q", cluster))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const script = `#!/bin/sh
echo "cwd=$(pwd)"
echo "V=$V"
echo "W=$W"
cat input.txt
trap 'echo TERM >> "$MARK"; exit 143' TERM
case "$1" in
fail) exit 3 ;;
sleep) sleep 30 & wait $! ;;
esac
exit 0
`

func TestRunHoldRemove(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	exe := filepath.Join(p.dir, "job.sh")
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(p.dir, "input.txt")
	if err := os.WriteFile(input, []byte("the input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(p.dir, "term")
	desc := `executable = ` + exe + `
arguments = "$(mode)"
environment = "V='a value with ''quotes'' and ""doubles""' W=$(DOLLAR)HOME MARK=` + mark + `"
transfer_input_files = ` + input + `
initialdir = ` + p.dir + `
output = out.$(ProcId)
error = err.$(ProcId)
on_exit_hold = ExitCode =!= 0
want_graceful_removal = true
job_max_vacate_time = 1
+CTSJobID = "job-1"
+CTSContainerNumber = $(ProcId)
queue mode from (
ok
fail
sleep
)
`
	c := p.submit(desc)
	done := p.waitHistory(c, 1)
	if len(done) != 1 || done[0]["ProcId"].(float64) != 0 || done[0]["JobStatus"].(float64) != 4 || done[0]["ExitCode"].(float64) != 0 {
		t.Fatalf("history %v", done)
	}
	out, err := os.ReadFile(filepath.Join(p.dir, "out.0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`V=a value with 'quotes' and "doubles"`, "W=$HOME", "the input", "cwd=" + filepath.Join(p.state, "execute", c+".0"),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	// Proc 1 exits 3: held with HTCondor's reason. Proc 2 runs.
	deadline := time.Now().Add(10 * time.Second)
	var q []map[string]any
	for {
		q = p.ads("condor_q", "-constraint", `CTSJobID == "job-1"`, "-attributes", "ProcId,JobStatus,HoldReason,HoldReasonCode,ExitCode")
		if len(q) == 2 && q[0]["JobStatus"].(float64) == 5 && q[1]["JobStatus"].(float64) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %v", q)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if q[0]["HoldReasonCode"].(float64) != 3 || !strings.Contains(q[0]["HoldReason"].(string), "OnExitHold") || q[0]["ExitCode"].(float64) != 3 {
		t.Errorf("held proc %v", q[0])
	}
	if _, ok := q[0]["CTSJobID"]; ok {
		t.Errorf("projection kept an attribute not asked for: %v", q[0])
	}
	if out, err := p.run("condor_rm", "-reason", "test removal", c); err != nil {
		t.Fatalf("condor_rm: %v %s", err, out)
	}
	all := p.waitHistory(c, 3)
	for _, ad := range all[1:] {
		if ad["JobStatus"].(float64) != 3 || ad["RemoveReason"] != "test removal" {
			t.Errorf("removed proc %v", ad)
		}
	}
	if b, _ := os.ReadFile(mark); !strings.Contains(string(b), "TERM") {
		t.Errorf("the running proc got no SIGTERM")
	}
	if out, err := p.run("condor_rm", c); err == nil || !strings.Contains(out, "Couldn't find/remove") {
		t.Errorf("second condor_rm: %v %s", err, out)
	}
	if q := p.ads("condor_q", c); len(q) != 0 {
		t.Errorf("queue not empty: %v", q)
	}
}

func TestAllowedDurationAndFailure(t *testing.T) {
	t.Parallel()
	p := newPool(t)
	c := p.submit("executable = /bin/sleep\ntransfer_executable = false\narguments = \"30\"\nallowed_job_duration = 1\njob_max_vacate_time = 1\nqueue\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		q := p.ads("condor_q", c)
		if len(q) == 1 && q[0]["JobStatus"].(float64) == 5 {
			if q[0]["HoldReasonCode"].(float64) != 46 {
				t.Errorf("held %v", q[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not held: %v", q)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.MkdirAll(filepath.Join(p.state, "fail"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.state, "fail", "condor_q"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.run("condor_q", "-json"); err == nil || !strings.Contains(out, "Failed to connect") {
		t.Errorf("injected failure: %v %s", err, out)
	}
}
