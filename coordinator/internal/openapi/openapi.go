// Package openapi owns the coordinator's OpenAPI 3.0.3 document and its HTML docs page. It
// builds the document from a route table whose request and response schemas are derived, by
// reflection, from the very Go types the handlers encode and decode (encoding/json rules:
// json tags, omitempty, embedded structs), so the document cannot drift from the wire format.
// It also serves the document (Handler) and a self-contained docs page (DocsPage) that needs
// no network beyond the coordinator itself.
//
// Schemas follow encoding/json: struct members come from json tags (json:"-" skipped,
// embedded structs flattened with encoding/json's precedence rules); a member is required
// unless it has omitempty/omitzero, is a pointer, or is promoted through an embedded pointer
// (override with a required:"true|false" tag); pointers are nullable; named struct types
// become components referenced with $ref (named Type, or pkg.Type when two types share a
// name), which makes recursive types safe; slices and arrays are arrays, maps objects with
// additionalProperties, []byte a base64 string, time.Time a date-time string, time.Duration
// integer nanoseconds, interfaces and json.RawMessage any value, TextMarshalers strings. A type
// with a MarshalJSON method must declare its schema (a JSONSchema method, or WithSchema for
// types whose package you do not own); Build fails otherwise rather than document a lie.
// Struct tags add to a member's schema: doc (description), example (JSON, or verbatim for
// strings), enum (comma-separated), format and pattern.
//
// It must not route requests, authenticate, or know what any CTS route does: the api package
// declares the routes and mounts the handlers. The only CTS-specific knowledge here is the
// shared error JSON, referenced by every error status, and the meaning of the
// auth levels.
//
// Typical use (in the api package):
//
//	doc, err := openapi.Build(openapi.Info{Title: "CDM Task Service", Version: v}, []openapi.Route{{
//		Method: "GET", Path: "/jobs/{job_id}", Summary: "Get a job", Tags: []string{"Jobs"},
//		Auth:   openapi.AuthOwner,
//		Params: []openapi.Param{{Name: "job_id", In: "path", Schema: "", Pattern: `^[\w-]+$`}},
//		Response: JobView{},
//		Errors:   []int{400, 401, 403, 404},
//	}}, openapi.WithSchema(args.Arg{}, argSchema))
//	mux.Handle("GET /openapi.json", openapi.Handler(doc))
//	mux.Handle("GET /docs", openapi.DocsPage("CDM Task Service", "openapi.json"))
package openapi

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// Version is the OpenAPI version of the documents Build produces.
const Version = "3.0.3"

// Schema is a JSON Schema object in the OpenAPI 3.0.3 dialect (nullable, not type arrays).
// Custom schemas (JSONSchema methods, WithSchema) are written as Schema values; inside them,
// SchemaOf(v) stands for the generated schema of v's type.
type Schema = map[string]any

// Schemer is implemented by types that describe their own JSON form, typically because they
// have a MarshalJSON method that reflection cannot see through (a union that is a string or an
// object, a duration written as an ISO 8601 string). JSONSchema is called on the zero value
// (on a pointer to a new zero value for pointer receivers) and must return a fresh or constant
// schema; SchemaOf may be used inside it. The schema is inlined wherever the type is used.
type Schemer interface {
	JSONSchema() map[string]any
}

// The auth levels of a Route. Alternatives are joined with "|", e.g.
// AuthAdmin + "|" + AuthExecutor for a route open to administrators and executors.
const (
	// AuthNone needs no token; a token that is sent is still validated.
	AuthNone = "none"
	// AuthUser needs any valid KBase token.
	AuthUser = "user"
	// AuthOwner needs the token of the user who owns the job.
	AuthOwner = "owner"
	// AuthAdmin needs the token of a full service administrator.
	AuthAdmin = "admin"
	// AuthExecutor needs a token with the external executor role.
	AuthExecutor = "executor"
	// AuthRefdataService needs a token with the refdata service role.
	AuthRefdataService = "refdata-service"
	// AuthStager needs the staging agent's own credential (its launcher gave it one).
	AuthStager = "stager"
)

