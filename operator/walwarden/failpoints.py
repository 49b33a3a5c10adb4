"""Failpoints: named places between two actions on the world where a crash test kills the operator.

The switch of a restore is a sequence of statements with no status write between them; a test
that must prove the operator resumes from any point between two of them cannot aim a kill from
outside (the next statement follows within milliseconds). So the operator kills itself there:
with WALWARDEN_FAILPOINTS="switch:rename-current-aside,..." (comma-separated), the first
failpoint reached from that list prints its name to stderr and ends the process with SIGKILL —
nothing finishes, nothing is flushed, as in a real crash. Unset (always, outside tests), a
failpoint costs one dictionary lookup.

"name=pause" instead holds the operator there (after the same announcement) until the file
WALWARDEN_FAILPOINT_RESUME names exists: for a test that must change the world at that moment
(scale a stopped service up inside the stop window) and watch the same operator carry on.
"""

from __future__ import annotations

import os
import signal
import sys
import time

ENV = "WALWARDEN_FAILPOINTS"
RESUME_ENV = "WALWARDEN_FAILPOINT_RESUME"
PAUSE = "pause"
ANNOUNCEMENT = "walwarden-failpoint: "  # the line a test reads to know which point it hit


def armed() -> dict[str, str]:
    """Armed point -> what happens there: "kill" (the default) or "pause"."""
    entries = (entry.strip() for entry in os.environ.get(ENV, "").split(","))
    return {name: action or "kill" for name, _, action in (entry.partition("=") for entry in entries if entry)}


def reached(point: str) -> None:
    action = armed().get(point) if point else None
    if action is None:
        return
    sys.stderr.write(f"{ANNOUNCEMENT}{point}\n")
    sys.stderr.flush()
    if action == PAUSE:
        resume = os.environ.get(RESUME_ENV, "")
        while not (resume and os.path.exists(resume)):
            time.sleep(0.2)
        return
    os.kill(os.getpid(), signal.SIGKILL)
