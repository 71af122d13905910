// Command cts-coordinator runs the CTS coordinator: the REST API, the agent endpoint and the
// background loops. Configuration: a YAML file (-config) plus environment variables; see
// docs/operators.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kbase/cts/coordinator/app"
)

func main() {
	if err := run(); err != nil {
		// One line, whatever the error: every problem of an invalid configuration is listed,
		// separated by "; ".
		fmt.Fprintln(os.Stderr, "cts-coordinator:", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", os.Getenv("CTS_CONFIG"), "YAML configuration file")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(app.Version, app.GitHash)
		return nil
	}
	cfg, err := app.LoadConfig(*path, os.LookupEnv)
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level(cfg.LogLevel)}))
	log.Info("configuration", "config", cfg.Redacted())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func level(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
