package openapi

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// A slice of the CTS API, with the shapes the api package will use.
type (
	jobInput struct {
		Cluster    string   `json:"cluster" enum:"kbase,perlmutter-jaws"`
		Image      string   `json:"image"`
		Args       []Union  `json:"args,omitempty"`
		InputFiles []string `json:"input_files"`
	}
	submitJobResponse struct {
		JobID string `json:"job_id"`
	}
	transition struct {
		State string    `json:"state"`
		Time  time.Time `json:"time"`
	}
	jobStatus struct {
		ID          string         `json:"id"`
		User        string         `json:"user"`
		State       string         `json:"state"`
		Transitions []transition   `json:"transition_times"`
		AdminMeta   map[string]any `json:"admin_meta"`
	}
	job struct {
		jobStatus
		JobInput jobInput `json:"job_input"`
		Error    string   `json:"error,omitempty"`
	}
)

func ptr[T any](v T) *T { return &v }

var jobIDParam = Param{Name: "job_id", In: "path", Description: "The job ID.", Pattern: `^[\w-]+$`,
	MinLength: ptr(1), MaxLength: ptr(50)}

func ctsRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/", Summary: "Service information", Tags: []string{"General"}, Auth: AuthNone,
			Response: map[string]any{}},
		{Method: "POST", Path: "/jobs", Summary: "Submit a job", Tags: []string{"Jobs"}, Auth: AuthUser,
			Description: "Submits a job.\n\n* the image must be registered\n* inputs need CRCs",
			Request:     jobInput{}, Response: submitJobResponse{}, Errors: []int{400, 401, 403, 404}},
		{Method: "GET", Path: "/jobs", Summary: "List jobs", Tags: []string{"Jobs"}, Auth: AuthUser,
			Params: []Param{
				{Name: "state", In: "query", Enum: []string{"created", "complete"}},
				{Name: "after", In: "query", Schema: time.Time{}},
				{Name: "limit", In: "query", Schema: 0, Minimum: ptr(1.0), Maximum: ptr(1000.0), Default: 1000},
			},
			Response: struct {
				Jobs []job `json:"jobs"`
			}{}, Errors: []int{400, 401}},
		{Method: "GET", Path: "/jobs/{job_id}", Summary: "Get a job", Tags: []string{"Jobs"}, Auth: AuthOwner,
			Params: []Param{jobIDParam}, Response: job{}, Errors: []int{400, 401, 403, 404},
			ErrorDescriptions: map[int]string{404: "No such job (appcode 40040)."}},
		{Method: "GET", Path: "/jobs/{job_id}/log/{container_num}/stdout", Summary: "A container's stdout",
			Tags: []string{"Jobs"}, Auth: AuthOwner,
			Params: []Param{jobIDParam, {Name: "container_num", In: "path", Schema: 0, Minimum: ptr(0.0)},
				{Name: "seek", In: "query", Schema: int64(0), Minimum: ptr(0.0)}},
			Response: RawResponse{ContentType: "text/plain; charset=utf-8",
				Headers: map[string]string{"Content-Disposition": "attachment; filename=container-N-stdout.txt"}},
			Errors: []int{400, 401, 403, 404}},
		{Method: "PUT", Path: "/jobs/{job_id}/cancel", Summary: "Cancel a job", Tags: []string{"Jobs"},
			Auth: AuthOwner, Params: []Param{jobIDParam}, Errors: []int{401, 403, 404}},
		{Method: "GET", Path: "/images/{image_id...}", Summary: "Get an image", Tags: []string{"Images"},
			Auth: AuthNone, Params: []Param{{Name: "image_id", In: "path", MaxLength: ptr(1000)}},
			Response: map[string]string{}, Errors: []int{404}},
		{Method: "GET", Path: "/admin/jobs/{job_id}", Summary: "Job details", Tags: []string{"Admin"},
			Auth: AuthAdmin + "|" + AuthExecutor, Params: []Param{jobIDParam}, Response: job{}, Errors: []int{401, 403, 404}},
		{Method: "PUT", Path: "/external_exec/refdata/{refdata_id}/update", Summary: "Update refdata",
			Tags: []string{"Executor"}, Auth: AuthRefdataService,
			Params: []Param{{Name: "refdata_id", In: "path"}},
			Request: struct {
				AdminError *string `json:"admin_error"`
			}{}, RequestOptional: true, Errors: []int{400}, Deprecated: true},
	}
}

