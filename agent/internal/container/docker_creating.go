package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// An agent killed while the engine creates its container cannot remove it: the engine may
// finish the create after the agent, its supervisor's reap and everything else watching the
// agent are gone (the engine does not abandon a create whose client went away). So the
// docker runtime records each create before sending it, as a file
// <StateDir>/docker-creating/<container name> holding its owner (DockerLabelOwner), and
// removes the record once the engine answered. A reap that finds a record whose owner is dead
// waits for that container to appear (up to CreateWait), so that the label scan that follows
// removes it, then drops the record.

// CreateWait bounds how long a reap waits for a container whose create was in flight when its
// agent died (the create may also never have reached the engine: the wait then runs out).
const CreateWait = time.Minute

// creatingDir is where the in-flight creates are recorded; "" without a StateDir.
func (d *Docker) creatingDir() string {
	if d.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(d.cfg.StateDir, "docker-creating")
}

// recordCreate records the create of container name by this agent; the returned function
// removes the record. Without a StateDir nothing is recorded. A record that cannot be written
// is logged: the create goes on (the next agent's reap on the node still finds the container
// by its label).
func (d *Docker) recordCreate(name string) func() {
	dir := d.creatingDir()
	if dir == "" {
		return func() {}
	}
	path := filepath.Join(dir, name)
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, []byte(d.owner+"\n"), 0o644)
	}
	if err != nil {
		d.log.Warn("record an in-flight container create", "container", name, "error", err)
		return func() {}
	}
	return func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("remove the record of a container create", "container", name, "error", err)
		}
	}
}

// settleCreates handles the in-flight creates of dead agents before a reap's label scan: with
// apply it waits (up to CreateWait, all records together) until each such container exists
// or the wait runs out, then drops the records; without apply it lists them.
func (d *Docker) settleCreates(ctx context.Context, apply bool) []Leftover {
	dir := d.creatingDir()
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var waiting []string
	var left []Leftover
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		owner := strings.TrimSpace(string(b))
		if err != nil || ownerAlive(owner) {
			continue
		}
		if !apply {
			left = append(left, Leftover{Kind: "create", ID: e.Name(),
				Detail: fmt.Sprintf("a container create in flight when its agent %s died; --yes waits up to %s for it and removes it", owner, CreateWait)})
			continue
		}
		waiting = append(waiting, e.Name())
	}
	if len(waiting) == 0 {
		return left
	}
	d.log.Warn("waiting for containers whose create was in flight when their agent died", "containers", waiting, "up_to", CreateWait)
	deadline := time.Now().Add(CreateWait)
	for len(waiting) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var still []string
		for _, name := range waiting {
			if d.Known(ctx, name) {
				d.log.Info("the in-flight create finished", "container", name)
				_ = os.Remove(filepath.Join(dir, name))
				continue
			}
			still = append(still, name)
		}
		waiting = still
		if len(waiting) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	for _, name := range waiting {
		if ctx.Err() == nil { // the wait ran out: the create never reached the engine
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
	return left
}
