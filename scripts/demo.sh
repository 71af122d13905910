#!/usr/bin/env bash
# The demo: run the demo client (build and register an image, upload inputs, submit a
# 2-container job, wait, verify every output's CRC64/NVME) against the dev site in .dev.
# When `make dev` is running, the demo uses that site; otherwise it starts cts-dev on .dev in
# the background and stops it afterwards. Either way the site keeps the demo's image, inputs
# and job: `make dev` shows them (`make clean` resets). Exits with the demo's status.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.dev
mkdir -p "$dir"
dev=
cleanup() {
  if [[ -n $dev ]]; then
    kill -TERM "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
  fi
}
trap cleanup EXIT
running() {
  [[ -f $dir/env ]] && (source "$dir/env" && curl -fsS -o /dev/null "$CTS_URL/" 2>/dev/null)
}
if running; then
  echo "demo: using the dev site already running from $dir"
else
  rm -f "$dir/env"
  bin/cts-dev --dir "$dir" --listen 127.0.0.1:0 >"$dir/demo-dev.log" 2>&1 &
  dev=$!
  for _ in $(seq 1 1200); do
    [[ -f $dir/env ]] && break
    if ! kill -0 "$dev" 2>/dev/null; then
      echo "demo: cts-dev exited early; its log:" >&2
      cat "$dir/demo-dev.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  [[ -f $dir/env ]] || { echo "demo: cts-dev did not start in 120 s; log: $dir/demo-dev.log" >&2; exit 1; }
fi
# shellcheck disable=SC1091
source "$dir/env"
start=$(date +%s%N)
if bin/cts-demo --tool bin/cts-demo-tool; then
  status=0
else
  status=$?
  echo "demo: failed; the dev log is $dir/demo-dev.log" >&2
fi
end=$(date +%s%N)
echo "demo wall time: $(( (end - start) / 1000000 )) ms"
exit $status
