// Command cts-agent runs one container of a CTS job on a worker node. A launcher (HTCondor,
// the local plugin) starts it with the CTS worker environment; admins can run it by hand.
//
//	cts-agent [run] [--job ID] [--container N]
//
// It reads the KBase token and the S3 secret from the files TOKEN_PATH and S3_SECRET_PATH
// name, connects to the coordinator, and reports every step. It exits 0 when the container's
// final state was reported (whatever the container did), 1 otherwise, 2 on bad configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/kbase/cts/agent/internal/config"
	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/agent/internal/runner"
	"github.com/kbase/cts/agent/internal/session"
	"github.com/kbase/cts/agent/internal/transfer"
	"github.com/kbase/cts/shared/protocol"
)

// Version is set at build time.
var Version = "0.1.0"

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cts-agent:", err)
	}
	os.Exit(code)
}

func run(argv []string) (int, error) {
	if len(argv) > 0 && argv[0] == "run" {
		argv = argv[1:]
	}
	fs := flag.NewFlagSet("cts-agent", flag.ContinueOnError)
	jobID := fs.String("job", "", "job ID (overrides JOB_ID)")
	cn := fs.Int("container", -1, "container number (overrides CONTAINER_NUMBER)")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil // the usage was printed
		}
		return 2, err
	}
	if *version {
		fmt.Println(Version)
		return 0, nil
	}
	lookup := func(k string) (string, bool) {
		switch {
		case k == "JOB_ID" && *jobID != "":
			return *jobID, true
		case k == "CONTAINER_NUMBER" && *cn >= 0:
			return strconv.Itoa(*cn), true
		}
		return os.LookupEnv(k)
	}
	cfg, err := config.FromEnv(lookup)
	if err != nil {
		return 2, fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level(cfg.LogLevel)})).
		With("job_id", cfg.JobID, "container", cfg.Container, "attempt", cfg.Attempt)

	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Warn("stop signal received: stopping the container gracefully", "signal", s.String())
		stop(runner.ErrShutdown)
	}()

	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return 1, fmt.Errorf("work directory: %w", err)
	}
	rt, err := container.NewOCI(container.OCIConfig{
		Root: cfg.RuncRoot, CacheDir: cfg.CacheDir, BundleDir: cfg.WorkDir + "/bundles", RuncPath: cfg.RuncPath,
	})
	if err != nil {
		return 1, fmt.Errorf("container runtime: %w", err)
	}
	s3c, err := transfer.NewS3Client(ctx, transfer.S3Config{
		Endpoint: cfg.S3URL, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3Secret, Region: cfg.S3Region, Insecure: cfg.S3Insecure,
	})
	if err != nil {
		return 1, fmt.Errorf("s3 client: %w", err)
	}
	sess, a, err := session.Dial(ctx, session.Config{
		ServiceURL: cfg.ServiceURL, Token: cfg.Token, Log: log,
		Hello: protocol.Hello{JobID: cfg.JobID, Container: cfg.Container, Attempt: cfg.Attempt, AgentVersion: Version},
	})
	if err != nil {
		return 1, fmt.Errorf("connect to the coordinator: %w", err)
	}
	defer sess.Close()
	log.Info("assignment received", "image", a.Image, "inputs", len(a.Inputs))
	r := runner.New(runner.Config{
		WorkDir: cfg.WorkDir, Attempt: cfg.Attempt, HostPath: cfg.HostPath, Network: cfg.Network,
	}, sess, transfer.New(s3c, transfer.Config{}), rt, sess.Cancels(), log)
	if err := r.Run(ctx, a); err != nil {
		if errors.Is(err, session.ErrRefused) {
			return 1, err
		}
		return 1, fmt.Errorf("run: %w", err)
	}
	return 0, nil
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
