package api_test

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestPreview dry-runs a submit: the same validation errors as POST /jobs, each container's
// command line, and nothing recorded.
func TestPreview(t *testing.T) {
	f := newFixture(t)
	f.put(t, "inputs/in/b.txt", []byte("bbb"))
	body := `{"cluster": "kbase", "image": "` + f.imgID + `:1", "num_containers": 2, "params": {"input_mount_point": "/in",
	  "args": ["--in", {"type": "input_files", "input_files_format": "space_separated_list"}, "-n", {"type": "container_number"}],
	  "environment": {"THREADS": "4"}}, "runtime": 60, "output_dir": "outputs/x", "input_files": ["inputs/in/a.txt", "inputs/in/b.txt"]}`
	v := f.getJSON(t, "POST", "/jobs/preview", alice, body, 200)
	want := []any{
		map[string]any{"container": 0.0, "command": []any{"/bin/tool", "--in", "/in/a.txt", "-n", "0"}, "env": []any{"THREADS=4"}, "input_files": []any{"/in/a.txt"}},
		map[string]any{"container": 1.0, "command": []any{"/bin/tool", "--in", "/in/b.txt", "-n", "1"}, "env": []any{"THREADS=4"}, "input_files": []any{"/in/b.txt"}},
	}
	if !reflect.DeepEqual(v["containers"], want) {
		t.Fatalf("preview %v\nwant %v", v["containers"], want)
	}
	if got := f.getJSON(t, "GET", "/jobs", alice, "", 200)["jobs"].([]any); len(got) != 0 {
		t.Fatalf("a preview recorded a job: %v", got)
	}
	// The submit route's errors, word for word.
	for _, bad := range []string{
		`{"cluster": "kbase"}`,
		`{"cluster": "kbase", "image": "` + f.imgID + `:9", "params": {}, "output_dir": "outputs/x", "input_files": ["inputs/in/a.txt"]}`,
		`{"cluster": "kbase", "image": "` + f.imgID + `:1", "params": {}, "output_dir": "outputs/x", "input_files": ["inputs/in/missing.txt"]}`,
		`{"cluster": "kbase", "image": "` + f.imgID + `:1", "cpus": 99, "params": {}, "output_dir": "outputs/x", "input_files": ["inputs/in/a.txt"]}`,
	} {
		code, _, pb := f.do(t, "POST", "/jobs/preview", alice, bad)
		scode, _, sb := f.do(t, "POST", "/jobs", alice, bad)
		if code != scode || code < 400 || !reflect.DeepEqual(errorBody(t, pb), errorBody(t, sb)) {
			t.Errorf("preview %d %s\nsubmit %d %s", code, pb, scode, sb)
		}
	}
	f.wantError(t, "POST", "/jobs/preview", "", body, 401, 10010, "Authorization header required")
}

// errorBody returns a CTS error answer without its per-request fields (time, request ID).
func errorBody(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	e, _ := m["error"].(map[string]any)
	delete(e, "time")
	delete(e, "request_id")
	return e
}
