package devmode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kbase/cts/coordinator/app"
)

// RestartCoordinator stops the coordinator only, leaves it down for downtime, and starts a new
// one with the same configuration on the same address. The embedded stack (S3, MongoDB,
// Kafka, registry, auth2) keeps running, and so do the agents: the local launcher's
// supervisors outlive the plugin process the coordinator hosts. It is what fault tests use to
// show that agents reconnect and that no event is lost or applied twice across a coordinator
// restart. While the coordinator is down its port refuses connections and stays the
// environment's: nothing else can take it. log is the new coordinator's logger (nil discards).
func (e *Env) RestartCoordinator(ctx context.Context, downtime time.Duration, log *slog.Logger) error {
	if e.cancel == nil {
		return errors.New("restart coordinator: the environment is closed")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e.cancel()
	<-e.stopped
	if e.runErr != nil {
		return fmt.Errorf("restart coordinator: the old one stopped with: %w", e.runErr)
	}
	e.cancel = nil
	select {
	case <-time.After(downtime):
	case <-ctx.Done():
		return ctx.Err()
	}
	ln, err := e.port.Listen()
	if err != nil {
		return fmt.Errorf("restart coordinator: %w", err)
	}
	a, err := app.New(ctx, e.Config, log, app.WithListener(ln))
	if err != nil {
		return fmt.Errorf("restart coordinator: %w", err)
	}
	e.App = a
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.stopped = make(chan struct{})
	e.runErr = nil
	stopped := e.stopped
	go func() { e.runErr = a.Run(rctx); close(stopped) }()
	return nil
}
