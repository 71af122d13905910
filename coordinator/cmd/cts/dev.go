package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kbase/cts/coordinator/devmode"
)

// runDev is `cts dev`: a complete CTS on this machine (embedded S3, MongoDB wire, Kafka,
// registry and auth2; the coordinator; the local launcher starting real agents that run
// containers with runc). It writes <dir>/env with the shell variables that point clients at it
// and runs until SIGINT or SIGTERM. It needs root and runc. The cts-agent and
// cts-launcher-local binaries are looked up next to this one unless flags say otherwise.
func runDev(argv []string, stderr io.Writer) error {
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	fs := flag.NewFlagSet("cts dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".dev", "state directory; the env file is written to DIR/env")
	listen := fs.String("listen", "127.0.0.1:5000", "coordinator address")
	agent := fs.String("agent", filepath.Join(bin, "cts-agent"), "cts-agent binary")
	launcher := fs.String("launcher", filepath.Join(bin, "cts-launcher-local"), "cts-launcher-local plugin binary")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
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
	fmt.Fprintf(stderr, "CTS dev site %q running at %s\nenvironment: source %s\n", devmode.SiteName, env.URL, envFile)
	fmt.Fprintf(stderr, "agents run containers with the %s runtime (set CTS_AGENT_RUNTIME=oci|docker|auto to choose)\n", env.AgentRuntime)
	select {
	case <-ctx.Done():
	case <-env.Stopped():
		if err := env.Err(); err != nil {
			log.Error("coordinator stopped", "error", err)
		}
	}
	fmt.Fprintln(stderr, "stopping")
	_ = os.Remove(envFile)
	return env.Close()
}
