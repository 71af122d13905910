package api_test

import (
	"context"
	"encoding/json"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenAPI checks the document built from the route table: every route is in it with its
// auth level, the models come from the handlers' types, and the docs page is served.
func TestOpenAPI(t *testing.T) {
	f := newFixture(t)
	code, h, b := f.do(t, "GET", "/openapi.json", "", "")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("openapi.json = %d %s", code, b)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
		Comps   struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"get /", "get /whoami", "get /sites", "get /jobs", "post /jobs", "get /jobs/{job_id}", "get /jobs/{job_id}/status",
		"get /jobs/{job_id}/exit_codes", "get /jobs/{job_id}/log/{container_num}/stdout", "get /jobs/{job_id}/log/{container_num}/stderr",
		"put /jobs/{job_id}/cancel", "get /images", "get /images/{image_id}", "post /admin/images/{image_id}", "delete /admin/images/{image_id}",
		"get /admin/jobs", "get /admin/jobs/{job_id}", "get /admin/jobs/{job_id}/exit_codes", "get /admin/jobs/{job_id}/container", "get /jobs/{job_id}/containers",
		"get /admin/jobs/{job_id}/container/{container_num}", "get /admin/jobs/{job_id}/runner_status", "put /admin/jobs/{job_id}/cancel",
		"put /admin/jobs/{job_id}/meta", "put /admin/jobs/{job_id}/notify", "delete /admin/jobs/{job_id}/clean",
		"put /admin/sites/{site}/active", "delete /admin/sites/{site}/active", "get /admin/clients/nersc", "post /admin/unsent_notifications",
		"get /callback/download/{job_id}", "put /external_exec/jobs/{job_id}/container/{container_num}/update/{new_state}",
		"get /jobs/{job_id}/log/{container_num}/stdout/live", "get /jobs/{job_id}/log/{container_num}/stderr/live",
		"get /external_exec/files/cts-agent",
	} {
		method, path, _ := strings.Cut(want, " ")
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("the document lacks %s", want)
		}
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	// The job model is the handler's type: optional fields are not required.
	js, _ := json.Marshal(doc.Comps.Schemas)
	for _, field := range []string{`"cpu_hours"`, `"admin_meta"`, `"transition_times"`, `"set_fields"`, `"request_validation_detail"`} {
		if !strings.Contains(string(js), field) {
			t.Errorf("no schema has %s", field)
		}
	}
	code, h, b = f.do(t, "GET", "/docs", "", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "openapi.json") {
		t.Fatalf("docs = %d %s", code, h)
	}
	if strings.Contains(string(b), "https://") {
		t.Error("the docs page loads something from the internet")
	}
}

// keptLintFindings are the linter's findings the document keeps on purpose ("rule pointer");
// docs/api.md lists them with the reason.
var keptLintFindings = map[string]bool{
	// The project publishes no license for the API.
	"info-license #/info": true,
	// POST /admin/refdata/{s3_path} and GET /admin/refdata/{refdata_id} differ only by their
	// parameter's name: the Python service's routes, kept for its clients.
	"no-identical-paths #/paths/~1admin~1refdata~1{refdata_id}": true,
	"no-ambiguous-paths #/paths/~1admin~1refdata~1{refdata_id}": true,
}

// TestOpenAPILint lints the served document with Redocly's recommended rules (the linter
// scripts/install-deps.sh installs, pinned): no finding but those kept on purpose.
func TestOpenAPILint(t *testing.T) {
	bin, err := osexec.LookPath("redocly")
	if err != nil {
		t.Fatal("redocly is not installed: run scripts/install-deps.sh")
	}
	f := newFixture(t)
	code, _, b := f.do(t, "GET", "/openapi.json", "", "")
	if code != 200 {
		t.Fatalf("openapi.json = %d", code)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "openapi.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := osexec.CommandContext(ctx, bin, "lint", "--format=json", "openapi.json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output() // it exits 1 when it finds errors
	var report struct {
		Totals   struct{ Errors, Warnings int }
		Problems []struct {
			RuleID   string `json:"ruleId"`
			Severity string `json:"severity"`
			Message  string `json:"message"`
			Location []struct {
				Pointer string `json:"pointer"`
			} `json:"location"`
		} `json:"problems"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("redocly lint: %v (%v)\nstdout: %s\nstderr: %s", err, runErr, out, stderr.String())
	}
	for _, p := range report.Problems {
		where := ""
		if len(p.Location) > 0 {
			where = p.Location[0].Pointer
		}
		if keptLintFindings[p.RuleID+" "+where] {
			continue
		}
		t.Errorf("%s %s at %s: %s", p.Severity, p.RuleID, where, p.Message)
	}
}
