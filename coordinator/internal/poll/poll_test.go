package poll

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/kbase/cts/shared/logtest"
)

// TestLoop: a run of failed polls is logged once when it starts and once when it ends; the
// prune runs once PruneEvery has passed on the loop's clock, and its failure is logged, but
// not once the loop's context has ended.
func TestLoop(t *testing.T) {
	// The polls' outcomes, in order; the loop's context ends after the last.
	outcomes := []error{nil, errors.New("down"), errors.New("down"), nil, nil, errors.New("down")}
	var (
		polls  int
		clock  = time.Unix(0, 0)
		prunes []int // the polls after which a prune ran
	)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var log logtest.Recorder
	err := Loop{
		Interval: time.Millisecond,
		Poll: func(context.Context) error {
			err := outcomes[polls]
			polls++
			clock = clock.Add(25 * time.Second) // a prune every third poll
			if polls == len(outcomes) {
				cancel()
				return err // ignored: the loop's context has ended
			}
			return err
		},
		Prune: func(context.Context) error {
			prunes = append(prunes, polls)
			return errors.New("prune down")
		},
		Log:     log.Logger(),
		Failing: "failing", Recovered: "recovered", PruneFailed: "prune failed",
		Now: func() time.Time { return clock },
	}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"WARN failing", "WARN prune failed", "INFO recovered"}; !slices.Equal(log.Records(slog.LevelDebug), want) {
		t.Errorf("logged %q, want %q", log.Records(slog.LevelDebug), want)
	}
	if want := []int{3, 6}; !slices.Equal(prunes, want) {
		t.Errorf("pruned after polls %v, want %v", prunes, want)
	}
}
