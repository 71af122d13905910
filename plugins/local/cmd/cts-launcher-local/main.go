// Command cts-launcher-local is the "local" launcher plugin: the coordinator starts it through
// hashicorp/go-plugin and it starts agents as local processes (see package plugins/local),
// each under a supervisor, cts-local-supervisor, which it looks for beside its own binary.
// Run with the hidden first argument __cts_supervise it is instead that supervisor (where
// cts-local-supervisor is missing). It is not meant to be run by hand.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/kbase/cts/plugins/local"
	"github.com/kbase/cts/plugins/local/supervisor"
	"github.com/kbase/cts/shared/launcher"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == supervisor.Command {
		os.Exit(supervisor.Supervise(os.Args[2:]))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cts-launcher-local:", err)
		os.Exit(1)
	}
}

func run() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	// Made before Serve, so it keeps writing to the real stderr, which the host parses.
	logger := launcher.NewPluginLogger(os.Stderr, logLevel(os.Getenv("CTS_LOG_LEVEL")))
	launcher.Serve(local.New(local.Options{
		Supervisor: local.SupervisorCommand(exe),
		Logger:     logger,
	}))
	return nil
}

// logLevel parses CTS_LOG_LEVEL (debug, info, warn, error); anything else is info.
func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return slog.LevelInfo
	}
	return l
}
