package api_test

import (
	"reflect"
	"testing"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/api"
)

// TestWhoamiAccessRules checks GET /whoami lists the folders the site's access rules give the
// caller, with the {user} placeholder resolved.
func TestWhoamiAccessRules(t *testing.T) {
	rules, err := access.New(access.Config{LogDir: "cts-logs/container_logs", Allowed: []string{"outputs/public"},
		Write: []string{"outputs/{user}"}, Read: []string{"inputs/shared/"}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, func(c *api.Config) { c.Access = rules })
	m := f.getJSON(t, "GET", "/whoami", "Bearer tok-bob", "", 200)
	want := []any{
		map[string]any{"path": "outputs/public/", "perm": "write"},
		map[string]any{"path": "outputs/bob/", "perm": "write"},
		map[string]any{"path": "inputs/shared/", "perm": "read"},
	}
	if !reflect.DeepEqual(m["allowed_paths"], want) {
		t.Fatalf("allowed_paths %v, want %v", m["allowed_paths"], want)
	}
}
