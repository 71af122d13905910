// Command cts-demo runs the CTS demo (package demo) against a running service, configured by
// the variables cts-dev writes to .dev/env. `make demo` does all of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kbase/cts/test/demo"
)

func main() {
	tool := flag.String("tool", "bin/cts-demo-tool", "the static demo tool binary to put in the image")
	containers := flag.Int("containers", 2, "number of containers")
	flag.Parse()
	cfg := demo.FromEnv()
	cfg.ToolBinary, cfg.Containers, cfg.Out = *tool, *containers, os.Stdout
	// The dev site lets its user write below cts-data/cts_user/ only.
	cfg.Folder = "cts_user/"
	if cfg.URL == "" {
		fmt.Fprintln(os.Stderr, "cts-demo: CTS_URL is not set: source .dev/env (written by cts-dev: make dev) first")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if _, err := demo.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "cts-demo:", err)
		os.Exit(1)
	}
}
