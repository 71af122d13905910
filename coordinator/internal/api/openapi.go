package api

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/internal/openapi"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/args"
)

// The OpenAPI document (GET /openapi.json) and the docs page (GET /docs), built from the route
// table and the very types the handlers encode.

const apiDescription = "A service for running arbitrary binaries on remote compute for the KBase CDM. " +
	"This is the Go re-implementation of the CDM Task Service API: the same routes, models and error codes."

// tagDescriptions describe the route table's tags.
var tagDescriptions = map[string]string{
	"General":        "The service, the caller and the compute sites.",
	"Jobs":           "Submitting jobs and following them: states, logs, progress, exit codes, outputs.",
	"Images":         "The container images jobs may run.",
	"Reference data": "Data staged once at each site and mounted read-only into jobs' containers.",
	"Admin":          "Routes for service administrators.",
	"Agents":         "Routes the service's own workers call.",
	"Files":          "Files the service serves to the sites' launchers.",
	"Not supported":  "Routes of the Python service for job flows this service does not have; they answer 400 with app code 100000.",
}

// Document builds the OpenAPI document of the server's routes.
func (s *Server) Document() (*openapi.Document, error) {
	var routes []openapi.Route
	for _, rt := range s.table {
		routes = append(routes, openapiRoute(rt))
	}
	return openapi.Build(openapi.Info{
		Title: ServiceName, Version: cmp.Or(s.cfg.Version, "dev"), Description: apiDescription,
		// Relative to the document: right behind a proxy that serves the API under a prefix.
		ServerURL: ".", TagDescriptions: tagDescriptions,
	}, routes,
		openapi.WithSchema(args.Arg{}, openapi.Schema{
			"description": "A literal argument (a string) or a parameter the service expands (an object).",
			"oneOf":       []any{map[string]any{"type": "string"}, openapi.SchemaOf(args.Parameter{})},
		}),
		openapi.WithSchema(args.Environment{}, openapi.Schema{
			"type":                 "object",
			"description":          "Environment variables (keys ^[A-Z_][A-Z0-9_]*$): literal values or parameters without a flag.",
			"additionalProperties": map[string]any{"oneOf": []any{map[string]any{"type": "string"}, openapi.SchemaOf(args.Parameter{})}},
		}),
		openapi.WithSchema(wire.JobInput{}, jobInputSchema()),
	)
}

// jobInputSchema describes the body of POST /jobs, whose union fields (memory, runtime,
// input_files) reflection cannot see.
func jobInputSchema() openapi.Schema {
	s3file := map[string]any{
		"type": "object", "required": []string{"file"},
		"properties": map[string]any{
			"file":      map[string]any{"type": "string", "minLength": 5, "maxLength": 1088},
			"crc64nvme": map[string]any{"type": "string", "minLength": 12, "maxLength": 12},
			"data_id":   map[string]any{"type": "string", "minLength": 1, "maxLength": 255},
		},
		"additionalProperties": false,
	}
	return openapi.Schema{
		"type": "object", "required": []string{"cluster", "image", "params", "output_dir", "input_files"},
		"additionalProperties": false,
		"properties": map[string]any{
			"cluster": map[string]any{"type": "string", "description": "The site."},
			"image":   map[string]any{"type": "string", "minLength": 1, "maxLength": 1000, "description": "A registered image: name, name:tag or name@sha256:..."},
			"params":  openapi.SchemaOf(args.Parameters{}),
			"num_containers": map[string]any{"type": "integer", "minimum": 1, "maximum": 1000, "default": 1,
				"description": "At most the number of input files."},
			"cpus": map[string]any{"type": "integer", "minimum": 1, "maximum": 256, "default": 1},
			"memory": map[string]any{"oneOf": []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}, "default": "10MB",
				"description": "Bytes, or a size with units: 10MB, 10MiB, 1.5GB, 2G."},
			"runtime": map[string]any{"oneOf": []any{map[string]any{"type": "number"}, map[string]any{"type": "string"}}, "default": "PT60S",
				"description": "Seconds, or an ISO 8601 duration (PT30M), or HH:MM:SS."},
			"input_roots": map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "nullable": true},
			"output_dir":  map[string]any{"type": "string", "minLength": 5, "maxLength": 1088},
			"input_files": map[string]any{
				"description": "S3 paths (bucket/key), or all objects with an optional CRC64/NVME and data ID.",
				"oneOf": []any{
					map[string]any{"type": "array", "minItems": 1, "maxItems": 10000, "items": map[string]any{"type": "string"}},
					map[string]any{"type": "array", "minItems": 1, "maxItems": 10000, "items": s3file},
				},
			},
		},
	}
}

