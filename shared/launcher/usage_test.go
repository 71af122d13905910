package launcher_test

import (
	"reflect"
	"testing"

	"github.com/kbase/cts/shared/launcher"
)

// TestUsageRoundTrip checks that the HTCondor accounting extensions (hold code, usage, raw
// details) cross the wire unchanged.
func TestUsageRoundTrip(t *testing.T) {
	t.Parallel()
	code := 3
	want := []launcher.ContainerStatus{
		{Container: 0, State: launcher.StateHeld, ExitCode: &code, Reason: "held", Attempt: "5.0", HoldCode: 3,
			Usage:   &launcher.Usage{CPUSeconds: 1.5, WallSeconds: 2, MaxMemoryBytes: 3 << 20, CPUs: 2},
			Details: []byte(`{"JobStatus":5}`)},
		{Container: 1, State: launcher.StateRunning, Attempt: "5.1"},
	}
	c := inProcess(t, &fake{statuses: []launcher.JobStatus{{JobID: "a", Containers: want}}})
	got, err := c.Status(t.Context(), []launcher.JobRef{{JobID: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[0].Containers, want) {
		t.Errorf("got %+v, want %+v", got[0].Containers, want)
	}
}

func TestSumUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		cs            []launcher.ContainerStatus
		hours, factor float64 // -1: nil
		mem           int64   // -1: nil
	}{
		{"none", nil, -1, -1, -1},
		{"no_usage", []launcher.ContainerStatus{{}}, -1, -1, -1},
		{"two", []launcher.ContainerStatus{
			{Usage: &launcher.Usage{CPUSeconds: 3600, WallSeconds: 1800, MaxMemoryBytes: 10, CPUs: 2}},
			{Usage: &launcher.Usage{CPUSeconds: 3600, WallSeconds: 3600, MaxMemoryBytes: 30, CPUs: 1}},
			{},
		}, 2, 7200.0 / (3600 + 3600), 30},
		{"idle_cpu", []launcher.ContainerStatus{{Usage: &launcher.Usage{WallSeconds: 10}}}, -1, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := launcher.SumUsage(tc.cs)
			checkF := func(what string, got *float64, want float64) {
				t.Helper()
				switch {
				case want < 0 && got != nil:
					t.Errorf("%s = %v, want nil", what, *got)
				case want >= 0 && (got == nil || *got != want):
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			checkF("cpu hours", u.CPUHours, tc.hours)
			checkF("cpu factor", u.CPUFactor, tc.factor)
			if (tc.mem < 0) != (u.MaxMemory == nil) || (u.MaxMemory != nil && *u.MaxMemory != tc.mem) {
				t.Errorf("max memory %v, want %d", u.MaxMemory, tc.mem)
			}
		})
	}
}
