package openapi

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// checkDocument fails t with every structural problem of an OpenAPI 3.0 document.
func checkDocument(t *testing.T, raw []byte) {
	t.Helper()
	for _, p := range structuralProblems(raw) {
		t.Error(p)
	}
}

// structuralProblems is a small OpenAPI 3.0 checker: the required top-level fields, every
// $ref resolves, no keyword sits beside a $ref, path templates match their declared path
// parameters, operationIds are unique, every operation has described responses, security
// requirements name declared schemes, and every required property exists.
func structuralProblems(raw []byte) []string {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		bad("openapi version %q", doc["openapi"])
	}
	info, _ := doc["info"].(map[string]any)
	if s, _ := info["title"].(string); s == "" {
		bad("info.title missing")
	}
	if s, _ := info["version"].(string); s == "" {
		bad("info.version missing")
	}

	// Every $ref resolves as a JSON pointer into the document, and stands alone.
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"]; ok {
				s, _ := ref.(string)
				if _, ok := resolvePointer(doc, s); !ok {
					bad("%s: $ref %q does not resolve", at, s)
				}
				if len(x) != 1 {
					bad("%s: keywords beside $ref are ignored in OpenAPI 3.0: %v", at, x)
				}
			}
			if props, ok := x["properties"].(map[string]any); ok {
				req, _ := x["required"].([]any)
				for _, r := range req {
					if _, ok := props[r.(string)]; !ok {
						bad("%s: required property %q is not in properties", at, r)
					}
				}
			}
			for k, e := range x {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range x {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "#")

	schemes := map[string]bool{}
	if comps, ok := doc["components"].(map[string]any); ok {
		if ss, ok := comps["securitySchemes"].(map[string]any); ok {
			for k := range ss {
				schemes[k] = true
			}
		}
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		bad("paths missing")
	}
	opIDs := map[string]string{}
	varRE := regexp.MustCompile(`\{([^{}]+)\}`)
	templates := map[string]string{}
	for path, itemV := range paths {
		if !strings.HasPrefix(path, "/") {
			bad("path %q does not start with /", path)
		}
		tmpl := varRE.ReplaceAllString(path, "{}")
		if prev, ok := templates[tmpl]; ok {
			bad("paths %q and %q are the same template", prev, path)
		}
		templates[tmpl] = path
		var vars []string
		for _, m := range varRE.FindAllStringSubmatch(path, -1) {
			vars = append(vars, m[1])
		}
		item := itemV.(map[string]any)
		for method, opV := range item {
			if !slices.Contains([]string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}, method) {
				bad("%s: unknown method %q", path, method)
				continue
			}
			at := method + " " + path
			op := opV.(map[string]any)
			id, _ := op["operationId"].(string)
			if id == "" {
				bad("%s: no operationId", at)
			} else if prev, ok := opIDs[id]; ok {
				bad("%s: operationId %q also used by %s", at, id, prev)
			}
			opIDs[id] = at
			var declared []string
			seen := map[string]bool{}
			params, _ := op["parameters"].([]any)
			for _, pv := range params {
				p := pv.(map[string]any)
				name, _ := p["name"].(string)
				in, _ := p["in"].(string)
				if seen[in+" "+name] {
					bad("%s: parameter %s in %s twice", at, name, in)
				}
				seen[in+" "+name] = true
				if _, ok := p["schema"]; !ok {
					bad("%s: parameter %s has no schema", at, name)
				}
				if in == "path" {
					declared = append(declared, name)
					if p["required"] != true {
						bad("%s: path parameter %s is not required", at, name)
					}
				}
			}
			for _, v := range vars {
				if !slices.Contains(declared, v) {
					bad("%s: path variable {%s} is not declared", at, v)
				}
			}
			for _, d := range declared {
				if !slices.Contains(vars, d) {
					bad("%s: path parameter %s is not in the path", at, d)
				}
			}
			resps, _ := op["responses"].(map[string]any)
			if len(resps) == 0 {
				bad("%s: no responses", at)
			}
			for code, rv := range resps {
				r := rv.(map[string]any)
				if d, _ := r["description"].(string); d == "" {
					bad("%s: response %s has no description", at, code)
				}
				if n, err := strconv.Atoi(code); (err != nil || n < 100 || n > 599) && code != "default" {
					bad("%s: bad response code %q", at, code)
				}
			}
			secs, _ := op["security"].([]any)
			for _, sv := range secs {
				for name := range sv.(map[string]any) {
					if !schemes[name] {
						bad("%s: security scheme %q is not declared", at, name)
					}
				}
			}
		}
	}
	return probs
}

// resolvePointer resolves a local JSON pointer reference ("#/a/b").
func resolvePointer(doc map[string]any, ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	var cur any = doc
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// TestCheckerFindsProblems keeps the checker honest: each broken document is caught.
func TestCheckerFindsProblems(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"not json", `{`, "not JSON"},
		{"dangling ref", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{},
			"components":{"schemas":{"A":{"$ref":"#/components/schemas/B"}}}}`, "does not resolve"},
		{"sibling of ref", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{},
			"components":{"schemas":{"A":{"type":"string"},"B":{"$ref":"#/components/schemas/A","nullable":true}}}}`, "beside $ref"},
		{"undeclared path param", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
			"/a/{x}":{"get":{"operationId":"a","responses":{"200":{"description":"OK"}}}}}}`, "not declared"},
		{"duplicate operationId", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
			"/a":{"get":{"operationId":"a","responses":{"200":{"description":"OK"}}}},
			"/b":{"get":{"operationId":"a","responses":{"200":{"description":"OK"}}}}}}`, "also used"},
		{"required not a property", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{},
			"components":{"schemas":{"A":{"type":"object","properties":{},"required":["x"]}}}}`, "not in properties"},
		{"unknown scheme", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
			"/a":{"get":{"operationId":"a","security":[{"X":[]}],"responses":{"200":{"description":"OK"}}}}}}`, "not declared"},
		{"no description", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{
			"/a":{"get":{"operationId":"a","responses":{"200":{}}}}}}`, "no description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := structuralProblems([]byte(tt.doc))
			if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("problems %q do not mention %q", probs, tt.want)
			}
		})
	}
}