// openapiAuth maps a route's auth level to the openapi package's.
func openapiAuth(level string) string {
	switch level {
	case authAdminExecutor:
		return openapi.AuthAdmin + "|" + openapi.AuthExecutor
	case authOwnerAdmin:
		return openapi.AuthOwner + "|" + openapi.AuthAdmin
	case authStager:
		return openapi.AuthStager + "|" + openapi.AuthRefdataService
	default:
		return level // the other names are the same
	}
}

func openapiRoute(rt route) openapi.Route {
	o := openapi.Route{
		Method: rt.Method, Path: rt.Pattern, Summary: rt.Summary, Tags: []string{rt.Tag}, Auth: openapiAuth(rt.Auth),
		Request: rt.Request, Response: rt.Response, Status: rt.Status,
	}
	if rt.Request != nil && rt.Pattern != "/jobs" {
		o.RequestOptional = strings.HasPrefix(rt.Pattern, "/admin/images/")
	}
	switch {
	case rt.ContentType == eventStream:
		o.Response = openapi.RawResponse{ContentType: rt.ContentType}
	case rt.ContentType != "" && rt.Tag == "Files":
		o.Response = openapi.RawResponse{ContentType: rt.ContentType, Headers: map[string]string{
			"ETag": "the file's SHA-256: \"sha256:<hex>\"", "Content-Disposition": "attachment; filename=cts-agent"}}
	case rt.ContentType != "":
		o.Response = openapi.RawResponse{ContentType: rt.ContentType,
			Headers: map[string]string{"Content-Disposition": "attachment; filename=container-<n>-<stream>.txt"}}
	}
	if rt.Tag == "Not supported" {
		o.Response = nil
		o.Status = 0
		o.Deprecated = true
	}
	for _, p := range rt.Params {
		o.Params = append(o.Params, openapiParam(p))
	}
	o.Errors = routeErrors(rt)
	return o
}

// routeErrors are the error statuses route rt can answer: what the document lists, and what
// the server checks every error response against (checkDocumented), so that a handler that
// answers a status its document lacks is reported (and fails the tests, which drive every
// route through its failure modes). Most follow from the route's shape; rt.Errors adds what
// its business rules can refuse with.
func routeErrors(rt route) []int {
	errs := map[int]bool{
		http.StatusUnauthorized:        true, // a token sent to any route is validated
		http.StatusInternalServerError: true,
		// A dependency (auth2 validating a token, MongoDB, S3, Kafka) did not answer in time.
		http.StatusServiceUnavailable: true,
	}
	if rt.Request != nil || len(rt.Params) > 0 || rt.Tag == "Not supported" {
		errs[http.StatusBadRequest] = true
	}
	if rt.Request != nil {
		errs[http.StatusRequestEntityTooLarge] = true
	}
	if rt.Auth != authNone && rt.Auth != authUser {
		errs[http.StatusForbidden] = true
	}
	if rt.Tag == "Files" {
		errs[http.StatusNotFound] = true
	}
	// A path parameter naming a stored thing is looked up, except by the routes that create
	// it and by those this service does not support (they refuse before looking).
	for _, p := range rt.Params {
		if p.In == "path" && (p.Name == "job_id" || p.Name == "image_id" || p.Name == "refdata_id") &&
			rt.Method != http.MethodPost && rt.Tag != "Not supported" {
			errs[http.StatusNotFound] = true
		}
	}
	for _, c := range rt.Errors {
		errs[c] = true
	}
	out := make([]int, 0, len(errs))
	for c := range errs {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func openapiParam(p param) openapi.Param {
	o := openapi.Param{Name: p.Name, In: p.In, Required: p.Required || p.In == "path", Description: p.Description, Enum: p.Enum}
	switch p.Type {
	case "integer":
		o.Schema = 0
	case "boolean":
		o.Schema = false
	case "date-time":
		o.Schema = time.Time{}
	default:
		o.Schema = ""
	}
	if p.Name == "job_id" {
		o.Pattern = `^[\w-]+$`
		one, fifty := 1, 50
		o.MinLength, o.MaxLength = &one, &fifty
	}
	return o
}

// mountDocs serves the document and the docs page; a document that fails to build is a
// programming error, reported by every request for it (and by the tests).
func (s *Server) mountDocs() {
	doc, err := s.Document()
	if err != nil {
		s.log.Error("openapi document does not build", "error", err)
		s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) { s.fail(w, r, err) })
	} else {
		s.mux.Handle("GET /openapi.json", openapi.Handler(doc))
	}
	s.mux.Handle("GET /docs", openapi.DocsPage(ServiceName, "openapi.json"))
}
