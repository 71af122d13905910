package ingest_test

import (
	"testing"

	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
)

// TestOutputFolderOfOldRecords: a job recorded before output folders were normalised has no
// trailing "/"; its containers' folder is still the folder, not a key prefix ("out" must not
// admit "outx.txt"), with the declobber subfolder inside it.
func TestOutputFolderOfOldRecords(t *testing.T) {
	for _, tc := range []struct {
		dir       string
		declobber bool
		want      string
	}{
		{"bkt/out", false, "bkt/out/"},
		{"bkt/out/", false, "bkt/out/"},
		{"bkt/out", true, "bkt/out/1/"},
	} {
		j := &jobs.Job{Input: jobinput.JobInput{OutputDir: tc.dir}}
		j.Input.Params.Declobber = tc.declobber
		got, err := ingest.OutputFolder(j, 1)
		if err != nil || got.String() != tc.want {
			t.Errorf("OutputFolder(%q, declobber %t) = %q, %v; want %q", tc.dir, tc.declobber, got, err, tc.want)
		}
	}
}
