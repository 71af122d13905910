// Package grace orders, in one place, the deadlines of stopping a job's container. A stop
// (a cancel, an HTCondor removal or eviction, the job's runtime limit) runs three nested
// clocks, all started by the same stop request:
//
//	stop requested
//	├── ContainerStop   the user's process got SIGTERM; SIGKILL when this passes
//	├── FinalReport     the agent has stopped the container, uploaded its logs and
//	│                   reported the final state (its budget includes ContainerStop)
//	└── LauncherKill    the launcher SIGKILLs the agent; what it left is reaped
//
// and they must stay ordered, ContainerStop < FinalReport < LauncherKill, or the agent is
// killed before it could stop the container or save its logs. The launcher owns the outer
// clock (its kill_grace_seconds); it hands it to the agent in EnvKillGrace, and the agent
// derives the two inner ones with Split. So whatever a site configures, the order holds.
//
// It must stay a leaf: constants and arithmetic, no I/O.
package grace

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// EnvKillGrace is the agent's environment variable holding the launcher's kill grace in
// seconds (a decimal number): how long the launcher waits after its SIGTERM to the agent
// before SIGKILL. Launchers set it for every agent they start.
const EnvKillGrace = "CTS_AGENT_KILL_GRACE"

// DefaultLauncherKill is the launchers' default kill grace (kill_grace_seconds): 45 s gives a
// 10 s container stop grace and a 30 s final-report budget.
const DefaultLauncherKill = 45 * time.Second

// MaxContainerStop caps the container's TERM→KILL grace, however long the launcher waits.
const MaxContainerStop = 10 * time.Second

// Budget is the three ordered deadlines of one stop, each measured from the stop request.
type Budget struct {
	// ContainerStop is the container's TERM→KILL grace.
	ContainerStop time.Duration
	// FinalReport bounds the agent's whole stop: the container's stop, the log upload and
	// the final report.
	FinalReport time.Duration
	// LauncherKill is when the launcher kills the agent.
	LauncherKill time.Duration
}

// Split derives the agent's budget from the launcher's kill grace: the final report gets two
// thirds of it (the last third is the margin for a slow S3 or coordinator), and the
// container's stop a third of that, at most MaxContainerStop. A grace of 0 or less gives
// Default. Graces of a few seconds keep the order but leave a real job little time: they are
// for tests.
func Split(launcherKill time.Duration) Budget {
	if launcherKill <= 0 {
		launcherKill = DefaultLauncherKill
	}
	final := launcherKill * 2 / 3
	return Budget{ContainerStop: min(MaxContainerStop, final/3), FinalReport: final, LauncherKill: launcherKill}
}

// Default is Split(DefaultLauncherKill): what an agent assumes when no launcher told it.
func Default() Budget { return Split(DefaultLauncherKill) }

// Seconds formats d for EnvKillGrace.
func Seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// Parse reads an EnvKillGrace value; "" gives DefaultLauncherKill.
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultLauncherKill, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0 && f <= 3600) {
		return 0, fmt.Errorf("%s must be a number of seconds above 0 and at most 3600, got %q", EnvKillGrace, s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// String shows the budget in the order it runs.
func (b Budget) String() string {
	return fmt.Sprintf("container stop %s < final report %s < launcher kill %s", b.ContainerStop, b.FinalReport, b.LauncherKill)
}
