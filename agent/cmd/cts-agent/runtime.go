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

// ociEngine is the engine of the oci runtime for kind "oci", "runc" or "crun": "oci" takes crun
// when it is found and can make cgroups on this node, else runc (container.PreferredEngine).
// It returns the engine and why.
func ociEngine(nc config.Node, kind string) (engine, why string) {
	if kind == "oci" {
		return container.PreferredEngine(nc.CrunPath)
	}
	return kind, "CTS_AGENT_RUNTIME=" + kind
}

// newRuntime builds the configured container runtime (see resolveRuntime); workDir holds the
// oci runtime's bundles. It returns the runtime and its name: "docker", or "oci (runc)" or
// "oci (crun)".
func newRuntime(ctx context.Context, nc config.Node, workDir string, log *slog.Logger) (container.Runtime, string, error) {
	kind, _ := resolveRuntime(ctx, nc)
	switch {
	case kind == "docker":
		return container.NewDocker(container.DockerConfig{Socket: nc.DockerSocket, StateDir: nc.NodeDir, Logger: log}), kind, nil
	case config.OCI(kind):
		engine, why := ociEngine(nc, kind)
		rt, err := newOCI(nc, engine, workDir, log)
		if err == nil {
			log.Debug("container engine", "engine", engine, "why", why)
		}
		return rt, "oci (" + engine + ")", err
	}
	return nil, "", fmt.Errorf("unknown runtime %q", kind)
}

// newOCI builds the oci runtime with engine (runc or crun); its bundles go to
// <workDir>/bundles ("" for a reaper, which finds bundles through the engines' state).
func newOCI(nc config.Node, engine, workDir string, log *slog.Logger) (*container.OCI, error) {
	bundles := filepath.Join(nc.NodeDir, "reaper-bundles")
	if workDir != "" {
		bundles = filepath.Join(workDir, "bundles")
	}
	return container.NewOCI(container.OCIConfig{
		Root: nc.RuncRoot, CacheDir: nc.CacheDir, BundleDir: bundles, Engine: engine,
		RuncPath: nc.RuncPath, CrunPath: nc.CrunPath, Logger: log,
	})
}
