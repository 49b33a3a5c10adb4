"""The README's first command: the demo runs from start to end on its own local stack (control
plane, PostgreSQL, MinIO, operator) and shows a real backup, a drill and two restores succeed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_backs_up_drills_and_restores_the_vault_and_stops_everything(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--workdir", str(tmp_path / "demo")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,  # an upper bound for a busy machine, not an expectation (about a minute warm)
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    for shown in (
        "1. BackupRequest",
        "1b. RestoreRequest Drill",
        "DropScratch     Succeeded",
        "3. RestoreRequest InPlace",
        "4. RestoreRequest Redirected",
        "the wallet serves, from vault_restored",
        "Demo finished; everything stopped.",
    ):
        assert shown in output, f"{shown!r} not in the demo's output:\n{output[-20000:]}"
