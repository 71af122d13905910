package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/kbase/cts/agent/internal/config"
	"github.com/kbase/cts/agent/internal/container"
)

// autoPing bounds auto's probe of the Docker engine.
const autoPing = 2 * time.Second

// resolveRuntime turns "auto" into what it picks: "docker" when the engine's socket answers a
// ping within 2 s, else "oci". It returns the name and why.
func resolveRuntime(ctx context.Context, nc config.Node) (kind, why string) {
	if nc.Runtime != "auto" {
		return nc.Runtime, "CTS_AGENT_RUNTIME=" + nc.Runtime
	}
	pctx, cancel := context.WithTimeout(ctx, autoPing)
	defer cancel()
	if _, err := container.NewDocker(container.DockerConfig{Socket: nc.DockerSocket}).Ping(pctx); err == nil {
		return "docker", "auto: the Docker engine at " + nc.DockerSocket + " answered"
	}
	return "oci", "auto: no Docker engine answered at " + nc.DockerSocket
}

// newRuntime builds the configured container runtime (see resolveRuntime); workDir holds the
// oci runtime's bundles. It returns the runtime and its name.
func newRuntime(ctx context.Context, nc config.Node, workDir string, log *slog.Logger) (container.Runtime, string, error) {
	kind, _ := resolveRuntime(ctx, nc)
	switch kind {
	case "docker":
		return container.NewDocker(container.DockerConfig{Socket: nc.DockerSocket, StateDir: nc.NodeDir, Logger: log}), kind, nil
	case "oci":
		rt, err := newOCI(nc, workDir, log)
		return rt, kind, err
	}
	return nil, "", fmt.Errorf("unknown runtime %q", kind)
}

// newOCI builds the oci runtime; its bundles go to <workDir>/bundles ("" for a reaper, which
// finds bundles through runc's state).
func newOCI(nc config.Node, workDir string, log *slog.Logger) (*container.OCI, error) {
	bundles := filepath.Join(nc.NodeDir, "reaper-bundles")
	if workDir != "" {
		bundles = filepath.Join(workDir, "bundles")
	}
	return container.NewOCI(container.OCIConfig{
		Root: nc.RuncRoot, CacheDir: nc.CacheDir, BundleDir: bundles, RuncPath: nc.RuncPath, Logger: log,
	})
}
