// Command cts-load is the load benchmark (`make load`): it starts the embedded stack, one or
// more coordinator processes and simulated agents speaking the real agent protocol, runs real
// jobs through them, and writes load-report.json. See package test/load and
// docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kbase/cts/test/load"
)

func main() {
	load.Main()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cts-load:", err)
		os.Exit(1)
	}
}

func run() error {
	var o load.Options
	out := flag.String("out", "load-report.json", "where to write the report")
	flag.IntVar(&o.Agents, "agents", 10000, "agents (containers) connected at once at the peak")
	flag.IntVar(&o.JobContainers, "job-containers", 100, "containers per job")
	flag.IntVar(&o.SubmitConcurrency, "submit-concurrency", 8, "POST /jobs in flight at once")
	flag.IntVar(&o.CancelJobs, "cancel-jobs", 2, "jobs canceled at the peak (the cancel push is measured; -1 for none)")
	flag.DurationVar(&o.Hold, "hold", time.Minute, "how long every agent stays connected at the peak")
	flag.DurationVar(&o.Release, "release", time.Minute, "spread of the containers' ends after the hold")
	flag.DurationVar(&o.RampTimeout, "ramp-timeout", 10*time.Minute, "bound on connecting every agent")
	flag.DurationVar(&o.LogInterval, "log-interval", 10*time.Second, "live log lines every this long per running container")
	flag.DurationVar(&o.Soak, "soak", 0, "run the mixed soak for this long instead (e.g. 10m)")
	flag.IntVar(&o.Replicas, "replicas", 1, "coordinator processes, behind a small reverse proxy when more than one")
	flag.StringVar(&o.Dir, "dir", "", "run folder (default: temporary, removed unless -keep)")
	flag.BoolVar(&o.KeepDir, "keep", false, "keep the run folder (logs, configuration)")
	flag.StringVar(&o.Bin, "bin", "", "folder with cts-coordinator and cts-launcher-sim (default: built)")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	flag.Parse()
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := load.Run(ctx, o)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s\n", b)
	fmt.Fprintf(os.Stderr, "report written to %s\n", *out)
	return nil
}
