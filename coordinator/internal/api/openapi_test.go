package api_test

import (
	"encoding/json"
	"strings"
	"testing"
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
