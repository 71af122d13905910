#!/usr/bin/env bash
# Installs what building and testing CTS-Go needs on a fresh Debian machine: runc and crun
# (containers; crun's cgroups made acceptable to it by scripts/crun-cgroups.sh),
# GNU time (peak-RSS measurement), chromium and firefox-esr (the dashboard's browser tests),
# Redocly's OpenAPI linter, and the Go modules.
# Idempotent; quiet when everything is there.
set -euo pipefail
need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
# crun: the agent's oci runtime runs it where it can (docs/agent.md, "Container runtimes"), and
# the container tests run under both (make test sets CTS_REQUIRE_CRUN=1).
command -v crun >/dev/null 2>&1 || need+=(crun)
[[ -x /usr/bin/time ]] || need+=(time) # GNU time: the agent's peak-RSS test
# Docker engine: the agent's `docker` runtime is tested against a real engine (test/e2e runs
# its container tests under both runtimes).
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
# Debian's chromium: the dashboard's browser tests (test/ui) drive it over the DevTools
# protocol (chromedp), so no chromium-driver is needed.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# curl and jq: the user documentation's shell blocks call them, and test/docs runs those blocks
# verbatim on a dev site (a clean Debian machine has neither).
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
# Debian's firefox-esr: the dashboard's browser tests (test/ui) also drive Firefox, over
# WebDriver BiDi (its own protocol), so no geckodriver is needed.
command -v firefox-esr >/dev/null 2>&1 || need+=(firefox-esr)
# node and npm: the OpenAPI document is checked with Redocly's linter (installed below).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# gcc: the race detector (make race) needs cgo.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need ${need[*]}; run as root or install them yourself" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Docker engine: started here when none answers (there is no systemd on CI machines). Flags:
# no iptables or bridge (containers run with --network none or host), overlay2. It keeps its
# own pidfile and log under /run/cts-dockerd and is left running for the tests; an engine that
# already answers (started by systemd or by hand) is used as it is and never stopped.
# Redocly's OpenAPI linter, pinned (1.x runs on Debian's node 18): the API's tests lint the
# document it serves (coordinator/internal/api TestOpenAPILint).
redocly_version=1.34.20
if [[ $(redocly --version 2>/dev/null) != "$redocly_version" ]]; then
  echo "install-deps: installing @redocly/cli@$redocly_version"
  npm install -g --no-audit --no-fund --loglevel=error "@redocly/cli@$redocly_version" >/dev/null
fi
scripts/dockerd.sh start
# crun refuses a hybrid cgroup layout whose v2 hierarchy holds controllers (this project's
# machines have hugetlb there): move them to v1 hierarchies.
if [[ $(id -u) -eq 0 ]]; then
  scripts/crun-cgroups.sh || echo "install-deps: crun cannot run containers here; the crun tests fail under make test (CTS_REQUIRE_CRUN=1)" >&2
fi
go mod download
# staticcheck, pinned (make lint runs it): built from the Go module proxy into GOPATH/bin.
staticcheck_version=0.8.2
if ! "$(go env GOPATH)/bin/staticcheck" -version 2>/dev/null | grep -q "($staticcheck_version)"; then
  echo "install-deps: installing staticcheck v$staticcheck_version"
  GOBIN="$(go env GOPATH)/bin" go install "honnef.co/go/tools/cmd/staticcheck@v$staticcheck_version"
fi
