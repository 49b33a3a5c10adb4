"""The backup's Run: the typed request and its status."""

from __future__ import annotations

from walwarden.api import BackupRequestSpec, BackupRequestStatus
from walwarden.workflow.engine import Run

BackupRun = Run[BackupRequestSpec, BackupRequestStatus]
