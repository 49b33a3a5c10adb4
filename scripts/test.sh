#!/usr/bin/env bash
# The whole test suite: unit, integration (real control plane, PostgreSQL, S3) and end-to-end.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -k crd).
# Against another cluster: WALWARDEN_KUBECONFIG=/path/to/kubeconfig scripts/test.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/setup.sh"
cd "$repo"
printf '\n==> code checks: ruff (lint, format), mypy, import layers\n' >&2
"$repo/.venv/bin/ruff" check operator tests devstack bench
"$repo/.venv/bin/ruff" format --check operator tests devstack bench
"$repo/.venv/bin/mypy"
"$repo/.venv/bin/lint-imports" --no-cache
printf '\n==> pytest\n' >&2
# pytest exits 5 when it collected no test: that is a failure too, and set -e keeps it one.
exec "$repo/.venv/bin/python" -m pytest "$@"
