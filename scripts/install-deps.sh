#!/usr/bin/env bash
# Installs what building and testing CTS-Go needs on a fresh Debian machine: runc (containers),
# GNU time (peak-RSS measurement), and the Go modules. Idempotent; quiet when everything is there.
set -euo pipefail
need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
[[ -x /usr/bin/time ]] || need+=(time) # GNU time: the agent's peak-RSS test
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
go mod download