// authPhrases describe who may call a route, per auth level.
var authPhrases = map[string]string{
	AuthUser:           "any valid KBase token",
	AuthOwner:          "the KBase token of the user who owns the job",
	AuthAdmin:          "the KBase token of a full service administrator",
	AuthExecutor:       "a KBase token with the external executor role",
	AuthRefdataService: "a KBase token with the refdata service role",
	AuthStager:         "the staging agent's own credential (for its reference data, site and staging attempt)",
}

// SecuritySchemeName is the name of the bearer-token security scheme in the document.
const SecuritySchemeName = "KBaseToken"

// ErrorSchemaName is the component name of the CTS error JSON that every error status
// references; ValidationDetailSchemaName is the component of one request validation problem.
// User types with these names are package-qualified.
const (
	ErrorSchemaName            = "ErrorResponse"
	ValidationDetailSchemaName = "ValidationDetail"
)

// Info describes the API as a whole.
type Info struct {
	Title       string // required
	Version     string // required: the service version, not the OpenAPI version
	Description string
	// ServerURL, when set, becomes the only server of the document (for example the
	// service's root_path behind a proxy, or "/"). Empty means the document's origin.
	ServerURL string
	// TagDescriptions describe the routes' tags (Route.Tags), by name.
	TagDescriptions map[string]string
}

// Param is a path, query or header parameter.
type Param struct {
	Name string
	// In is "path", "query" or "header". Path parameters are always required.
	In          string
	Required    bool
	Description string
	// Schema is a Go value whose type gives the parameter's schema: int(0), "", false,
	// time.Time{}, a named string type with a JSONSchema method... nil means string.
	Schema any
	// Constraints added to the schema; they need a non-$ref (scalar) schema.
	Pattern              string
	Minimum, Maximum     *float64
	MinLength, MaxLength *int
	Enum                 []string // values, parsed as JSON unless the schema is a string
	Default              any      // rendered as is with encoding/json
	Example              any
}

// RawResponse declares a non-JSON success body, such as a log stream.
type RawResponse struct {
	ContentType string // e.g. "text/plain; charset=utf-8", "application/octet-stream"
	// Headers are response headers worth documenting: name → description.
	Headers map[string]string
}

// Route is one operation of the API.
type Route struct {
	// Method is an HTTP method (any case). Path is an OpenAPI path template such as
	// "/jobs/{job_id}"; Go ServeMux wildcards "{image_id...}" are accepted and written as
	// "{image_id}", and a trailing "{$}" is dropped.
	Method, Path string
	// OperationID is optional; the default is derived from the method and path, e.g.
	// "get_jobs_job_id_status".
	OperationID string
	Summary     string
	// Description is plain text; paragraphs are separated by blank lines, `code` and
	// **bold** are rendered by the docs page. A sentence on Auth is appended.
	Description string
	Tags        []string
	// Auth is required: one of the Auth* constants, or several joined with "|".
	Auth   string
	Params []Param
	// Request is nil or a Go value whose type is the JSON body's schema.
	Request any
	// RequestOptional marks the body as optional.
	RequestOptional bool
	// Response is nil for an empty body, a Go value whose type is the JSON body's schema, or
	// a RawResponse.
	Response any
	// ResponseDescription describes the success response; default: the status text.
	ResponseDescription string
	// Status is the success status: default 200, or 204 when Response is nil.
	Status int
	// Errors are the error statuses the route may return, each with the CTS error JSON.
	Errors []int
	// ErrorDescriptions optionally explain when an error status occurs (status → text).
	ErrorDescriptions map[int]string
	Deprecated        bool
}

