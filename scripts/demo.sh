#!/usr/bin/env bash
# The main job on the embedded default: a local control plane, PostgreSQL, S3 and the operator,
# brought up on this machine (loopback only) and shown working. Add --keep to leave it running.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m devstack.demo "$@"
