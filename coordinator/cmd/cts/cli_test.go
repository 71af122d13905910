package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/test/ports"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("tok", "FILETOKEN\n", 0o600)
	write("empty", "\n", 0o600)
	relCfg := write("rel.yaml", "url: https://file.example/cts\ntoken_file: tok\ncluster: kbase\n", 0o600)
	tokCfg := write("tok.yaml", "url: https://file.example/cts\ntoken: CFGTOKEN\n", 0o644)
	bothCfg := write("both.yaml", "token: A\ntoken_file: tok\n", 0o600)
	typoCfg := write("typo.yaml", "url: https://x\ntokn: SECRETVALUE\n", 0o600)
	xdg := filepath.Join(dir, "xdg")
	if err := os.MkdirAll(filepath.Join(xdg, "cts"), 0o700); err != nil {
		t.Fatal(err)
	}
	write("xdg/cts/config.yaml", "url: http://xdg.example\n", 0o600)

	for _, tc := range []struct {
		name      string
		env       map[string]string
		flags     globalFlags
		url       string
		token     string
		source    string
		cluster   string
		warn      bool
		errSubstr string
	}{
		{name: "environment", env: map[string]string{"CTS_URL": "http://env.example", "CTS_TOKEN": " ENVTOKEN\n"},
			url: "http://env.example", token: "ENVTOKEN", source: "CTS_TOKEN"},
		{name: "file with a relative token file", flags: globalFlags{config: relCfg},
			url: "https://file.example/cts", token: "FILETOKEN", source: "token file " + filepath.Join(dir, "tok"), cluster: "kbase"},
		{name: "environment over file", flags: globalFlags{config: relCfg},
			env: map[string]string{"CTS_URL": "http://env.example", "CTS_TOKEN": "ENVTOKEN", "CTS_CLUSTER": "local"},
			url: "http://env.example", token: "ENVTOKEN", source: "CTS_TOKEN", cluster: "local"},
		{name: "flags over environment", flags: globalFlags{url: "http://flag.example", tokenFile: filepath.Join(dir, "tok")},
			env: map[string]string{"CTS_URL": "http://env.example", "CTS_TOKEN": "ENVTOKEN"},
			url: "http://flag.example", token: "FILETOKEN", source: "token file " + filepath.Join(dir, "tok")},
		{name: "CTS_CONFIG", env: map[string]string{"CTS_CONFIG": tokCfg},
			url: "https://file.example/cts", token: "CFGTOKEN", source: "config file " + tokCfg, warn: true},
		{name: "XDG_CONFIG_HOME", env: map[string]string{"XDG_CONFIG_HOME": xdg}, url: "http://xdg.example"},
		{name: "no default file is fine", env: map[string]string{"HOME": filepath.Join(dir, "nohome")}},
		{name: "missing named file", flags: globalFlags{config: filepath.Join(dir, "nope.yaml")}, errSubstr: "nope.yaml"},
		{name: "token and token_file", flags: globalFlags{config: bothCfg}, errSubstr: "not both"},
		{name: "CTS_TOKEN and CTS_TOKEN_FILE", env: map[string]string{"CTS_TOKEN": "a", "CTS_TOKEN_FILE": "b"}, errSubstr: "not both"},
		{name: "unknown key", flags: globalFlags{config: typoCfg}, errSubstr: "tokn"},
		{name: "empty token file", env: map[string]string{"CTS_TOKEN_FILE": filepath.Join(dir, "empty")}, errSubstr: "is empty"},
		{name: "missing token file", flags: globalFlags{tokenFile: filepath.Join(dir, "none")}, errSubstr: "token file (--token-file)"},
		{name: "bad url", env: map[string]string{"CTS_URL": "ftp://x"}, errSubstr: "want http(s)"},
		{name: "url with credentials", env: map[string]string{"CTS_URL": "http://u:SECRETPW@x"}, errSubstr: "credentials"},
		{name: "token with spaces", env: map[string]string{"CTS_TOKEN": "a b"}, errSubstr: "whitespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = map[string]string{}
			}
			if _, ok := env["HOME"]; !ok {
				env["HOME"] = t.TempDir()
			}
			cfg, err := loadConfig(tc.flags, func(k string) string { return env[k] })
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("error %v, want one with %q", err, tc.errSubstr)
				}
				if strings.Contains(err.Error(), "SECRET") {
					t.Errorf("error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.url != tc.url || cfg.token != tc.token || cfg.tokenSource != tc.source || cfg.cluster != tc.cluster ||
				(len(cfg.warnings) > 0) != tc.warn {
				t.Errorf("got url %q token %q source %q cluster %q warnings %v", cfg.url, cfg.token, cfg.tokenSource, cfg.cluster, cfg.warnings)
			}
		})
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte("image: x\nimgae: y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := map[string]string{"CTS_URL": "http://127.0.0.1:9", "CTS_TOKEN": "SECRETTOKEN"}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{"no command", ok, nil, exitUsage, "commands:", ""},
		{"help", ok, []string{"help"}, exitOK, "", "exit codes:"},
		{"command help", ok, []string{"wait", "-h"}, exitOK, "", "--timeout"},
		{"help of a command", ok, []string{"help", "images", "register"}, exitOK, "", "--usage-notes"},
		{"unknown command", ok, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`, ""},
		{"group without subcommand", ok, []string{"images"}, exitUsage, "images needs a subcommand", ""},
		{"missing job ID", ok, []string{"status"}, exitUsage, "want exactly one job ID", ""},
		{"bad flag value", ok, []string{"submit", "--containers", "two"}, exitUsage, "invalid value", ""},
		{"unknown flag", ok, []string{"list", "--colour"}, exitUsage, "flag provided but not defined", ""},
		{"bad --after", ok, []string{"list", "--after", "yesterday"}, exitUsage, "--after", ""},
		{"bad --arg-files", ok, []string{"submit", "--arg-files", "tabs"}, exitUsage, "want space, comma or repeat", ""},
		{"job file with unknown key", ok, []string{"submit", job}, exitUsage, `unknown field "imgae"`, ""},
		{"missing job file", ok, []string{"submit", filepath.Join(dir, "nope.json")}, exitUsage, "nope.json", ""},
		{"no url", map[string]string{"CTS_TOKEN": "SECRETTOKEN"}, []string{"whoami"}, exitUsage, "no service URL", ""},
		{"no token", map[string]string{"CTS_URL": "http://x"}, []string{"whoami"}, exitUsage, "no token", ""},
		{"bad url", map[string]string{"CTS_URL": "x.example", "CTS_TOKEN": "SECRETTOKEN"}, []string{"whoami"}, exitUsage, "want http(s)", ""},
		{"bad token file flag", ok, []string{"--token-file", filepath.Join(dir, "none"), "whoami"}, exitUsage, "token file", ""},
		{"completion of an unknown shell", ok, []string{"completion", "fish"}, exitUsage, "want bash or zsh", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			r := runCLI(t, env, tc.args...)
			r.want(t, tc.code)
			if !strings.Contains(r.stderr, tc.stderr) || !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout %q\nstderr %q\nwant %q / %q", r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "SECRETTOKEN") {
				t.Errorf("the token was printed")
			}
		})
	}
}

// TestMistypedFlagIsShort pins what a mistyped flag prints: the error and one usage line that
// says how to list the flags, not the whole help.
func TestMistypedFlagIsShort(t *testing.T) {
	t.Parallel()
	ok := map[string]string{"CTS_URL": "http://127.0.0.1:9", "CTS_TOKEN": "SECRETTOKEN"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--colour"}, "cts list: flag provided but not defined: -colour\n" +
			"usage: cts list [FLAGS] (cts list -h lists the flags)\n"},
		{[]string{"submit", "--containers", "two"}, "cts submit: invalid value \"two\" for flag -containers: parse error\n" +
			"usage: cts submit [JOBFILE.json|.yaml] [FLAGS] (cts submit -h lists the flags)\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			env := map[string]string{}
			for k, v := range ok {
				env[k] = v
			}
			r := runCLI(t, env, tc.args...)
			r.want(t, exitUsage)
			if r.stderr != tc.want || r.stdout != "" {
				t.Errorf("stdout %q\nstderr %q\nwant stderr %q", r.stdout, r.stderr, tc.want)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	// A reserved port refuses connections, and nothing else can listen on it meanwhile.
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	addr := port.Addr()
	r := runCLI(t, map[string]string{"CTS_TOKEN": "SECRETTOKEN"}, "--url", "http://"+addr, "whoami")
	r.want(t, exitUnreachable)
	if !strings.Contains(r.stderr, "service unreachable") || strings.Contains(r.stderr, "SECRETTOKEN") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestSubmitDryRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	list := filepath.Join(dir, "inputs.txt")
	if err := os.WriteFile(list, []byte("# inputs\nb/in/c\n\nb/in/d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := filepath.Join(dir, "job.yml")
	if err := os.WriteFile(yml, []byte(`cluster: kbase
image: img:1
input_files: [b/in/a, {file: b/in/b, data_id: "007"}]
output_dir: b/out
memory: 1GB
params:
  args: [old]
  environment: {Z: "1", A: {type: container_number, container_num_prefix: c}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"flags", []string{"--image", "img", "--input", "b/in/a", "--input-list", list, "--output-dir", "b/out",
			"--containers", "2", "--cpus", "3", "--memory", "2000", "--runtime", "90s", "--arg", "-o", "--arg", "/out/x",
			"--arg-files", "comma", "--arg-container", "--arg-param", `{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i"}`,
			"--env", "K=V=W", "--input-mount", "/in", "--declobber", "--input-root", "b/in"},
			`{"cluster":"local","image":"img","params":{"input_mount_point":"/in","declobber":true,"args":["-o","/out/x",` +
				`{"type":"input_files","input_files_format":"comma_separated_list"},{"type":"container_number"},` +
				`{"type":"input_files","input_files_format":"repeat_parameter","flag":"-i"}],"environment":{"K":"V=W"}},` +
				`"num_containers":2,"cpus":3,"memory":2000,"runtime":90,"input_roots":["b/in"],"output_dir":"b/out",` +
				`"input_files":["b/in/a","b/in/c","b/in/d"]}`},
		{"yaml file with overrides", []string{yml, "--arg", "new", "--env", "A=x", "--runtime", "PT1H"},
			`{"cluster":"kbase","image":"img:1","params":{"declobber":false,"args":["new"],"environment":{"Z":"1","A":"x"}},` +
				`"memory":"1GB","runtime":"PT1H","output_dir":"b/out","input_files":["b/in/a",{"file":"b/in/b","data_id":"007"}]}`},
		{"yaml file as is", []string{yml},
			`{"cluster":"kbase","image":"img:1","params":{"declobber":false,"args":["old"],"environment":{"Z":"1","A":{"type":"container_number","container_num_prefix":"c"}}},` +
				`"memory":"1GB","output_dir":"b/out","input_files":["b/in/a",{"file":"b/in/b","data_id":"007"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, map[string]string{"CTS_CLUSTER": "local"}, append([]string{"submit", "--dry-run"}, tc.args...)...)
			r.want(t, exitOK)
			var v any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
				t.Fatal(err)
			}
			compact, _ := json.Marshal(v)
			var w any
			_ = json.Unmarshal([]byte(tc.want), &w)
			wantCompact, _ := json.Marshal(w)
			if string(compact) != string(wantCompact) {
				t.Errorf("dry run:\n%s\nwant\n%s", compact, wantCompact)
			}
			// Key order matters for the environment: check it in the printed text.
			if strings.Contains(tc.want, `"Z":"1","A"`) && !strings.Contains(r.stdout, "\"Z\": \"1\",\n      \"A\"") {
				t.Errorf("environment order lost:\n%s", r.stdout)
			}
		})
	}
}

// fakeService scripts /jobs/{id}/status: job "err" walks to error, "canceled" to canceled,
// "slow" never ends; GET /jobs/{id} gives the error message.
func fakeService(t *testing.T) string {
	t.Helper()
	var mu sync.Mutex
	polls := map[string]int{}
	paths := map[string][]string{
		"err":      {"created", "download_submitted", "job_submitted", "error_processing_submitting", "error_processing_submitted", "error"},
		"canceled": {"created", "canceling", "canceled"},
		"slow":     {"created", "job_submitted"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) < 2 || parts[0] != "jobs" || paths[parts[1]] == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = fmt.Fprint(w, `{"error":{"httpcode":404,"httpstatus":"Not Found","appcode":40000,"apperror":"Not Found","message":"Not Found"}}`)
			return
		}
		id := parts[1]
		states := paths[id]
		if len(parts) == 3 && parts[2] == "status" {
			polls[id]++
		}
		n := min(polls[id], len(states))
		var ts []map[string]any
		for i, s := range states[:n] {
			ts = append(ts, map[string]any{"state": s, "time": time.Unix(int64(1700000000+i), 0).UTC()})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "user": "u", "state": states[n-1], "transition_times": ts,
			"error": "container 1 exited with code 3"})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestWaitExitCodes(t *testing.T) {
	t.Parallel()
	url := fakeService(t)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"error", []string{"wait", "err"}, exitJobError,
			"2023-11-14T22:13:20Z  created\n2023-11-14T22:13:21Z  download_submitted\n2023-11-14T22:13:22Z  job_submitted\n" +
				"2023-11-14T22:13:23Z  error_processing_submitting\n2023-11-14T22:13:24Z  error_processing_submitted\n2023-11-14T22:13:25Z  error\n",
			"cts wait: job err ended in error: container 1 exited with code 3\n"},
		{"canceled, json", []string{"wait", "--json", "canceled"}, exitCanceled,
			`{"job_id":"canceled","state":"created","time":"2023-11-14T22:13:20Z"}` + "\n" +
				`{"job_id":"canceled","state":"canceling","time":"2023-11-14T22:13:21Z"}` + "\n" +
				`{"job_id":"canceled","state":"canceled","time":"2023-11-14T22:13:22Z"}` + "\n",
			"cts wait: job canceled was canceled\n"},
		{"timeout", []string{"wait", "slow", "--timeout", "300ms"}, exitTimeout,
			"2023-11-14T22:13:20Z  created\n2023-11-14T22:13:21Z  job_submitted\n",
			"cts wait: timed out after 300ms: job slow is still job_submitted\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, map[string]string{"CTS_URL": url, "CTS_TOKEN": "T"}, tc.args...)
			r.want(t, tc.code)
			if r.stdout != tc.stdout || r.stderr != tc.stderr {
				t.Errorf("stdout:\n%s\nwant\n%s\nstderr %q, want %q", r.stdout, tc.stdout, r.stderr, tc.stderr)
			}
		})
	}
}

func TestLiveView(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	v := &liveView{w: &b, id: "j1", start: time.Now()}
	code := 0
	st := &client.JobStatus{State: "job_submitted", Transitions: []client.Transition{
		{State: "created", Time: client.Timestamp{Time: time.Unix(1700000000, 0)}}, {State: "job_submitted", Time: client.Timestamp{Time: time.Unix(1700000001, 0)}}}}
	subs := []client.SubJob{{SubID: 0, State: "complete", ExitCode: &code}, {SubID: 1, State: "job_submitted"}}
	v.draw(st, subs)
	first := "job j1  running (job_submitted)  (0s)\n  created                      2023-11-14T22:13:20Z\n" +
		"  job_submitted                2023-11-14T22:13:21Z\n  containers:\n    0    complete                     exit 0\n    1    running\n"
	if b.String() != first {
		t.Fatalf("first frame:\n%q\nwant\n%q", b.String(), first)
	}
	b.Reset()
	v.draw(st, nil)
	if !strings.HasPrefix(b.String(), "\x1b[6A\r\x1b[J") || v.lines != 3 {
		t.Errorf("second frame does not redraw the 6 lines in place: %q (%d lines)", b.String(), v.lines)
	}
	many := make([]client.SubJob, 20)
	for i := range many {
		many[i] = client.SubJob{SubID: i, State: "job_submitted"}
	}
	many[3].State = "complete"
	lines := v.render(st, many)
	if last := lines[len(lines)-1]; last != "  20 containers: 1 complete, 19 job_submitted" {
		t.Errorf("summary line %q", last)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	for _, sh := range []string{"bash", "zsh"} {
		t.Run(sh, func(t *testing.T) {
			r := runCLI(t, map[string]string{}, "completion", sh)
			r.want(t, exitOK)
			for _, w := range []string{"submit", "register", "exit-codes", "--arg-files", "--no-containers", "--info-url", "complete -o filenames -F _cts cts"} {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("%s completion lacks %q", sh, w)
				}
			}
			if sh != "bash" {
				return
			}
			if _, err := exec.LookPath("bash"); err != nil {
				t.Skip("no bash to check the script with")
			}
			script := filepath.Join(t.TempDir(), "cts.bash")
			if err := os.WriteFile(script, []byte(r.stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("bash", "-c", `source "$1"
COMP_WORDS=(cts images ""); COMP_CWORD=2; _cts; echo "${COMPREPLY[*]}"
COMP_WORDS=(cts admin jobs --us); COMP_CWORD=3; _cts; echo "${COMPREPLY[*]}"
COMP_WORDS=(cts logs J --st); COMP_CWORD=3; _cts; echo "${COMPREPLY[*]}"`, "bash", script).CombinedOutput()
			if err != nil || string(out) != "list get register delete\n--user\n--stderr\n" {
				t.Errorf("completions %q (%v)", out, err)
			}
		})
	}
}
