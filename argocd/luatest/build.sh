#!/usr/bin/env bash
# Builds luatest (an Argo CD health-check evaluator on gopher-lua, see main.go) once into a cache
# outside the clone and prints the binary's path on stdout. Re-running is a no-op when the cache
# holds it. The cache key is the pinned gopher-lua version plus a hash of this folder's sources,
# so a change to main.go, go.mod or go.sum builds a new binary next to the old one.
#   Usage: argocd/luatest/build.sh          (WALWARDEN_CACHE overrides ~/.cache/walwarden)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WALWARDEN_CACHE:-$HOME/.cache/walwarden}
version=$(awk '$1 == "github.com/yuin/gopher-lua" {print $2}' "$here/go.mod")
[ -n "$version" ] || { echo "build.sh: no github.com/yuin/gopher-lua version in $here/go.mod" >&2; exit 1; }
sources=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)
dest=$cache/bin/luatest-$version-$sources
if [ -x "$dest/luatest" ]; then
  echo "$dest/luatest"
  exit 0
fi
echo "[luatest] building with gopher-lua $version into $dest" >&2
tmp=$dest.tmp.$$
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# go.sum is committed and checked: -mod=readonly (the default) refuses anything it does not list.
(cd "$here" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
  go build -trimpath -ldflags "-s -w" -o "$tmp/luatest" .)
# Rename into place, so a build cut short never looks finished; a parallel build that won the
# race leaves its binary, which is the same.
mv -T "$tmp" "$dest" 2>/dev/null || [ -x "$dest/luatest" ]
echo "$dest/luatest"
