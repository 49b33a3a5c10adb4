# shellcheck shell=bash
# Shared by the scripts in docker/ (sourced, not run).
#   WALWARDEN_CACHE  the engine's data root, logs and debootstrap's package cache live under it
#                    (default ~/.cache/walwarden, like the local stack's binaries)
#   DOCKER           the docker client to use; default: Debian's /usr/bin/docker, installed with
#                    the engine start-engine.sh starts (a newer client without the buildx plugin
#                    cannot build with BuildKit), else the first `docker` on PATH

# shellcheck disable=SC2034  # used by the scripts that source this file
cache=${WALWARDEN_CACHE:-$HOME/.cache/walwarden}
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Commands that need root: through sudo when we are not root.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt-get install, keeping the packages' services from starting on the way (Debian's docker.io
# would otherwise start dockerd with its defaults: a bridge and iptables rules).
apt_install() {
  local missing=() package guard=
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "apt-get install ${missing[*]}"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
    as_root chmod 755 "$guard"
  fi
  local status=0
  as_root apt-get update -qq && \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || status=$?
  [ -z "$guard" ] || as_root rm -f "$guard"
  [ "$status" -eq 0 ] || die "apt-get install ${missing[*]} failed (exit $status)"
}

# True when a Docker engine answers the client.
engine_answers() {
  timeout 20 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# The package version (walwarden.__version__), which is the image's tag.
walwarden_version() {
  sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$1/operator/walwarden/__init__.py"
}
