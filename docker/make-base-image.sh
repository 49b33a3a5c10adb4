#!/usr/bin/env bash
# Makes a Debian bookworm base image from Debian's packages, for building the Dockerfile where no
# container registry is reachable (the default base, the official python image, cannot be pulled):
#
#   debootstrap --variant=minbase bookworm <dir> <this machine's Debian mirror>
#   tar -C <dir> -c . | docker import - walwarden-base:bookworm
#
# The packages come from the apt mirror this machine uses (read from /etc/apt/sources.list and
# /etc/apt/sources.list.d/; DEBIAN_MIRROR overrides it), and the image's own apt sources name the
# same mirror (bookworm, bookworm-updates, and the security archive when this machine uses one).
# The image has no Python: the Dockerfile installs Debian's python3.11 on such a base.
#
#   bash docker/make-base-image.sh [IMAGE]     # default walwarden-base:bookworm
#
# Cached: nothing is done when the image exists (WALWARDEN_REBUILD_BASE=1 makes it again);
# debootstrap's downloaded packages are kept in $WALWARDEN_CACHE/debootstrap. Needs a running
# engine (docker/start-engine.sh) and root (or sudo) for debootstrap.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/common.sh
source "$here/common.sh"

image=${1:-walwarden-base:bookworm}
suite=bookworm

if [ -z "${WALWARDEN_REBUILD_BASE:-}" ] && "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
  step "base image $image exists (cached)"
  exit 0
fi
engine_answers || die "no Docker engine answers: run docker/start-engine.sh first"

# "URI SUITE" for every enabled binary source of this machine, one-line and deb822 formats alike.
apt_sources() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && files+=("$file")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk '
    function flush(   n, u, s, i, j) {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") {
        n = split(uris, u, /[ \t]+/); split(suites, s, /[ \t]+/)
        for (i = 1; i <= n; i++) for (j in s) if (u[i] != "" && s[j] != "") print u[i], s[j]
      }
      types = uris = suites = enabled = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    /^deb[ \t]/ {
      i = 2
      if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      print $i, $(i + 1); next
    }
    /^Types:/   { types = $0;  sub(/^Types:[ \t]*/, "", types) }
    /^URIs:/    { uris = $0;   sub(/^URIs:[ \t]*/, "", uris) }
    /^Suites:/  { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
    /^Enabled:/ { enabled = $2 }
    /^[ \t]*$/  { flush() }
    END { flush() }
  ' "${files[@]}"
}

sources=$(apt_sources)
mirror=${DEBIAN_MIRROR:-$(awk -v s="$suite" '$2 == s { print $1; exit }' <<<"$sources")}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=$(awk -v s="$suite-security" '$2 == s { print $1; exit }' <<<"$sources")
updates=$(awk -v s="$suite-updates" '$2 == s { print $1; exit }' <<<"$sources")

apt_install debootstrap
mkdir -p "$cache/debootstrap"
rootfs=$(mktemp -d "$cache/base-rootfs.XXXXXX")
cleanup() { as_root rm -rf --one-file-system "$rootfs"; }
trap cleanup EXIT

step "debootstrap --variant=minbase $suite from $mirror (the packages are cached in $cache/debootstrap)"
if ! as_root debootstrap --variant=minbase --cache-dir="$cache/debootstrap" "$suite" "$rootfs" "$mirror" \
    >"$cache/debootstrap.log" 2>&1; then
  tail -n 20 "$cache/debootstrap.log" >&2
  die "debootstrap failed; its log: $cache/debootstrap.log"
fi

# The image's apt sources: the same mirror, with updates and security where this machine has them.
{
  printf 'Types: deb\nURIs: %s\nSuites: %s%s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$suite" "${updates:+ $suite-updates}"
  [ -z "$security" ] || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "${security%/}" "$suite"
} | as_root tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null
as_root rm -f "$rootfs/etc/apt/sources.list"
# Like Debian's official images (their docker-clean): apt keeps no packages or caches in the
# layers built on this base; and no recommended packages.
as_root tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  | as_root tee "$rootfs/etc/apt/apt.conf.d/90walwarden-no-recommends" >/dev/null
as_root sh -c "rm -rf '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/log/*.log \
  '$rootfs'/var/cache/debconf/*-old '$rootfs'/var/lib/dpkg/*-old"

step "docker import $image"
as_root tar --numeric-owner -C "$rootfs" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $suite $mirror" \
  - "$image" >/dev/null
step "made $image ($("$DOCKER" image inspect --format '{{.Size}}' "$image") bytes)"
