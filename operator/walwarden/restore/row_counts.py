"""The restored database's row counts against the manifest's, while nothing writes to it: in the
stop window for Overwrite, before any session may reach it for Switch and Redirected."""

from __future__ import annotations

from walwarden import postgres
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.target import target_secret
from walwarden.workflow.engine import StepFailed


def compare_row_counts(run: RestoreRun, database: str) -> list[str]:
    """What matched, as a message part; StepFailed when a table differs. A drill always compares
    (it is its proof), and a manifest without counts fails it."""
    expected = source_of(run).dump.row_counts
    if run.spec.is_drill and not expected:  # a vault's database without a single table proves nothing either
        raise StepFailed(
            "RowCountsMissing",
            "the backup's manifest records no row counts (its database has no tables, or the manifest is from "
            "before they were recorded), so the drill cannot prove the restore is complete",
        )
    if not (run.spec.verify.compare_row_counts or run.spec.is_drill) or not expected:
        return []
    try:
        actual = postgres.row_counts(target_secret(run), database, list(expected))
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, f"cannot count rows in {database}: {error.message}") from None
    different = {table: (count, actual.get(table)) for table, count in expected.items() if actual.get(table) != count}
    if different:
        listed = ", ".join(f"{t}: {a} rows, manifest {e}" for t, (e, a) in list(different.items())[:5])
        raise StepFailed("RowCountMismatch", f"the restored database {database} differs from the backup: {listed}")
    return [f"row counts of {len(expected)} tables match the manifest"]
