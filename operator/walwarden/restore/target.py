"""The database the restore writes into: its admin Secret and its name."""

from __future__ import annotations

from walwarden.api.common import ADMIN_SECRET_KEYS
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import require_secret_keys


def target_secret_name(run: RestoreRun) -> str:
    if run.spec.target:
        return run.spec.target.secret_ref.name
    backup_secret = source_of(run).backup_secret
    if backup_secret:
        return backup_secret
    raise StepFailed(
        "TargetMissing",
        "an InPlace restore of an s3:// artifact needs spec.target: the Secret "
        "with the admin connection of the database to restore into",
    )


DRILL_SUFFIX = "_drill"


def target_database(run: RestoreRun) -> str:
    """The database written into; a drill's scratch database is <db>_drill unless named."""
    target = run.spec.target
    if target and target.database:
        return target.database
    name = source_of(run).dump.name
    return f"{name[: 63 - len(DRILL_SUFFIX)]}{DRILL_SUFFIX}" if run.spec.is_drill else name


def target_secret(run: RestoreRun) -> dict[str, str]:
    """The target's admin connection values (held in memory only, never logged)."""
    return require_secret_keys(run, target_secret_name(run), ADMIN_SECRET_KEYS, "the target database")