// Sentinels wrapped by the errors Build returns, for errors.Is.
var (
	// ErrInvalidInfo: Info lacks a title or version.
	ErrInvalidInfo = errors.New("invalid info")
	// ErrInvalidRoute: a route field is missing or malformed.
	ErrInvalidRoute = errors.New("invalid route")
	// ErrDuplicateRoute: two routes share a method and path template (parameter names
	// aside), or an operationId.
	ErrDuplicateRoute = errors.New("duplicate route")
	// ErrPathParam: a path template variable is not declared as a path Param, or the
	// reverse, or a parameter is declared twice.
	ErrPathParam = errors.New("path parameter mismatch")
	// ErrSchema: a Go type cannot be described (a channel, a func, a MarshalJSON without a
	// declared schema, a malformed struct tag value).
	ErrSchema = errors.New("schema")
)

// RouteError is a problem with one route; Err wraps one of the sentinels.
type RouteError struct {
	Method, Path string
	Err          error
}

// Error names the route and the problem.
func (e *RouteError) Error() string {
	return fmt.Sprintf("route %s %s: %v", e.Method, e.Path, e.Err)
}

// Unwrap returns the problem, which wraps one of the sentinels.
func (e *RouteError) Unwrap() error { return e.Err }

// Option configures Build.
type Option func(*generator)

// WithSchema declares the schema of v's type (and of pointers to it), overriding reflection
// and any JSONSchema method. Use it for types whose package you do not own, such as a union
// type with a MarshalJSON method. The schema may contain SchemaOf values. It is inlined
// wherever the type is used.
func WithSchema(v any, s Schema) Option {
	return func(g *generator) {
		t := typeOfValue(v)
		g.overrides[t] = s
	}
}

// WithFieldSchema declares the schema of one member of a struct type, by its JSON name,
// overriding reflection for that member only (its doc, example and enum tags still apply).
// Use it when a handler decodes a member more leniently than its Go type says, such as a
// runtime given in seconds or as an ISO 8601 string. Build fails if the struct has no such
// member.
func WithFieldSchema(structValue any, jsonName string, s Schema) Option {
	return func(g *generator) {
		t := typeOfValue(structValue)
		if g.fieldOverrides[t] == nil {
			g.fieldOverrides[t] = map[string]Schema{}
		}
		g.fieldOverrides[t][jsonName] = s
	}
}

// Document is a built, validated OpenAPI document. It is immutable.
type Document struct {
	json []byte
}

// JSON returns the document as indented JSON. The returned slice must not be modified.
func (d *Document) JSON() ([]byte, error) {
	if d == nil || d.json == nil {
		return nil, errors.New("openapi: empty document")
	}
	return d.json, nil
}

