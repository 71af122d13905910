package local

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbase/cts/plugins/local/supervisor"
	"github.com/kbase/cts/shared/launcher"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")

	cases := []struct {
		name string
		json string
		// wantErrs are substrings that must all appear in the error; nil means valid.
		wantErrs []string
		check    func(t *testing.T, c Config)
	}{
		{
			name: "minimal gets the default grace",
			json: `{"agent_path": "` + agent + `", "work_dir": "` + work + `"}`,
			check: func(t *testing.T, c Config) {
				if c.KillGraceSeconds != DefaultKillGraceSeconds {
					t.Errorf("grace %v, want %v", c.KillGraceSeconds, DefaultKillGraceSeconds)
				}
			},
		},
		{
			name: "full",
			json: `{"agent_path": "` + agent + `", "agent_args": ["-v"], "work_dir": "` + dir + `",
				"env": {"TOKEN_PATH": "/t", "S3_SECRET_PATH": "/s"}, "kill_grace_seconds": 0.5}`,
			check: func(t *testing.T, c Config) {
				if c.KillGraceSeconds != 0.5 || c.killGrace().Milliseconds() != 500 {
					t.Errorf("grace %v", c.KillGraceSeconds)
				}
				if len(c.AgentArgs) != 1 || c.Env["TOKEN_PATH"] != "/t" {
					t.Errorf("parsed %+v", c)
				}
			},
		},
		{name: "zero grace is allowed", json: `{"agent_path": "` + agent + `", "work_dir": "` + work + `", "kill_grace_seconds": 0}`},
		{name: "not json", json: `{`, wantErrs: []string{"decode"}},
		{name: "empty", json: ``, wantErrs: []string{"decode"}},
		{name: "null", json: `null`, wantErrs: []string{"agent_path is required", "work_dir is required"}},
		{name: "unknown field", json: `{"agent_path": "` + agent + `", "work_dir": "` + work + `", "workdir": "/x"}`, wantErrs: []string{`unknown field "workdir"`}},
		{name: "trailing data", json: `{"agent_path": "` + agent + `", "work_dir": "` + work + `"} {}`, wantErrs: []string{"trailing data"}},
		{
			name:     "every problem at once",
			json:     `{"agent_path": "agent", "work_dir": "work", "env": {"CONTAINER_NUMBER": "1", "A=B": "x"}, "kill_grace_seconds": -1}`,
			wantErrs: []string{`agent_path "agent" is not absolute`, `work_dir "work" is not absolute`, "CONTAINER_NUMBER is set by the launcher", `bad variable name "A=B"`, "kill_grace_seconds -1"},
		},
		{name: "agent missing", json: `{"agent_path": "` + filepath.Join(dir, "nope") + `", "work_dir": "` + work + `"}`, wantErrs: []string{"no such file"}},
		{name: "agent not executable", json: `{"agent_path": "` + plain + `", "work_dir": "` + work + `"}`, wantErrs: []string{"is not executable"}},
		{name: "agent is a directory", json: `{"agent_path": "` + dir + `", "work_dir": "` + work + `"}`, wantErrs: []string{"is not a regular file"}},
		{name: "work_dir is a file", json: `{"agent_path": "` + agent + `", "work_dir": "` + plain + `"}`, wantErrs: []string{"is not a directory"}},
		{name: "reserved workdir variable", json: `{"agent_path": "` + agent + `", "work_dir": "` + work + `", "env": {"CTS_AGENT_WORKDIR": "/x"}}`, wantErrs: []string{"CTS_AGENT_WORKDIR is set by the launcher"}},
		{name: "grace too long", json: `{"agent_path": "` + agent + `", "work_dir": "` + work + `", "kill_grace_seconds": 86400}`, wantErrs: []string{"kill_grace_seconds 86400"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(tc.json))
			if tc.wantErrs == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tc.check != nil {
					tc.check(t, cfg)
				}
				return
			}
			if !errors.Is(err, launcher.ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"agent_path": "/bin/sh", "work_dir": "/tmp/x", "env": {"A": "b"}, "kill_grace_seconds": 3}`,
		`{"agent_path": "/bin/sh", "work_dir": "/tmp/x", "agent_args": ["a", "b\u0000"]}`,
		`{"env": {"": ""}}`, `{"kill_grace_seconds": 1e309}`, `[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, launcher.ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if !filepath.IsAbs(cfg.AgentPath) || !filepath.IsAbs(cfg.WorkDir) {
			t.Fatalf("accepted relative paths: %+v", cfg)
		}
		if cfg.KillGraceSeconds < 0 || cfg.KillGraceSeconds > maxKillGraceSeconds {
			t.Fatalf("accepted grace %v", cfg.KillGraceSeconds)
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatalf("accepted config does not encode: %v", err)
		}
	})
}