func TestBuildCTSDocument(t *testing.T) {
	d, err := Build(Info{Title: "CDM Task Service", Version: "0.1.0", Description: "Runs containers.", ServerURL: "/"},
		ctsRoutes(), WithSchema(Union{}, Schema{"oneOf": []any{Schema{"type": "string"}, SchemaOf(Inner{})}}))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	b, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	checkDocument(t, b)
	golden(t, "cts_document.json", b)

	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string         `json:"operationId"`
			Description string         `json:"description"`
			Security    []any          `json:"security"`
			Responses   map[string]any `json:"responses"`
			RequestBody *struct {
				Required bool `json:"required"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, method string
		check              func(t *testing.T, opID, desc string, secured bool, codes []string, bodyRequired *bool)
	}{
		{"open route has no security", "/", "get", func(t *testing.T, opID, desc string, secured bool, codes []string, _ *bool) {
			if secured || opID != "get_root" || !strings.Contains(desc, "**Authentication:** none") {
				t.Errorf("opID %q secured %v desc %q", opID, secured, desc)
			}
		}},
		{"cancel is 204", "/jobs/{job_id}/cancel", "put", func(t *testing.T, _, _ string, secured bool, codes []string, _ *bool) {
			if !secured || strings.Join(codes, ",") != "204,401,403,404" {
				t.Errorf("secured %v codes %v", secured, codes)
			}
		}},
		{"wildcard path normalised", "/images/{image_id}", "get", func(t *testing.T, opID, _ string, _ bool, _ []string, _ *bool) {
			if opID != "get_images_image_id" {
				t.Errorf("opID %q", opID)
			}
		}},
		{"alternative auth", "/admin/jobs/{job_id}", "get", func(t *testing.T, _, desc string, secured bool, _ []string, _ *bool) {
			if !secured || !strings.Contains(desc, "administrator, or a KBase token with the external executor role") {
				t.Errorf("desc %q", desc)
			}
		}},
		{"optional body", "/external_exec/refdata/{refdata_id}/update", "put", func(t *testing.T, _, _ string, _ bool, _ []string, req *bool) {
			if req == nil || *req {
				t.Errorf("body required %v", req)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, ok := doc.Paths[tt.path][tt.method]
			if !ok {
				t.Fatalf("no %s %s", tt.method, tt.path)
			}
			var codes []string
			for c := range op.Responses {
				codes = append(codes, c)
			}
			slices.Sort(codes)
			var req *bool
			if op.RequestBody != nil {
				req = &op.RequestBody.Required
			}
			tt.check(t, op.OperationID, op.Description, len(op.Security) > 0, codes, req)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	ok := Route{Method: "GET", Path: "/a", Auth: AuthNone}
	with := func(f func(r *Route)) []Route {
		r := ok
		f(&r)
		return []Route{r}
	}
	tests := []struct {
		name   string
		info   Info
		routes []Route
		is     error
		want   string
	}{
		{"no title", Info{Version: "1"}, []Route{ok}, ErrInvalidInfo, "title"},
		{"duplicate route", Info{}, []Route{ok, ok}, ErrDuplicateRoute, "same method and path"},
		{"same template other names", Info{}, []Route{
			{Method: "GET", Path: "/j/{x}", Auth: AuthNone, Params: []Param{{Name: "x", In: "path"}}},
			{Method: "get", Path: "/j/{y}", Auth: AuthNone, Params: []Param{{Name: "y", In: "path"}}},
		}, ErrDuplicateRoute, "same method and path"},
		{"duplicate operationId", Info{}, []Route{
			{Method: "GET", Path: "/a", Auth: AuthNone, OperationID: "x"},
			{Method: "GET", Path: "/b", Auth: AuthNone, OperationID: "x"},
		}, ErrDuplicateRoute, "operationId"},
		{"undeclared path param", Info{}, with(func(r *Route) { r.Path = "/a/{id}" }), ErrPathParam, "{id} is not declared"},
		{"param not in path", Info{}, with(func(r *Route) { r.Params = []Param{{Name: "id", In: "path"}} }), ErrPathParam, "not in the path template"},
		{"param twice", Info{}, with(func(r *Route) {
			r.Params = []Param{{Name: "q", In: "query"}, {Name: "q", In: "query"}}
		}), ErrPathParam, "declared twice"},
		{"variable twice", Info{}, with(func(r *Route) { r.Path = "/a/{x}/{x}" }), ErrPathParam, "appears twice"},
		{"bad In", Info{}, with(func(r *Route) { r.Params = []Param{{Name: "q", In: "body"}} }), ErrInvalidRoute, "In must be"},
		{"unnamed param", Info{}, with(func(r *Route) { r.Params = []Param{{In: "query"}} }), ErrInvalidRoute, "without a name"},
		{"bad method", Info{}, with(func(r *Route) { r.Method = "FETCH" }), ErrInvalidRoute, "unknown method"},
		{"relative path", Info{}, with(func(r *Route) { r.Path = "a" }), ErrInvalidRoute, "start with /"},
		{"unbalanced", Info{}, with(func(r *Route) { r.Path = "/a/{x" }), ErrInvalidRoute, "unbalanced"},
		{"bad variable", Info{}, with(func(r *Route) { r.Path = "/a/{x y}" }), ErrInvalidRoute, "bad path variable"},
		{"no auth", Info{}, with(func(r *Route) { r.Auth = "" }), ErrInvalidRoute, "Auth is required"},
		{"unknown auth", Info{}, with(func(r *Route) { r.Auth = "admin|root" }), ErrInvalidRoute, `unknown auth level "root"`},
		{"204 with body", Info{}, with(func(r *Route) { r.Response = Inner{}; r.Status = 204 }), ErrInvalidRoute, "204"},
		{"non-2xx success", Info{}, with(func(r *Route) { r.Status = 302 }), ErrInvalidRoute, "not 2xx"},
		{"bad error status", Info{}, with(func(r *Route) { r.Errors = []int{200} }), ErrInvalidRoute, "not 4xx or 5xx"},
		{"error status twice", Info{}, with(func(r *Route) { r.Errors = []int{404, 404} }), ErrInvalidRoute, "twice"},
		{"stray error description", Info{}, with(func(r *Route) {
			r.ErrorDescriptions = map[int]string{404: "x"}
		}), ErrInvalidRoute, "not in Errors"},
		{"raw without type", Info{}, with(func(r *Route) { r.Response = RawResponse{} }), ErrInvalidRoute, "ContentType"},
		{"raw request", Info{}, with(func(r *Route) { r.Request = RawResponse{ContentType: "text/plain"} }), ErrInvalidRoute, "not a request body"},
		{"constraint on ref param", Info{}, with(func(r *Route) {
			r.Params = []Param{{Name: "q", In: "query", Schema: Inner{}, Pattern: "x"}}
		}), ErrSchema, "$ref"},
		{"bad param pattern", Info{}, with(func(r *Route) {
			r.Params = []Param{{Name: "q", In: "query", Pattern: "("}}
		}), ErrSchema, "pattern"},
		{"bad param enum", Info{}, with(func(r *Route) {
			r.Params = []Param{{Name: "q", In: "query", Schema: 0, Enum: []string{"x"}}}
		}), ErrSchema, "enum"},
		{"bad request type", Info{}, with(func(r *Route) { r.Request = make(chan int) }), ErrSchema, "request body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := tt.info
			if info.Title == "" && info.Version == "" {
				info = Info{Title: "t", Version: "1"}
			}
			d, err := Build(info, tt.routes)
			if err == nil {
				t.Fatalf("Build succeeded: %s", mustJSON(d))
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestBuildJoinsErrors checks that every bad route is reported, not only the first.
func TestBuildJoinsErrors(t *testing.T) {
	_, err := Build(Info{}, []Route{{Method: "GET", Path: "/a/{x}", Auth: AuthNone}, {Method: "GET", Path: "/b"}})
	for _, want := range []string{"title", "{x} is not declared", "route GET /b", "Auth is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestBuildDefaults(t *testing.T) {
	d, err := Build(Info{Title: "t", Version: "1"}, []Route{
		{Method: "GET", Path: "/a", Auth: AuthNone, Params: []Param{{Name: "q", In: "query"}}, Response: Inner{}},
		{Method: "DELETE", Path: "/a", Auth: AuthAdmin},
		{Method: "POST", Path: "/a", Auth: AuthUser, Response: Inner{}, Status: 201, ResponseDescription: "Created it."},
	})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Required bool           `json:"required"`
				Schema   map[string]any `json:"schema"`
			} `json:"parameters"`
			Responses map[string]struct {
				Description string `json:"description"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(mustJSON(d), &doc); err != nil {
		t.Fatal(err)
	}
	a := doc.Paths["/a"]
	tests := []struct {
		name      string
		got, want any
	}{
		{"GET is 200", a["get"].Responses["200"].Description, "OK"},
		{"nil Response is 204", a["delete"].Responses["204"].Description, "No Content"},
		{"explicit status", a["post"].Responses["201"].Description, "Created it."},
		{"query param optional", a["get"].Parameters[0].Required, false},
		{"nil param schema is string", a["get"].Parameters[0].Schema["type"], "string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func mustJSON(d *Document) []byte {
	b, err := d.JSON()
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkBuild measures a whole document build (done once at start-up).
func BenchmarkBuild(b *testing.B) {
	opt := WithSchema(Union{}, Schema{"oneOf": []any{Schema{"type": "string"}, SchemaOf(Inner{})}})
	routes := ctsRoutes()
	for b.Loop() {
		if _, err := Build(Info{Title: "t", Version: "1"}, routes, opt); err != nil {
			b.Fatal(err)
		}
	}
}
