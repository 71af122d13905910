// Command cts is the CTS command-line tool. For now it has one command:
//
//	cts dev [--dir .dev] [--listen 127.0.0.1:5000]
//
// which runs a complete CTS on this machine (embedded S3, MongoDB wire, Kafka, registry and
// auth2; the coordinator; the local launcher starting real agents that run containers with
// runc), writes <dir>/env with the shell variables that point clients at it, and runs until
// SIGINT or SIGTERM. It needs root and runc (for the containers). The cts-agent and
// cts-launcher-local binaries are looked up next to this one unless flags say otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack"
)

func main() {
	devstack.Main() // the embedded S3 runs as a child process of this binary
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cts:", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New("usage: cts dev [--dir DIR] [--listen ADDR] [--agent PATH] [--launcher PATH]")
}

func run(argv []string) error {
	if len(argv) == 0 || argv[0] != "dev" {
		return usage()
	}
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	fs := flag.NewFlagSet("cts dev", flag.ContinueOnError)
	dir := fs.String("dir", ".dev", "state directory; the env file is written to DIR/env")
	listen := fs.String("listen", "127.0.0.1:5000", "coordinator address")
	agent := fs.String("agent", filepath.Join(bin, "cts-agent"), "cts-agent binary")
	launcher := fs.String("launcher", filepath.Join(bin, "cts-launcher-local"), "cts-launcher-local plugin binary")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(argv[1:]); err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	env, err := devmode.Start(ctx, devmode.Options{Dir: *dir, Listen: *listen, AgentPath: *agent, LauncherPath: *launcher, Log: log})
	if err != nil {
		return err
	}
	envFile := filepath.Join(env.Dir, "env")
	if err := env.WriteEnvFile(envFile); err != nil {
		_ = env.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "CTS dev site %q running at %s\nenvironment: source %s\n", devmode.SiteName, env.URL, envFile)
	select {
	case <-ctx.Done():
	case <-env.Stopped():
		if err := env.Err(); err != nil {
			log.Error("coordinator stopped", "error", err)
		}
	}
	fmt.Fprintln(os.Stderr, "stopping")
	_ = os.Remove(envFile)
	return env.Close()
}
