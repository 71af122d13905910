package main

import (
	"os"
	"strings"
	"testing"
)

// clearEnv unsets the agent's environment for the test (t.Setenv restores it).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"JOB_ID", "CONTAINER_NUMBER", "SERVICE_ROOT_URL", "TOKEN_PATH", "S3_URL",
		"S3_ACCESS_KEY", "S3_SECRET_PATH", "CTS_AGENT_NETWORK", "MOUNT_PREFIX_OVERRIDE", "CTS_AGENT_ATTEMPT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestRunBadEnvironment(t *testing.T) {
	clearEnv(t)
	cases := []struct {
		name    string
		argv    []string
		want    []string
		notWant []string
	}{
		{"nothing set", []string{"run"}, []string{"configuration:", "CONTAINER_NUMBER", "JOB_ID is required",
			"SERVICE_ROOT_URL is required", "TOKEN_PATH is required", "S3_URL is required", "S3_ACCESS_KEY is required",
			"S3_SECRET_PATH is required"}, nil},
		{"flags stand in for JOB_ID and CONTAINER_NUMBER", []string{"run", "--job", "j1", "--container", "4"},
			[]string{"SERVICE_ROOT_URL is required"}, []string{"JOB_ID", "CONTAINER_NUMBER"}},
		{"without the run word", []string{"--job", "j1"}, []string{"CONTAINER_NUMBER"}, []string{"JOB_ID"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, err := run(tc.argv)
			if code != 2 || err == nil {
				t.Fatalf("run = %d, %v; want 2 and an error", code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

func TestRunFlags(t *testing.T) {
	clearEnv(t)
	// Silence the flag package's usage output and the version line.
	for _, f := range []**os.File{&os.Stdout, &os.Stderr} {
		old := *f
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		*f = null
		t.Cleanup(func() { *f = old; null.Close() })
	}
	cases := []struct {
		argv []string
		code int
	}{
		{[]string{"--version"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"run", "--no-such-flag"}, 2},
		{[]string{"--container", "x"}, 2},
	}
	for _, tc := range cases {
		code, err := run(tc.argv)
		if code != tc.code || (code == 0) != (err == nil) {
			t.Errorf("run(%q) = %d, %v; want %d", tc.argv, code, err, tc.code)
		}
	}
}
