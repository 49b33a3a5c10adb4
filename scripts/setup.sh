#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh machine, idempotently:
#   Debian's PostgreSQL server, redis-server and git (for Argo CD), a Python virtualenv (.venv)
#   with walwarden and its test extras, and the local stack's Go-built binaries (cached in
#   ~/.cache/walwarden, keyed by version).
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run on its own.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

step() { printf '\n==> %s\n' "$*" >&2; }

# redis-server and git for Argo CD (devstack/argocd.py); iproute2 for its network namespace.
apt_packages=(postgresql postgresql-client util-linux redis-server git iproute2)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "Go (>= 1.26) is needed to build the local stack's binaries" >&2; exit 1; }

venv=$repo/.venv
if [ ! -x "$venv/bin/python" ]; then
  step "python venv in .venv"
  python3 -m venv "$venv"
fi
stamp=$venv/.installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)
if [ ! -e "$stamp" ]; then
  step "pip install -e .[test]"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[test]"
  touch "$stamp"
fi

step "local stack binaries (built once from Go modules; cached in ${WALWARDEN_CACHE:-~/.cache/walwarden})"
bash "$repo/devstack/build-binaries.sh"
export PATH=$venv/bin:$PATH
