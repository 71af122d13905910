package grace

import (
	"testing"
	"time"
)

func TestSplitKeepsTheOrder(t *testing.T) {
	t.Parallel()
	for _, k := range []time.Duration{0, 100 * time.Millisecond, time.Second, 3 * time.Second, 10 * time.Second, DefaultLauncherKill, time.Hour} {
		b := Split(k)
		if !(0 < b.ContainerStop && b.ContainerStop < b.FinalReport && b.FinalReport < b.LauncherKill) {
			t.Errorf("Split(%s) = %s: not ordered", k, b)
		}
		if b.ContainerStop > MaxContainerStop {
			t.Errorf("Split(%s) container stop %s above %s", k, b.ContainerStop, MaxContainerStop)
		}
	}
	if d := Default(); d.ContainerStop != 10*time.Second || d.FinalReport != 30*time.Second || d.LauncherKill != 45*time.Second {
		t.Errorf("Default() = %s", d)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"", DefaultLauncherKill, false},
		{"10", 10 * time.Second, false},
		{" 4.5 ", 4500 * time.Millisecond, false},
		{"0.5", 500 * time.Millisecond, false},
		{"0", 0, true},
		{"-1", 0, true},
		{"3601", 0, true},
		{"NaN", 0, true},
		{"ten", 0, true},
	}
	for _, tc := range cases {
		got, err := Parse(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("Parse(%q) = %s, %v", tc.in, got, err)
		}
	}
	if got, _ := Parse(Seconds(12500 * time.Millisecond)); got != 12500*time.Millisecond {
		t.Errorf("Seconds/Parse round trip: %s", got)
	}
}
