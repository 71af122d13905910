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
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

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
	flag.DurationVar(&o.DrainTimeout, "drain-timeout", 0, "bound on every job ending after the release (default 5m, or 40ms per agent when more)")
	flag.DurationVar(&o.LogInterval, "log-interval", 10*time.Second, "live log lines every this long per running container")
	flag.DurationVar(&o.Soak, "soak", 0, "run the mixed soak for this long instead (e.g. 10m)")
	flag.IntVar(&o.Replicas, "replicas", 1, "coordinator processes, behind a small reverse proxy when more than one")
	flag.StringVar(&o.Dir, "dir", "", "run folder (default: temporary, removed unless -keep; SIGUSR1 writes a snapshot of a stalled run into it)")
	flag.BoolVar(&o.KeepDir, "keep", false, "keep the run folder (logs, configuration)")
	flag.StringVar(&o.Profile, "profile", "", "folder for CPU and heap profiles of the coordinator and the stack, and MongoDB commands per event in the report")
	flag.StringVar(&o.Bin, "bin", "", "folder with cts-coordinator and cts-launcher-sim (default: built)")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	var sets [][2]string
	flag.Func("set", "a coordinator configuration key, dotted, and its YAML value (agents.store_work=32); repeatable", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", v)
		}
		sets = append(sets, [2]string{k, val})
		return nil
	})
	flag.Parse()
	if len(sets) > 0 {
		o.Configure = func(cfg map[string]any) {
			for _, kv := range sets {
				setKey(cfg, strings.Split(kv[0], "."), kv[1])
			}
		}
	}
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGUSR1: a snapshot of the run (goroutines of every process, file descriptors, the
	// MongoDB proxy's command in flight) in the run folder, for a run that stalls.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	snap := make(chan struct{}, 1)
	go func() {
		for range usr1 {
			select {
			case snap <- struct{}{}:
			default:
			}
		}
	}()
	o.Snapshot = snap
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

// setKey sets the key at path in cfg (making the maps on the way) to the YAML value val.
func setKey(cfg map[string]any, path []string, val string) {
	for _, k := range path[:len(path)-1] {
		next, ok := cfg[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cfg[k] = next
		}
		cfg = next
	}
	var v any
	if err := yaml.Unmarshal([]byte(val), &v); err != nil {
		v = val
	}
	cfg[path[len(path)-1]] = v
}
