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

// newRuntime builds the configured container runtime: "oci", "docker", or "auto" (docker
// when its socket answers a ping within 2 s, else oci). It returns the runtime and its name.
func newRuntime(ctx context.Context, cfg config.Config, log *slog.Logger) (container.Runtime, string, error) {
	kind := cfg.Runtime
	if kind == "auto" {
		kind = "oci"
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := container.NewDocker(container.DockerConfig{Socket: cfg.DockerSocket}).Ping(pctx)
		cancel()
		if err == nil {
			kind = "docker"
		}
	}
	switch kind {
	case "docker":
		return container.NewDocker(container.DockerConfig{Socket: cfg.DockerSocket, Logger: log}), kind, nil
	case "oci":
		rt, err := container.NewOCI(container.OCIConfig{
			Root: cfg.RuncRoot, CacheDir: cfg.CacheDir, BundleDir: filepath.Join(cfg.WorkDir, "bundles"),
			RuncPath: cfg.RuncPath, Logger: log,
		})
		return rt, kind, err
	}
	return nil, "", fmt.Errorf("unknown runtime %q", kind)
}
