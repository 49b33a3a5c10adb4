#!/usr/bin/env bash
# Builds the walwarden image on this machine, where no container registry is reachable:
#   1. starts a Docker engine unless one answers (docker/start-engine.sh),
#   2. makes the Debian base image from Debian's packages unless it exists (docker/make-base-image.sh),
#   3. docker build --network host --build-arg BASE_IMAGE=walwarden-base:bookworm -t walwarden:<version> .
#      with host networking, so that apt and pip reach their registries.
# Prints the image's reference (walwarden:<version>, the package's version) on stdout, alone.
#
#   bash docker/build-image.sh [extra docker build arguments]
#   BASE_IMAGE=python:3.11-slim-bookworm bash docker/build-image.sh   # the official base, where it can be pulled
#   PG_MAJOR=16 bash docker/build-image.sh                            # client tools of another major
#
# The base image and docker's build cache live in the engine's data root ($WALWARDEN_CACHE/docker),
# so a second build reuses every unchanged layer. IMAGE overrides the name (default walwarden).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=docker/common.sh
source "$here/common.sh"

version=$(walwarden_version "$repo")
[ -n "$version" ] || die "no __version__ in $repo/operator/walwarden/__init__.py"
image=${IMAGE:-walwarden}:$version
base=${BASE_IMAGE:-walwarden-base:bookworm}
pg_major=${PG_MAJOR:-15}

bash "$here/start-engine.sh" >/dev/null
if [ "$base" = walwarden-base:bookworm ]; then
  bash "$here/make-base-image.sh" "$base"
fi

# The Dockerfile needs BuildKit: built into Debian's 20.10 client (DOCKER_BUILDKIT=1), the buildx
# plugin with a client of 23 or newer.
client=$("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null) || die "$DOCKER version failed"
if [ "${client%%.*}" -ge 23 ] && ! "$DOCKER" buildx version >/dev/null 2>&1; then
  die "$DOCKER $client has no buildx plugin, so it cannot build with BuildKit; use Debian's client (DOCKER=/usr/bin/docker, from docker.io)"
fi
export DOCKER_BUILDKIT=1

# The CA bundle this machine trusts, for pip's downloads in the build (a build secret: it is in no
# layer). It matters behind a TLS-intercepting proxy, whose CA the base image does not know.
# BUILD_CA_BUNDLE= (empty) passes none.
ca_bundle=${BUILD_CA_BUNDLE-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
secret=()
[ -n "$ca_bundle" ] && [ -s "$ca_bundle" ] && secret=(--secret "id=ca-certificates,src=$ca_bundle")

step "docker build $image (base $base, PostgreSQL $pg_major client tools)"
"$DOCKER" build --network host --progress plain "${secret[@]}" \
  --build-arg "BASE_IMAGE=$base" --build-arg "PG_MAJOR=$pg_major" \
  --label "org.opencontainers.image.version=$version" \
  -t "$image" "$@" "$repo" >&2
# The image this tag named before is left untagged by the build: remove it (ours only, by label).
"$DOCKER" image prune -f --filter "label=org.opencontainers.image.title=walwarden" >/dev/null || true
echo "$image"