var (
	methodRE  = regexp.MustCompile(`^[A-Z]+$`)
	varRE     = regexp.MustCompile(`\{([^{}]*)\}`)
	varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

var knownMethods = []string{"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}

// Build validates the routes and returns their OpenAPI document. Routes keep their order
// (paths in the order first seen, so the docs page follows the route table). The error joins
// every problem found; each is a *RouteError or wraps ErrInvalidInfo.
func Build(info Info, routes []Route, opts ...Option) (*Document, error) {
	g := newGenerator()
	for _, o := range opts {
		o(g)
	}
	var errs []error
	if strings.TrimSpace(info.Title) == "" || strings.TrimSpace(info.Version) == "" {
		errs = append(errs, fmt.Errorf("%w: title and version are required", ErrInvalidInfo))
	}

	paths := newOrderedMap()
	var tags []string
	seenRoute := map[string]string{} // method + normalised template → path
	seenOpID := map[string]string{}
	for _, r := range routes {
		method := strings.ToUpper(strings.TrimSpace(r.Method))
		path := normalisePath(r.Path)
		fail := func(err error) { errs = append(errs, &RouteError{Method: method, Path: r.Path, Err: err}) }
		if !slices.Contains(knownMethods, method) || !methodRE.MatchString(method) {
			fail(fmt.Errorf("%w: unknown method %q", ErrInvalidRoute, r.Method))
			continue
		}
		vars, err := pathVars(path)
		if err != nil {
			fail(err)
			continue
		}
		key := method + " " + varRE.ReplaceAllString(path, "{}")
		if prev, ok := seenRoute[key]; ok {
			fail(fmt.Errorf("%w: same method and path template as %s %s", ErrDuplicateRoute, method, prev))
			continue
		}
		seenRoute[key] = r.Path
		opID := r.OperationID
		if opID == "" {
			opID = defaultOperationID(method, path)
		}
		if prev, ok := seenOpID[opID]; ok {
			fail(fmt.Errorf("%w: operationId %q is also used by %s", ErrDuplicateRoute, opID, prev))
			continue
		}
		seenOpID[opID] = method + " " + r.Path

		op, rerrs := g.operation(r, method, path, opID, vars)
		for _, e := range rerrs {
			fail(e)
		}
		if len(rerrs) > 0 {
			continue
		}
		item, _ := paths.get(path).(*orderedMap)
		if item == nil {
			item = newOrderedMap()
			paths.set(path, item)
		}
		item.set(strings.ToLower(method), op)
		for _, t := range r.Tags {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	for t, fields := range g.fieldOverrides {
		for name := range fields {
			if !g.usedFieldOverrides[t][name] {
				errs = append(errs, fmt.Errorf("%w: WithFieldSchema(%s, %q): no such member in a type the routes use", ErrSchema, t, name))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	schemas, err := g.components()
	if err != nil {
		return nil, err
	}
	root := newOrderedMap()
	root.set("openapi", Version)
	infoObj := newOrderedMap()
	infoObj.set("title", info.Title)
	infoObj.set("version", info.Version)
	if info.Description != "" {
		infoObj.set("description", info.Description)
	}
	root.set("info", infoObj)
	if info.ServerURL != "" {
		root.set("servers", []any{map[string]any{"url": info.ServerURL}})
	}
	if len(tags) > 0 {
		ts := make([]any, len(tags))
		for i, t := range tags {
			tag := map[string]any{"name": t}
			if d := info.TagDescriptions[t]; d != "" {
				tag["description"] = d
			}
			ts[i] = tag
		}
		root.set("tags", ts)
	}
	root.set("paths", paths)
	root.set("components", map[string]any{
		"schemas": schemas,
		"securitySchemes": map[string]any{
			SecuritySchemeName: map[string]any{
				"type":        "http",
				"scheme":      "bearer",
				"description": "A KBase auth2 token, sent as `Authorization: Bearer <token>`.",
			},
		},
	})
	g.resolve(root)
	out, err := marshalIndent(root)
	if err != nil {
		return nil, fmt.Errorf("%w: encode document: %w", ErrSchema, err)
	}
	return &Document{json: out}, nil
}

// normalisePath turns Go ServeMux patterns into OpenAPI templates.
func normalisePath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	return strings.ReplaceAll(p, "...}", "}")
}

// pathVars returns the template variables of a path, checking the template's syntax.
func pathVars(path string) ([]string, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("%w: path must start with /", ErrInvalidRoute)
	}
	if strings.Count(path, "{") != strings.Count(path, "}") {
		return nil, fmt.Errorf("%w: unbalanced braces in path", ErrInvalidRoute)
	}
	var vars []string
	for _, m := range varRE.FindAllStringSubmatch(path, -1) {
		if !varNameRE.MatchString(m[1]) {
			return nil, fmt.Errorf("%w: bad path variable name %q", ErrInvalidRoute, m[1])
		}
		if slices.Contains(vars, m[1]) {
			return nil, fmt.Errorf("%w: path variable %q appears twice", ErrPathParam, m[1])
		}
		vars = append(vars, m[1])
	}
	if strings.Count(varRE.ReplaceAllString(path, ""), "{") > 0 {
		return nil, fmt.Errorf("%w: malformed path template", ErrInvalidRoute)
	}
	return vars, nil
}

var nonIdentRE = regexp.MustCompile(`[^A-Za-z0-9]+`)

func defaultOperationID(method, path string) string {
	s := strings.Trim(nonIdentRE.ReplaceAllString(path, "_"), "_")
	if s == "" {
		s = "root"
	}
	return strings.ToLower(method) + "_" + s
}

// authText validates an Auth value and returns the sentence for the description and
// whether a token is required.
func authText(auth string) (string, bool, error) {
	if auth == "" {
		return "", false, fmt.Errorf("%w: Auth is required (use AuthNone for open routes)", ErrInvalidRoute)
	}
	if auth == AuthNone {
		return "**Authentication:** none; a token that is sent is still validated.", false, nil
	}
	parts := strings.Split(auth, "|")
	phrases := make([]string, 0, len(parts))
	for _, p := range parts {
		ph, ok := authPhrases[p]
		if !ok {
			return "", false, fmt.Errorf("%w: unknown auth level %q", ErrInvalidRoute, p)
		}
		phrases = append(phrases, ph)
	}
	return "**Authentication:** requires " + strings.Join(phrases, ", or ") + ".", true, nil
}

// errorHints are the default descriptions of common error statuses.
var errorHints = map[int]string{
	http.StatusBadRequest:            "The request is invalid (app code 30010 with request_validation_detail when it fails validation).",
	http.StatusUnauthorized:          "No token, or an invalid token or Authorization header.",
	http.StatusForbidden:             "The caller may not perform this operation.",
	http.StatusNotFound:              "The resource does not exist.",
	http.StatusRequestEntityTooLarge: "The request body is larger than the service accepts.",
	http.StatusInternalServerError:   "An unexpected error occurred.",
	http.StatusServiceUnavailable:    "A service this one depends on (auth2, MongoDB, S3, Kafka) did not answer in time; the message names it. Try again later.",
}

func (g *generator) operation(r Route, method, path, opID string, vars []string) (*orderedMap, []error) {
	var errs []error
	op := newOrderedMap()
	if len(r.Tags) > 0 {
		op.set("tags", r.Tags)
	}
	if r.Summary != "" {
		op.set("summary", r.Summary)
	}
	authSentence, secured, err := authText(r.Auth)
	if err != nil {
		errs = append(errs, err)
	}
	desc := strings.TrimSpace(r.Description)
	if authSentence != "" {
		if desc != "" {
			desc += "\n\n"
		}
		desc += authSentence
	}
	if desc != "" {
		op.set("description", desc)
	}
	op.set("operationId", opID)

	params, perrs := g.parameters(r.Params, vars)
	errs = append(errs, perrs...)
	if len(params) > 0 {
		op.set("parameters", params)
	}

	if r.Request != nil {
		if _, raw := r.Request.(RawResponse); raw {
			errs = append(errs, fmt.Errorf("%w: RawResponse is not a request body", ErrInvalidRoute))
		} else if s, err := g.schemaFor(typeOfValue(r.Request)); err != nil {
			errs = append(errs, fmt.Errorf("request body: %w", err))
		} else {
			op.set("requestBody", map[string]any{
				"required": !r.RequestOptional,
				"content":  map[string]any{"application/json": map[string]any{"schema": s}},
			})
		}
	}

	responses := newOrderedMap()
	status := r.Status
	if status == 0 {
		status = http.StatusOK
		if r.Response == nil {
			status = http.StatusNoContent
		}
	}
	if status < 200 || status > 299 {
		errs = append(errs, fmt.Errorf("%w: success status %d is not 2xx", ErrInvalidRoute, status))
	}
	okResp := newOrderedMap()
	okDesc := r.ResponseDescription
	if okDesc == "" {
		okDesc = ctserr.StatusText(status)
	}
	okResp.set("description", okDesc)
	switch resp := r.Response.(type) {
	case nil:
	case RawResponse:
		if resp.ContentType == "" {
			errs = append(errs, fmt.Errorf("%w: RawResponse needs a ContentType", ErrInvalidRoute))
			break
		}
		s := Schema{"type": "string"}
		if !strings.HasPrefix(resp.ContentType, "text/") {
			s["format"] = "binary"
		}
		okResp.set("content", map[string]any{resp.ContentType: map[string]any{"schema": s}})
		if len(resp.Headers) > 0 {
			hs := map[string]any{}
			for name, d := range resp.Headers {
				hs[name] = map[string]any{"description": d, "schema": Schema{"type": "string"}}
			}
			okResp.set("headers", hs)
		}
	default:
		if status == http.StatusNoContent {
			errs = append(errs, fmt.Errorf("%w: status 204 cannot have a response body", ErrInvalidRoute))
			break
		}
		s, err := g.schemaFor(typeOfValue(resp))
		if err != nil {
			errs = append(errs, fmt.Errorf("response body: %w", err))
			break
		}
		okResp.set("content", map[string]any{"application/json": map[string]any{"schema": s}})
	}
	responses.set(strconv.Itoa(status), okResp)

	errStatuses := slices.Clone(r.Errors)
	slices.Sort(errStatuses)
	for i, code := range errStatuses {
		if code < 400 || code > 599 {
			errs = append(errs, fmt.Errorf("%w: error status %d is not 4xx or 5xx", ErrInvalidRoute, code))
			continue
		}
		if i > 0 && errStatuses[i-1] == code {
			errs = append(errs, fmt.Errorf("%w: error status %d listed twice", ErrInvalidRoute, code))
			continue
		}
		d := ctserr.StatusText(code)
		if hint := r.ErrorDescriptions[code]; hint != "" {
			d += ": " + hint
		} else if hint := errorHints[code]; hint != "" {
			d += ": " + hint
		}
		responses.set(strconv.Itoa(code), map[string]any{
			"description": d,
			"content": map[string]any{"application/json": map[string]any{
				"schema": Schema{"$ref": "#/components/schemas/" + ErrorSchemaName},
			}},
		})
	}
	for code := range r.ErrorDescriptions {
		if !slices.Contains(r.Errors, code) {
			errs = append(errs, fmt.Errorf("%w: ErrorDescriptions has status %d that is not in Errors", ErrInvalidRoute, code))
		}
	}
	op.set("responses", responses)
	if secured {
		op.set("security", []any{map[string]any{SecuritySchemeName: []string{}}})
	} else {
		// Said explicitly: the route needs no token (a token that is sent is still checked).
		op.set("security", []any{})
	}
	if r.Deprecated {
		op.set("deprecated", true)
	}
	op.set("x-cts-auth", r.Auth)
	return op, errs
}

func (g *generator) parameters(ps []Param, vars []string) ([]any, []error) {
	var errs []error
	var out []any
	seen := map[string]bool{}
	declared := map[string]bool{}
	for _, p := range ps {
		where := fmt.Sprintf("parameter %q in %s", p.Name, p.In)
		switch p.In {
		case "path", "query", "header":
		default:
			errs = append(errs, fmt.Errorf("%w: %s: In must be path, query or header", ErrInvalidRoute, where))
			continue
		}
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%w: parameter without a name", ErrInvalidRoute))
			continue
		}
		key := p.In + "\x00" + p.Name
		if p.In == "header" {
			key = p.In + "\x00" + strings.ToLower(p.Name)
		}
		if seen[key] {
			errs = append(errs, fmt.Errorf("%w: %s declared twice", ErrPathParam, where))
			continue
		}
		seen[key] = true
		required := p.Required
		if p.In == "path" {
			if !slices.Contains(vars, p.Name) {
				errs = append(errs, fmt.Errorf("%w: %s is not in the path template", ErrPathParam, where))
				continue
			}
			declared[p.Name] = true
			required = true
		}
		s, err := g.paramSchema(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		po := newOrderedMap()
		po.set("name", p.Name)
		po.set("in", p.In)
		if p.Description != "" {
			po.set("description", p.Description)
		}
		po.set("required", required)
		po.set("schema", s)
		out = append(out, po)
	}
	for _, v := range vars {
		if !declared[v] {
			errs = append(errs, fmt.Errorf("%w: path variable {%s} is not declared as a path Param", ErrPathParam, v))
		}
	}
	return out, errs
}
