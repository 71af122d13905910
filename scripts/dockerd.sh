#!/usr/bin/env bash
# Starts (or stops) the Docker engine the tests use, when no engine answers on the default
# socket. `start` is idempotent: it does nothing when an engine already answers, whoever
# started it. `stop` stops only the engine this script started (its pidfile), never another.
#
#   scripts/dockerd.sh start|stop|status
set -euo pipefail
state=/run/cts-dockerd
pidfile=$state/dockerd.pid
log=$state/dockerd.log
sock=/var/run/docker.sock

answers() {
  # GET /_ping on the socket (curl when present, else the docker CLI).
  [[ -S $sock ]] || return 1
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 5 --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1
  else
    timeout 5 docker version >/dev/null 2>&1
  fi
}

case "${1:-}" in
start)
  if answers; then
    exit 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "dockerd: no Docker engine answers on $sock; starting one needs root" >&2
    exit 1
  fi
  command -v dockerd >/dev/null 2>&1 || { echo "dockerd: not installed (apt-get install -y docker.io)" >&2; exit 1; }
  mkdir -p "$state"
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "dockerd: started earlier (pid $(cat "$pidfile")) but not answering yet; waiting" >&2
  else
    echo "dockerd: starting (log $log)"
    # setsid: the engine outlives this script and the make run that called it.
    setsid dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
      --pidfile "$pidfile" >>"$log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 120); do
    answers && exit 0
    sleep 0.5
  done
  echo "dockerd: the engine did not answer on $sock within 60 s; see $log:" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
  ;;
stop)
  if [[ -f $pidfile ]]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    rm -f "$pidfile"
  fi
  ;;
status)
  if answers; then echo "dockerd: answering on $sock"; else echo "dockerd: not answering on $sock"; exit 1; fi
  ;;
*)
  echo "usage: $0 start|stop|status" >&2
  exit 2
  ;;
esac
