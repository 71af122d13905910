package jobinput

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/shared/args"
)

// FuzzDecode checks that Decode never panics and returns either a job input that satisfies
// every limit (and survives a round trip through its API and stored forms) or a request
// validation *ctserr.Error whose details all sit under "body". The seed corpus is
// testdata/fuzz/FuzzDecode plus the example bodies. Run:
//
//	go test -run=^$ -fuzz=FuzzDecode -fuzztime=60s ./coordinator/internal/jobinput/
func FuzzDecode(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("testdata", "examples", "*.json"))
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
	opts := DefaultOptions()
	opts.Sites = []string{"kbase", "local"}
	f.Fuzz(func(t *testing.T, body []byte) {
		ji, err := Decode(bytes.NewReader(body), opts)
		if err != nil {
			checkValidationError(t, ji, err)
			return
		}
		checkJobInput(t, ji, opts)
	})
}

func checkValidationError(t *testing.T, ji *JobInput, err error) {
	t.Helper()
	var ce *ctserr.Error
	if !errors.As(err, &ce) || ce.Code != ctserr.CodeRequestValidation || len(ce.Validation) == 0 {
		t.Fatalf("error %v (%T) is not a request validation error with details", err, err)
	}
	if ji != nil {
		t.Fatal("Decode returned a job input with its error")
	}
	for _, d := range ce.Validation {
		if len(d.Loc) == 0 || d.Loc[0] != "body" || d.Type == "" || d.Msg == "" {
			t.Fatalf("bad detail %+v", d)
		}
	}
	if _, err := json.Marshal(ce.Validation); err != nil {
		t.Fatalf("details do not marshal: %v", err)
	}
}

func checkJobInput(t *testing.T, ji *JobInput, opts Options) {
	t.Helper()
	n := len(ji.InputFiles)
	switch {
	case !slices.Contains(opts.Sites, ji.Cluster):
		t.Fatalf("cluster %q accepted", ji.Cluster)
	case ji.Image == "" || len([]rune(ji.Image)) > MaxImageLength:
		t.Fatalf("image %q accepted", ji.Image)
	case ji.NumContainers < 1 || ji.NumContainers > opts.MaxContainers || ji.NumContainers > n:
		t.Fatalf("num_containers %d with %d files accepted", ji.NumContainers, n)
	case n < 1 || n > opts.MaxInputFiles:
		t.Fatalf("%d input files accepted", n)
	case ji.CPUs < 1 || ji.CPUs > opts.MaxCPUs:
		t.Fatalf("cpus %d accepted", ji.CPUs)
	case ji.Memory < MinMemory || ji.Memory > opts.MaxMemory:
		t.Fatalf("memory %d accepted", ji.Memory)
	case ji.RuntimeSeconds < MinRuntimeSeconds || ji.RuntimeSeconds > opts.MaxRuntimeSeconds:
		t.Fatalf("runtime %v accepted", ji.RuntimeSeconds)
	case !strings.HasSuffix(ji.OutputDir, "/") || strings.Contains(ji.OutputDir, "//"):
		t.Fatalf("output_dir %q accepted", ji.OutputDir)
	}
	p := ji.Params
	if ps := p.Validate(); len(ps) != 0 {
		t.Fatalf("accepted params fail Validate: %+v", ps)
	}
	paths, err := ji.ContainerPaths()
	if err != nil {
		t.Fatalf("accepted job input has no placements: %v", err)
	}
	for c, idx := range ji.FilesPerContainer() {
		if len(idx) == 0 {
			t.Fatalf("container %d has no files", c)
		}
		mine := make([]string, len(idx))
		for i, fi := range idx {
			mine[i] = paths[fi]
		}
		if _, _, err := args.Generate([]string{"prog"}, p, c, mine); err != nil &&
			!errors.Is(err, args.ErrManifestUnsupported) {
			t.Fatalf("Generate for container %d: %v", c, err)
		}
	}
	stored, err := json.Marshal(ji)
	if err != nil {
		t.Fatal(err)
	}
	var back JobInput
	if err := json.Unmarshal(stored, &back); err != nil || !reflect.DeepEqual(&back, ji) {
		t.Fatalf("stored form %s does not round-trip: %v\n%+v", stored, err, back)
	}
	view, err := json.Marshal(ji.APIView())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode(bytes.NewReader(view), opts)
	if err != nil || !reflect.DeepEqual(again, ji) {
		t.Fatalf("API view %s does not decode back: %v\n%+v\n%+v", view, err, again, ji)
	}
}