func TestParseRef(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ref     launcher.JobRef
		attempt int
		ok      bool
	}{
		{launcher.JobRef{JobID: "j1", Handle: "local:j1:0"}, 0, true},
		{launcher.JobRef{JobID: "j-1.x_y", Handle: "local:j-1.x_y:12"}, 12, true},
		{launcher.JobRef{JobID: "j1", Handle: Handle("j1", 7)}, 7, true},
		{launcher.JobRef{JobID: "j1", Handle: "local:j2:0"}, 0, false},
		{launcher.JobRef{JobID: "j1", Handle: "htcondor:j1:0"}, 0, false},
		{launcher.JobRef{JobID: "j1", Handle: "local:j1"}, 0, false},
		{launcher.JobRef{JobID: "j1", Handle: "local:j1:-1"}, 0, false},
		{launcher.JobRef{JobID: "j1", Handle: "local:j1:01"}, 0, false},
		{launcher.JobRef{JobID: "j1", Handle: "local:j1:x"}, 0, false},
		{launcher.JobRef{JobID: "..", Handle: "local:..:0"}, 0, false},
		{launcher.JobRef{JobID: "a/b", Handle: "local:a/b:0"}, 0, false},
		{launcher.JobRef{JobID: "", Handle: ""}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.ref.Handle, func(t *testing.T) {
			t.Parallel()
			attempt, err := parseRef(tc.ref)
			if tc.ok != (err == nil) {
				t.Fatalf("parseRef(%+v) = %d, %v; want ok=%v", tc.ref, attempt, err, tc.ok)
			}
			if err != nil && !errors.Is(err, launcher.ErrInvalidRequest) {
				t.Errorf("error %v does not wrap ErrInvalidRequest", err)
			}
			if tc.ok && attempt != tc.attempt {
				t.Errorf("attempt %d, want %d", attempt, tc.attempt)
			}
		})
	}
}

func FuzzParseRef(f *testing.F) {
	f.Add("j1", "local:j1:0")
	f.Add("a", "local:a:99999999999999999999")
	f.Add("..", "local:..:0")
	f.Fuzz(func(t *testing.T, jobID, handle string) {
		attempt, err := parseRef(launcher.JobRef{JobID: jobID, Handle: handle})
		if err != nil {
			return
		}
		// Whatever is accepted names a directory strictly inside work_dir.
		jd := supervisor.JobDir("/w", jobID, attempt)
		if rel, rerr := filepath.Rel("/w", jd); rerr != nil || strings.HasPrefix(rel, "..") || filepath.Dir(filepath.Dir(jd)) != "/w" {
			t.Fatalf("ref (%q, %q) escapes work_dir: %s", jobID, handle, jd)
		}
		if Handle(jobID, attempt) != handle {
			t.Fatalf("handle %q does not round-trip (%q)", handle, Handle(jobID, attempt))
		}
	})
}

func TestAttemptName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		job        string
		attempt, n int
		want       string
	}{
		{"abcdefghijkl", 0, 3, "local-abcdefgh-0-3"},
		{"short", 2, 0, "local-short-2-0"},
	} {
		if got := AttemptName(tc.job, tc.attempt, tc.n); got != tc.want {
			t.Errorf("AttemptName(%q, %d, %d) = %q, want %q", tc.job, tc.attempt, tc.n, got, tc.want)
		}
	}
}
