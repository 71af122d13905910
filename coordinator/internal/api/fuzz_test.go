package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSubmit posts arbitrary bodies to POST /jobs through the whole handler (decoding,
// validation, the jobs service's checks against the image registry and S3): a malformed job
// input is the caller's fault and must never come back as a 500, and every answer is the CTS
// JSON. The seeds are the job input examples and a few malformed bodies. Run:
//
//	go test -run=^$ -fuzz=FuzzSubmit -fuzztime=60s ./coordinator/internal/api/
func FuzzSubmit(f *testing.F) {
	fx := newFixture(f)
	examples, err := filepath.Glob(filepath.Join("..", "jobinput", "testdata", "examples", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range examples {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		fx.submitBody(), "", "{", "null", "[]", `"x"`, "{}", `{"cluster": 1}`, `{"cluster": "kbase"} x`,
		`{"cluster": "kbase", "image": "x", "params": {}, "output_dir": "outputs/x", "input_files": ["inputs/in/missing"]}`,
		`{"cluster": "kbase", "image": "` + fx.imgID + `:1", "params": {}, "output_dir": "nobucket/x", "input_files": ["inputs/in/a.txt"]}`,
		`{"cluster": "kbase", "image": "` + fx.imgID + `:1", "params": {}, "output_dir": "outputs/x", "input_files": ["inputs/in/a.txt"], "cpus": 9}`,
		`{"cluster": "kbase", "image": "` + fx.imgID + `:1", "params": {}, "output_dir": "cts-logs/container_logs/x", "input_files": ["inputs/in/a.txt"]}`,
		`{"cluster": "kbase", "image": "` + fx.imgID + `:1", "params": {}, "output_dir": "outputs/x", "input_files": [{"file": "inputs/in/a.txt", "crc64nvme": "AAAAAAAAAAA="}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequestWithContext(t.Context(), "POST", fx.url+"/jobs", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode >= 500 {
			t.Fatalf("POST /jobs %q = %d %s", body, resp.StatusCode, b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("answer %q is not JSON: %v", b, err)
		}
		if resp.StatusCode != 200 {
			if e, ok := m["error"].(map[string]any); !ok || e["appcode"] == nil {
				t.Fatalf("error without an app code: %s", b)
			}
		}
	})
}
