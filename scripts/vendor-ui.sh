#!/usr/bin/env bash
# Reproduces the dashboard's vendored JavaScript (coordinator/internal/ui/static/vendor) from the
# npm registry: Preact (the view library), its hooks, and htm (tagged templates instead of a JSX
# build step). Each package is pinned by version and by the registry's sha512 integrity; the
# tarball is checked against that before anything is taken from it. The modules are copied as
# published, except that the bare import "preact" becomes the relative "./preact.mjs" (no import
# map, which the page's Content-Security-Policy would refuse as an inline script) and the
# source-map comment goes (the maps are not served). SHA256SUMS records the result; a Go test
# (coordinator/internal/ui) fails when a committed file differs from it.
#
# Needs npm, tar, sha256sum, openssl. `go build` never runs this: the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=coordinator/internal/ui/static/vendor

# name version sha512-integrity
pins=(
  "preact 11.2.0 sha512-/HfHI/7N84e6GrWBJ3J280z3mLaRJiDcSvj/A+y/4AbLnND/1UlGHe1sR6oYuTGwId0nP7dqDU9OnLxMPZ7xBg=="
  "htm 3.1.1 sha512-983Vyg8NwUE7JkZ6NmOqpCZ+sh1bKv2iYTlUkzlWmA5JD2acKoxd4KVxbMmxX/85mtfdnDmTFoNKcg5DGAvxNQ=="
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for pin in "${pins[@]}"; do
  read -r name version integrity <<<"$pin"
  (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
  tgz="$work/$name-$version.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [[ "$got" != "$integrity" ]]; then
    echo "vendor-ui: $name@$version: integrity $got, want $integrity" >&2
    exit 1
  fi
  mkdir -p "$work/$name"
  tar -xzf "$tgz" -C "$work/$name"
done

strip_map() { sed -e '/^\/\/# sourceMappingURL=/d'; }
mkdir -p "$out"
strip_map <"$work/preact/package/dist/preact.mjs" >"$out/preact.mjs"
strip_map <"$work/preact/package/hooks/dist/hooks.mjs" | sed -e 's/from"preact"/from"\.\/preact.mjs"/g' >"$out/hooks.mjs"
strip_map <"$work/htm/package/dist/htm.mjs" >"$out/htm.mjs"
cp "$work/preact/package/LICENSE" "$out/LICENSE.preact"
cp "$work/htm/package/LICENSE" "$out/LICENSE.htm"
if grep -q 'from"preact"\|from "preact"' "$out"/*.mjs; then
  echo "vendor-ui: a bare import of preact is left" >&2
  exit 1
fi

{
  echo "# Vendored by scripts/vendor-ui.sh from the npm registry:"
  for pin in "${pins[@]}"; do echo "# $pin"; done
  (cd "$out" && sha256sum htm.mjs hooks.mjs preact.mjs LICENSE.htm LICENSE.preact)
} >"$out/SHA256SUMS"
echo "vendor-ui: wrote $out"
cat "$out/SHA256SUMS"
