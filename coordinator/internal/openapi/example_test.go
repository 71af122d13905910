package openapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/kbase/cts/coordinator/internal/openapi"
)

// Arg stands for a type whose package you do not own and that marshals as a string or an
// object (like shared/args.Arg): its schema is declared with WithSchema.
type Arg struct {
	Literal string
	Param   *ArgParam
}

func (a Arg) MarshalJSON() ([]byte, error) {
	if a.Param != nil {
		return json.Marshal(a.Param)
	}
	return json.Marshal(a.Literal)
}

type ArgParam struct {
	Type string `json:"type" enum:"input_files,manifest_file,container_number"`
	Flag string `json:"flag,omitempty"`
}

// Runtime is a type you own that marshals as an ISO 8601 duration: it declares its schema.
type Runtime float64

func (Runtime) JSONSchema() map[string]any {
	return openapi.Schema{"type": "string", "description": "An ISO 8601 duration.", "example": "PT1H"}
}

type JobView struct {
	ID      string    `json:"id" doc:"The job ID." example:"c3a4b5"`
	Args    []Arg     `json:"args,omitempty"`
	Runtime Runtime   `json:"runtime"`
	Updated time.Time `json:"updated"`
	Error   *string   `json:"error,omitempty" doc:"Why the job failed."`
}

func Example() {
	jobID := openapi.Param{Name: "job_id", In: "path", Pattern: `^[\w-]+$`, Description: "The job ID."}
	routes := []openapi.Route{
		{
			Method: "GET", Path: "/jobs/{job_id}", Summary: "Get a job", Tags: []string{"Jobs"},
			Auth: openapi.AuthOwner, Params: []openapi.Param{jobID},
			Response: JobView{}, Errors: []int{400, 401, 403, 404},
		},
		{
			Method: "PUT", Path: "/jobs/{job_id}/cancel", Summary: "Cancel a job", Tags: []string{"Jobs"},
			Auth: openapi.AuthOwner, Params: []openapi.Param{jobID}, // nil Response: 204
			Errors: []int{401, 403, 404},
		},
		{
			Method: "GET", Path: "/jobs/{job_id}/log/{container_num}/stdout", Summary: "stdout",
			Auth: openapi.AuthOwner, Tags: []string{"Jobs"},
			Params:   []openapi.Param{jobID, {Name: "container_num", In: "path", Schema: 0}},
			Response: openapi.RawResponse{ContentType: "text/plain; charset=utf-8"},
			Errors:   []int{404},
		},
	}
	doc, err := openapi.Build(openapi.Info{Title: "CDM Task Service", Version: "0.1.0"}, routes,
		openapi.WithSchema(Arg{}, openapi.Schema{"oneOf": []any{
			openapi.Schema{"type": "string"}, openapi.SchemaOf(ArgParam{}),
		}}))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.json", openapi.Handler(doc))
	mux.Handle("GET /docs", openapi.DocsPage("CDM Task Service", "openapi.json"))

	b, _ := doc.JSON()
	var d struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	_ = json.Unmarshal(b, &d)
	fmt.Println(d.Components.Schemas["JobView"].Required)
	var runtime bytes.Buffer
	_ = json.Compact(&runtime, d.Components.Schemas["JobView"].Properties["runtime"])
	fmt.Println(runtime.String())

	// Output:
	// [id runtime updated]
	// {"type":"string","description":"An ISO 8601 duration.","example":"PT1H"}
}
