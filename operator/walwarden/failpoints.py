"""Failpoints: named places between two actions on the world where a crash test kills the operator.

The switch of a restore is a sequence of statements with no status write between them; a test
that must prove the operator resumes from any point between two of them cannot aim a kill from
outside (the next statement follows within milliseconds). So the operator kills itself there:
with WALWARDEN_FAILPOINTS="switch:rename-current-aside,..." (comma-separated), the first
failpoint reached from that list prints its name to stderr and ends the process with SIGKILL —
nothing finishes, nothing is flushed, as in a real crash. Unset (always, outside tests), a
failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "WALWARDEN_FAILPOINTS"
ANNOUNCEMENT = "walwarden-failpoint: "  # the line a test reads to know which point it hit


def armed() -> frozenset[str]:
    return frozenset(point.strip() for point in os.environ.get(ENV, "").split(",") if point.strip())


def reached(point: str) -> None:
    if point and point in armed():
        sys.stderr.write(f"{ANNOUNCEMENT}{point}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
