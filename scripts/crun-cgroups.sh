#!/usr/bin/env bash
# Lets crun make cgroups on a node whose cgroups are a hybrid layout (cgroup v1 hierarchies,
# and the v2 hierarchy at /sys/fs/cgroup/unified) where the v2 hierarchy holds controllers:
# crun 1.8 (Debian bookworm's) refuses such a node ("cgroups in hybrid mode not supported,
# drop all controllers from cgroupv2"). Each controller listed in the v2 hierarchy's
# cgroup.controllers is mounted as a cgroup v1 hierarchy of its own at /sys/fs/cgroup/<name>,
# which moves it out of the v2 hierarchy (the kernel binds a controller to one hierarchy; one
# that no v2 cgroup uses may move). On this project's machines that is hugetlb alone, which no
# CTS container limits. Nodes with cgroup v2 only, or v1 only, or a hybrid layout whose v2
# hierarchy holds no controller (systemd's hybrid mode) are left as they are.
#
# Idempotent; needs root when there is something to do. When it cannot, agents with
# CTS_AGENT_RUNTIME=oci run runc instead of crun (the agent checks the node itself), and it
# says so and exits 1.
set -euo pipefail
unified=/sys/fs/cgroup/unified
[[ -r $unified/cgroup.controllers ]] || exit 0
controllers=$(cat "$unified/cgroup.controllers")
[[ -n $controllers ]] || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "crun-cgroups: the cgroup v2 hierarchy at $unified holds controllers ($controllers), which crun refuses; run as root to move them to cgroup v1 hierarchies (agents use runc until then)" >&2
  exit 1
fi
for c in $controllers; do
  dir=/sys/fs/cgroup/$c
  if ! { mkdir -p "$dir" && mount -t cgroup -o "$c" cgroup "$dir"; }; then
    echo "crun-cgroups: could not mount the $c controller as a cgroup v1 hierarchy at $dir: crun cannot run here (agents use runc)" >&2
    exit 1
  fi
  echo "crun-cgroups: mounted the $c controller as a cgroup v1 hierarchy at $dir (crun refuses controllers in the v2 hierarchy of a hybrid layout)"
done
