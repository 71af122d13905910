// Package dockertest gates the tests that need a real Docker engine (the agent's docker
// runtime, the end-to-end runtime matrix). It only finds the engine: it never starts or
// stops one (scripts/install-deps.sh starts one when none answers).
package dockertest

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Socket is the engine's socket the tests use.
const Socket = "/var/run/docker.sock"

// EnvRequire, set to 1 (as `make test` does), turns a missing engine into a test failure
// instead of a skip: CI installs and starts one, so its absence there is a broken machine.
const EnvRequire = "CTS_REQUIRE_DOCKER"

// Require returns the engine's socket, or skips t (fails it under EnvRequire=1) when no
// engine answers a ping on it, or when the test does not run as root (bind mounts of the
// test's folders and the engine's socket need root).
func Require(t testing.TB) string {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "the Docker tests need root"
	default:
		if err := Ping(context.Background(), Socket); err != nil {
			why = "no Docker engine answers on " + Socket + " (scripts/install-deps.sh starts one): " + err.Error()
		}
	}
	if why == "" {
		return Socket
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s, and %s=1 requires it", why, EnvRequire)
	}
	t.Skip(why)
	return ""
}

// Ping sends GET /_ping to the engine on socket.
func Ping(ctx context.Context, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.Status}
	}
	return nil
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "ping answered " + e.status }

// ContainerNames lists the names of the engine's containers (running or not) that start with
// prefix.
func ContainerNames(ctx context.Context, socket, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/json?all=1", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []struct{ Names []string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	var out []string
	for _, c := range list {
		for _, n := range c.Names {
			if n = strings.TrimPrefix(n, "/"); strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
	}
	return out, nil
}
