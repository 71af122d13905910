package api

import (
	"cmp"
	"net/http"
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

// Document builds the OpenAPI document of the server's routes.
func (s *Server) Document() (*openapi.Document, error) {
	var routes []openapi.Route
	for _, rt := range s.table {
		routes = append(routes, openapiRoute(rt))
	}
	return openapi.Build(openapi.Info{
		Title: ServiceName, Version: cmp.Or(s.cfg.Version, "dev"), Description: apiDescription,
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
	errs := map[int]bool{401: true, 500: true}
	if rt.Request != nil || len(rt.Params) > 0 || rt.Tag == "Not supported" {
		errs[400] = true
	}
	if rt.Auth != authNone && rt.Auth != authUser {
		errs[403] = true
	}
	if rt.Tag == "Files" {
		errs[404] = true
	}
	for _, p := range rt.Params {
		if p.In == "path" && (p.Name == "job_id" || p.Name == "image_id") {
			errs[404] = true
		}
		o.Params = append(o.Params, openapiParam(p))
	}
	for _, c := range []int{400, 401, 403, 404, 500} {
		if errs[c] {
			o.Errors = append(o.Errors, c)
		}
	}
	return o
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
