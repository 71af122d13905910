#!/usr/bin/env bash
# The demo: start `cts dev` (embedded stack + coordinator + local launcher), run the demo
# client against it (build and register an image, upload inputs, submit a 2-container job,
# wait, verify every output's CRC64/NVME), then stop everything. Exits with the demo's status.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.dev/demo
rm -rf "$dir"
mkdir -p "$dir"
bin/cts dev --dir "$dir" --listen 127.0.0.1:0 >"$dir/dev.log" 2>&1 &
dev=$!
cleanup() {
  kill -TERM "$dev" 2>/dev/null || true
  wait "$dev" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  [[ -f "$dir/env" ]] && break
  if ! kill -0 "$dev" 2>/dev/null; then
    echo "demo: cts dev exited early; its log:" >&2
    cat "$dir/dev.log" >&2
    exit 1
  fi
  sleep 0.1
done
[[ -f "$dir/env" ]] || { echo "demo: cts dev did not start in 60 s; log: $dir/dev.log" >&2; exit 1; }
# shellcheck disable=SC1091
source "$dir/env"
start=$(date +%s%N)
if bin/cts-demo --tool bin/cts-demo-tool; then
  status=0
else
  status=$?
  echo "demo: failed; the dev log is $dir/dev.log" >&2
fi
end=$(date +%s%N)
echo "demo wall time: $(( (end - start) / 1000000 )) ms"
exit $status
