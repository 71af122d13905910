// Command cts-dev runs a complete CTS site on this machine for development, demos and the
// documentation's examples: the embedded S3, MongoDB wire server, Kafka, registry and auth2
// (coordinator/devstack), the coordinator, and the local launcher starting real agents that
// run containers (coordinator/devmode). It needs root and runc.
//
// It writes DIR/env with the shell variables that point clients at the site and runs until
// SIGINT or SIGTERM. Started again on the same DIR it restarts the same site: jobs, images,
// reference data, S3 objects and tokens are kept; `make clean` (removing DIR) resets it. A
// new site gets the sample images and inputs of the documentation's examples.
//
// It is a program of its own, not a command of the user CLI cts, so that cts does not carry
// the embedded stack. The cts-agent, cts-launcher-local and sample tool binaries are looked
// up next to this one unless flags say otherwise.
//
// Exit codes: 0 stopped by a signal; 1 the site could not start or stopped with an error
// (one line on stderr says why and what to do); 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kbase/cts/coordinator/app"
	"github.com/kbase/cts/coordinator/devmode"
	"github.com/kbase/cts/coordinator/devstack"
)

// defaultListen is the coordinator's address unless CTS_DEV_LISTEN or --listen say otherwise.
const defaultListen = "127.0.0.1:5000"

func main() {
	devstack.Main() // the embedded S3 runs as a child process of this binary
	os.Exit(run(os.Args[1:], os.Stderr, os.Getenv))
}

// usageError is a command-line mistake (exit code 2).
type usageError struct{ error }

func run(args []string, stderr io.Writer, getenv func(string) string) int {
	err := runDev(args, stderr, getenv)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "cts-dev:", oneLine(err), "(cts-dev -h for help)")
		return 2
	}
	fmt.Fprintln(stderr, "cts-dev:", oneLine(err))
	return 1
}

// oneLine joins the lines of a multi-line error (errors.Join) with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// runDev starts the site and runs it until a signal.
func runDev(argv []string, stderr io.Writer, getenv func(string) string) error {
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	listenDefault := defaultListen
	if v := getenv("CTS_DEV_LISTEN"); v != "" {
		listenDefault = v
	}
	fs := flag.NewFlagSet("cts-dev", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", ".dev", "state folder; the env file is written to DIR/env")
	listen := fs.String("listen", listenDefault, "coordinator address (default: $CTS_DEV_LISTEN, else "+defaultListen+"); port 0 picks a free one")
	agent := fs.String("agent", filepath.Join(bin, "cts-agent"), "cts-agent binary")
	launcher := fs.String("launcher", filepath.Join(bin, "cts-launcher-local"), "cts-launcher-local plugin binary")
	demoTool := fs.String("demo-tool", filepath.Join(bin, "cts-demo-tool"), "the demo image's program (static)")
	seqkit := fs.String("seqkit", filepath.Join(bin, "cts-demo-seqkit"), "the seqkit stand-in image's program (static)")
	noSamples := fs.Bool("no-samples", false, "do not add the sample images and inputs to a new site")
	verbose := fs.Bool("v", false, "debug logging")
	fs.Usage = func() {}
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, "usage: cts-dev [--dir DIR] [--listen ADDR] [flags]\n\nRuns a whole CTS site on this machine (root, runc) until Ctrl-C.\n\nflags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := devmode.Options{Dir: *dir, Listen: *listen, AgentPath: *agent, LauncherPath: *launcher, Log: log, ClientDir: bin,
		Configure: func(cfg *app.Config) {
			// As a site with per-user folders: the samples are for everyone to read, and
			// each user writes below cts-data/<user>/.
			cfg.Access.ReadPaths = []string{devmode.SamplesPrefix}
			cfg.Access.WritePaths = []string{devmode.DataBucket + "/{user}/"}
		}}
	if !*noSamples {
		opts.Samples = &devmode.Samples{DemoTool: *demoTool, SeqKit: *seqkit}
	}
	env, err := devmode.Start(ctx, opts)
	if err != nil {
		return err
	}
	envFile := filepath.Join(env.Dir, "env")
	if err := env.WriteEnvFile(envFile); err != nil {
		return errors.Join(err, env.Close())
	}
	how := "new site"
	if env.Restarted {
		how = "restarted: its jobs, images, reference data, S3 objects and tokens are kept"
	}
	fmt.Fprintf(stderr, "CTS dev site %q running at %s (%s)\nenvironment: source %s\n", devmode.SiteName, env.URL, how, envFile)
	fmt.Fprintf(stderr, "agents run containers with the %s runtime (set CTS_AGENT_RUNTIME=oci|runc|crun|docker|auto to choose; oci is crun where it can run, else runc)\n", env.AgentRuntime)
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
