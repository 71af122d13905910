package htcondor_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/kbase/cts/plugins/htcondor"
	"github.com/kbase/cts/shared/launcher"
)

var update = flag.Bool("update", false, "rewrite deploy/htcondor/example.sub from the plugin")

// TestExampleSubmitFile keeps deploy/htcondor/example.sub true: it is the description the
// plugin writes for a typical job (regenerate with go test ./plugins/htcondor -run Example -update).
func TestExampleSubmitFile(t *testing.T) {
	cfg := htcondor.Config{AgentPath: "/opt/cts/cts-agent", InitialDir: "/condor_workdir", ClientGroup: "kbase",
		KillGraceSeconds: htcondor.DefaultKillGraceSeconds, RuntimeMarginSeconds: htcondor.DefaultRuntimeMarginSeconds,
		Env: map[string]string{"TOKEN_PATH": "/cts/cts_token", "S3_SECRET_PATH": "/cts/s3_secret", "GLOBAL_CACHE_DIR": "/tmp"}}
	req := launcher.SubmitRequest{JobID: "2b8a3c0e-6f1d-4c1e-9d1a-0f3b5e7c9a11", Containers: 2, CPUs: 4,
		MemoryBytes: 10 << 30, RuntimeSeconds: 3600, DiskBytes: 21 << 30, User: "jdoe",
		BatchName: "cts-2b8a3c0e-6f1d-4c1e-9d1a-0f3b5e7c9a11",
		Env: map[string]string{"JOB_ID": "2b8a3c0e-6f1d-4c1e-9d1a-0f3b5e7c9a11", "SERVICE_ROOT_URL": "https://cts.example.org/services/cts",
			"S3_URL": "https://s3.example.org", "S3_ACCESS_KEY": "cts_service",
			"S3_ERROR_LOG_PATH": "cts-logs/container_logs/2b8a3c0e-6f1d-4c1e-9d1a-0f3b5e7c9a11"},
		// The agents' credentials never appear in the description: files carry them.
		Credentials: []string{"ctsagent1.zzvalue0.x", "ctsagent1.zzvalue1.x"}}
	desc, err := htcondor.Description(cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	const path = "../../deploy/htcondor/example.sub"
	if *update {
		if err := os.WriteFile(path, []byte(desc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	if strings.Contains(desc, "zzvalue") {
		t.Fatalf("a credential is in the submit description:\n%s", desc)
	}
	if string(got) != desc {
		t.Errorf("%s is stale; regenerate with: go test ./plugins/htcondor -run Example -update\nplugin writes:\n%s", path, desc)
	}
}
