package api_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/client"
	"github.com/kbase/cts/coordinator/internal/api"
	"github.com/kbase/cts/coordinator/internal/refdata"
)

// clientModels are the response models of the Go client (its models are package wire's).
var clientModels = []any{
	client.ServiceInfo{}, client.WhoAmI{}, client.AllowedPath{}, client.Site{}, client.Sites{},
	client.Transition{}, client.JobStatus{}, client.S3File{}, client.JobImage{}, client.Image{}, client.Images{},
	client.Job{}, client.AdminJob{}, client.Launch{}, client.Jobs{}, client.SubmitJobResponse{}, client.ExitCodes{},
	client.SubJob{}, client.SubJobs{}, client.ContainerProgress{}, client.JobProgress{}, client.JobInputView{}, client.InputFileView{},
	client.Refdata{}, client.RefdataStatus{}, client.RefdataTransition{}, client.RefdataList{},
	client.JobPreview{}, client.ContainerRun{}, client.S3Listing{}, client.S3Object{}, client.UnsentNotifications{},
	client.Params{}, client.Parameter{},
}

// clientRequests are the request bodies the client sends, by route. The client leaves unset
// fields out (the service applies its defaults), so only the properties are compared.
var clientRequests = map[string]any{
	"post /jobs":                    client.JobInput{},
	"post /jobs/preview":            client.JobInput{},
	"post /admin/images/{image_id}": client.ImageRegistration{},
	"put /admin/jobs/{job_id}/meta": client.UpdateAdminMeta{},
}

// TestClientModelsMatchOpenAPI checks every client model against GET /openapi.json: the
// document has a component of the model's name with exactly the model's JSON properties, each
// of the JSON type the model's field has, and required exactly when the model always sends
// it. Every component a route answers with is a client model, so a field added to the API
// without the client (or the reverse) fails here.
func TestClientModelsMatchOpenAPI(t *testing.T) {
	f := newFixtureWith(t, func(c *api.Config) {
		// The reference data routes are served (and documented) with a manager; none is called.
		c.Refdata, c.Staging = refdata.NewManager(refdata.Config{}, nil, nil, nil), nopStaging{}
	})
	code, _, b := f.do(t, "GET", "/openapi.json", "", "")
	if code != 200 {
		t.Fatalf("openapi.json = %d %s", code, b)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Schema map[string]any `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content map[string]struct {
					Schema map[string]any `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	models := map[string]bool{}
	for _, m := range clientModels {
		rt := reflect.TypeOf(m)
		models[rt.Name()] = true
		schema, ok := doc.Components.Schemas[rt.Name()]
		if !ok {
			t.Errorf("%s: no component %s in the document", rt, rt.Name())
			continue
		}
		checkModel(t, rt, schema, doc.Components.Schemas, true)
	}
	for route, m := range clientRequests {
		method, path, _ := strings.Cut(route, " ")
		body, ok := doc.Paths[path][method].RequestBody.Content["application/json"]
		if !ok {
			t.Errorf("%s: no JSON request body in the document", route)
			continue
		}
		schema := body.Schema
		if ref, _ := schema["$ref"].(string); ref != "" {
			schema = doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		}
		checkModel(t, reflect.TypeOf(m), schema, doc.Components.Schemas, false)
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for status, resp := range op.Responses {
				if !strings.HasPrefix(status, "2") {
					continue
				}
				for _, c := range resp.Content {
					if ref, _ := c.Schema["$ref"].(string); ref != "" {
						if name := strings.TrimPrefix(ref, "#/components/schemas/"); !models[name] {
							t.Errorf("%s %s answers %s, which is no client model", method, path, name)
						}
					}
				}
			}
		}
	}
}

// checkModel compares the JSON properties of rt with the component schema; withRequired
// compares which are required too.
func checkModel(t *testing.T, rt reflect.Type, schema map[string]any, comps map[string]map[string]any, withRequired bool) {
	t.Helper()
	if _, custom := reflect.New(rt).Interface().(json.Marshaler); custom {
		return // its schema is its own (JSONSchema)
	}
	props, _ := schema["properties"].(map[string]any)
	var required []string
	req, _ := schema["required"].([]any)
	for _, r := range req {
		required = append(required, r.(string))
	}
	fields := jsonFieldsOf(rt)
	var names, docNames []string
	for n := range fields {
		names = append(names, n)
	}
	for n := range props {
		docNames = append(docNames, n)
	}
	sort.Strings(names)
	sort.Strings(docNames)
	if !slices.Equal(names, docNames) {
		t.Errorf("%s: the client has the properties %v, the document %v", rt, names, docNames)
		return
	}
	for name, f := range fields {
		want := jsonType(f.Type)
		if got := schemaType(props[name].(map[string]any), comps); want != "" && got != "" && got != want {
			t.Errorf("%s.%s: the client reads a %s, the document says %s", rt, name, want, got)
		}
		sendsAlways := !strings.Contains(f.Tag.Get("json"), ",omit") && f.Type.Kind() != reflect.Pointer
		if withRequired && slices.Contains(required, name) != sendsAlways {
			t.Errorf("%s.%s: required %v in the document, the client always has it: %v", rt, name, slices.Contains(required, name), sendsAlways)
		}
	}
}

// jsonFieldsOf returns the JSON properties of a struct as encoding/json sees them (embedded
// structs without a name flattened).
func jsonFieldsOf(rt reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for n, sf := range jsonFieldsOf(f.Type) {
				out[n] = sf
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// jsonType is the JSON type a Go type encodes to, "" when its encoding is its own.
func jsonType(rt reflect.Type) string {
	if rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	if _, custom := reflect.New(rt).Interface().(json.Marshaler); custom {
		return ""
	}
	switch rt.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return ""
}

// schemaType is the type of a property schema, following a reference (and allOf around one);
// "" when the schema states none (oneOf, any).
func schemaType(s map[string]any, comps map[string]map[string]any) string {
	if all, ok := s["allOf"].([]any); ok && len(all) == 1 {
		s = all[0].(map[string]any)
	}
	if ref, ok := s["$ref"].(string); ok {
		s = comps[strings.TrimPrefix(ref, "#/components/schemas/")]
	}
	typ, _ := s["type"].(string)
	return typ
}

type nopStaging struct{}

func (nopStaging) RecoverStaging(context.Context, string, string) error     { return nil }
func (nopStaging) CleanStaging(context.Context, string, string, bool) error { return nil }
