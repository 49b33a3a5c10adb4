"""The steps of a Drill: restore the backup into a scratch database while the vault runs
untouched, prove it, drop it (restore/drill.py says what keeps it away from the vault).

    Validate     the source (manifest, signature, the BackupRequest's record) and the target
                 Secret; the scratch database is not one of the backup's own
    Preflight    the server answers; the scratch database is new (or this drill's, from an
                 earlier pass); the roles the backup records are there or creatable
    Build        the scratch database, marked as this drill's; the recorded roles it lacks
                 (spec.target.roles CreateMissing); a restore Job (download, sha256 against
                 the manifest, pg_restore --exit-on-error); row counts against the manifest
    Check        spec.drill.checks, one by one, as a login that may only read the scratch database
    DropScratch  always: the scratch database, the reading login, the roles Build created
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from walwarden import failpoints, postgres
from walwarden.api import CheckResult, DrillJob, DrillSettings, DrillStatus, format_timestamp, utcnow
from walwarden.kube import secrets as kube_secrets
from walwarden.kube.jobs import JobState
from walwarden.postgres import databases
from walwarden.postgres import roles as postgres_roles
from walwarden.restore import drill
from walwarden.restore.approvals import check_approval
from walwarden.restore.compatibility import check_encryptor_fingerprints, check_target_version
from walwarden.restore.restore_job import restore_into, stop_restore_job
from walwarden.restore.roles import check_roles, create_missing_roles, drop_created_roles
from walwarden.restore.row_counts import compare_row_counts
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.target import target_database, target_secret
from walwarden.workflow.engine import StepFailed, UndoCause, Wait
from walwarden.workflow.steps import run_job

UNTOUCHED = "The vault was not touched"


def _drill_status(run: RestoreRun) -> DrillStatus:
    if run.status.drill is None:
        run.status.drill = DrillStatus()
    return run.status.drill


def validate_drill(run: RestoreRun) -> str:
    run.status.source = run.spec.source.label
    found = source_of(run)
    target_secret(run)
    if run.spec.source.artifact:
        # An artifact from elsewhere is read, restored and shown to its checks by the operator's
        # rights: with approvals on, a holder of the approval key decides, as for a restore.
        check_approval(run, found)
    scratch = drill.refuse_the_vaults_database(run, found)
    run.status.origin = found.origin
    origin = f"; origin {found.origin.describe()}" if found.origin else ""
    return (
        f"drill of {found.label} ({found.dump.name}, {found.dump.size_bytes} bytes) into the scratch database "
        f"{scratch}: source and target checked{origin}"
    )


def preflight_drill(run: RestoreRun) -> str:
    ahead = drill.drills_ahead(run)
    limit = run.settings.max_drills_per_namespace
    if len(ahead) >= limit:
        # Each drill copies a database onto a server: a namespace runs a few at a time, in order.
        raise Wait(
            f"waiting for {len(ahead)} earlier drill(s) of the namespace to finish ({', '.join(ahead[:5])}; at most "
            f"{limit} at once)",
            delay=run.poll_seconds,
        )
    found, scratch, secret = source_of(run), target_database(run), target_secret(run)
    busy = drill.take_server_slot(run, secret)
    if busy:
        holders = ", ".join(f"{holder.namespace}/{holder.name}" for holder in busy)
        raise Wait(
            f"waiting for a drill slot on the target server ({run.settings.max_drills_per_server} at once, held by "
            f"{holders})",
            delay=run.poll_seconds,
        )
    run.status.mark_running("drill running", run.generation)  # its queue and its slot are behind it
    try:
        version = postgres.server_version(secret)
        settings = run.spec.drill_settings
        missing = databases.missing_drill_privileges(secret, bool(settings.checks or settings.job))
        if missing:
            raise StepFailed(
                "DrillNotPermitted",
                f"the admin user {secret.get('user')!r} of spec.target lacks what a drill needs: {'; '.join(missing)}. "
                f"Grant it, or use a superuser of the drill server. {UNTOUCHED}, nothing was made",
            )
        owner = _scratch_state(run, secret, scratch)
        roles_checked = check_roles(run, secret)
    except postgres.DatabaseError as error:
        raise StepFailed(
            error.reason, f"the drill's target server is not usable: {error.message}. {UNTOUCHED}"
        ) from None
    check_target_version(version, found.manifest.pg_server_version)
    emp = check_encryptor_fingerprints(run, found, required=False)
    return f"PostgreSQL {version}; {owner}; {roles_checked}; {emp}"


def _scratch_state(run: RestoreRun, secret: dict[str, str], scratch: str) -> str:
    if not postgres.database_exists(secret, scratch):
        return f"{scratch} is free"
    owner = drill.scratch_owner(databases.comment_of(secret, scratch), run)
    if owner == "":
        return f"{scratch} is this drill's own (made by an earlier pass)"
    if owner is None:
        raise StepFailed(
            "ScratchDatabaseExists",
            f"the database {scratch} already exists on the target server and was not made by a drill: a drill "
            "writes only into a database it creates. Set spec.target.database to a name that is free. " + UNTOUCHED,
        )
    raise StepFailed(
        "ScratchDatabaseInUse",
        f"the database {scratch} is the scratch database of another drill ({owner}): wait for it to finish, or, "
        f"if that drill is gone, drop {scratch} yourself. {UNTOUCHED}",
    )


def build_scratch(run: RestoreRun) -> str:
    found, status = source_of(run), run.status
    scratch, secret = target_database(run), target_secret(run)
    status.restored_database = _drill_status(run).scratch_database = scratch

    def make_scratch() -> None:
        try:
            _scratch_state(run, secret, scratch)  # again: a drill of the same name may have begun since
            databases.create_marked(secret, scratch, drill.scratch_marker(run), drill.staging_name(run))
            failpoints.reached("drill:scratch-created")
            status.restored_database_created = True
            create_missing_roles(run, secret)
        except postgres.DatabaseError as error:
            raise StepFailed(error.reason, f"{error.message}. {UNTOUCHED}") from None

    name = restore_into(
        run,
        scratch,
        make_scratch,
        "the scratch database",
        lambda said: f"the backup {found.label} does NOT restore: {said}. {UNTOUCHED}",
    )
    counted = compare_row_counts(run, scratch)
    _drill_status(run).row_counts_checked = len(found.dump.row_counts or {})
    return "; ".join([f"Job {name} restored {found.dump.size_bytes} bytes into {scratch}", *counted])


def check_scratch(run: RestoreRun) -> str:
    settings = run.spec.drill_settings
    if not settings.checks and settings.job is None:
        return "no SQL checks or Job (spec.drill): row counts only"
    scratch, admin = target_database(run), target_secret(run)
    login = drill.reader_login(run, admin, scratch)
    try:
        postgres_roles.create_reader(admin, login["PGUSER"], login["PGPASSWORD"], scratch, drill.reader_marker(run))
        failpoints.reached("drill:reader-created")
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, f"cannot make the drill's reading login: {error.message}. {UNTOUCHED}") from None
    said = _sql_checks(run, drill.as_admin_secret(login), scratch)
    if settings.job is not None:
        said.append(_check_job(run, settings.job))
    return "; ".join(said)


def _sql_checks(run: RestoreRun, login: dict[str, str], scratch: str) -> list[str]:
    """spec.drill.checks, once: a later pass (waiting for the Job) keeps what they answered."""
    settings, recorded = run.spec.drill_settings, _drill_status(run)
    if not settings.checks:
        return []
    if len(recorded.checks) != len(settings.checks) or not all(result.passed for result in recorded.checks):
        recorded.checks = _run_within_budget(login, scratch, settings)
    failed = [result for result in recorded.checks if not result.passed]
    if failed:
        listed = "; ".join(f"{result.name}: {result.message}" for result in failed)
        raise StepFailed("DrillCheckFailed", f"{len(failed)} of {len(recorded.checks)} check(s) failed: {listed}")
    return [f"{len(recorded.checks)} check(s) passed: {', '.join(result.name for result in recorded.checks)}"]


def _check_job(run: RestoreRun, job: DrillJob) -> str:
    manifest = drill.check_job(run, job)
    name = _drill_status(run).job = manifest["metadata"]["name"]
    outcome = run_job(run, manifest, lambda: None, "your check (spec.drill.job) against the scratch database")
    if outcome.state == JobState.FAILED:
        # Its output is the author's program's, and may hold anything its environment held (the
        # reading login's password): it stays in the pod's log, never in status or an Event.
        raise StepFailed(
            "DrillJobFailed",
            f"the check Job {name} (spec.drill.job) failed ({outcome.reason or 'exit code not 0'}); "
            f"its output: kubectl logs -n {run.namespace} job/{name}",
        )
    return f"the check Job {name} succeeded"


def _run_within_budget(
    login: dict[str, str], scratch: str, settings: DrillSettings, clock: Callable[[], float] = time.monotonic
) -> list[CheckResult]:
    """Each check in order, with at most what is left of the checks' time budget: a drill holds an
    operator thread while its checks run, so their total time is bounded, not only each one's."""
    deadline = clock() + settings.checks_time_budget_seconds
    results = []
    for check in settings.checks:
        left = math.floor(deadline - clock())
        if left < 1:
            spent = f"not run: the checks' time budget ({settings.checks_time_budget_seconds} s) was spent"
            results.append(CheckResult(name=check.name, passed=False, message=spent))
            continue
        timeout = min(settings.statement_timeout_seconds, left)
        results.append(_answer(login, scratch, check.name, check.sql, check.expected, timeout))
    return results


def _answer(login: dict[str, str], database: str, name: str, query: str, expected: str, timeout: int) -> CheckResult:
    try:
        value = postgres.read_only_answer(login, database, query, timeout)
    except postgres.DatabaseError as error:
        return CheckResult(name=name, passed=False, message=error.message)
    shown = "NULL" if value is None else value
    if shown == expected:
        return CheckResult(name=name, passed=True, message=f"answered {_clip(shown)}")
    return CheckResult(name=name, passed=False, message=f"answered {_clip(shown)}, expected {_clip(expected)}")


def _clip(value: str, limit: int = 120) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def drop_scratch(run: RestoreRun) -> str:
    """Cleanup, whatever happened: what the drill made on the target server is dropped, and its
    slot on that server given back."""
    said = drop_scratch_database(run, UndoCause.FAILURE)
    try:
        drill.release_server_slot(run, target_secret(run))
    except StepFailed:
        pass  # no target Secret (any more): a slot held is taken over once this drill has finished
    return said or "nothing was left to drop"


def drop_scratch_database(run: RestoreRun, cause: UndoCause) -> str | None:
    """The scratch database (only with this drill's marker), the reading login, the roles Build
    created. Build's undo too, so a drill deleted mid-flight leaves nothing behind."""
    status = run.status
    scratch = status.restored_database  # set by Build before it makes anything
    if scratch is not None:
        stop_restore_job(run, scratch)
    reader_login = kube_secrets.read_secret(run.kube, run.namespace, drill.reader_secret_name(run))
    if scratch is None and reader_login is None:
        return None  # ended before Build: nothing was made
    done: list[str] = []
    try:
        secret = target_secret(run)
        if scratch is not None and postgres.database_exists(secret, drill.staging_name(run)):
            databases.drop(secret, drill.staging_name(run))  # a crash before its rename: this drill's
        if scratch is not None and postgres.database_exists(secret, scratch):
            if drill.scratch_owner(databases.comment_of(secret, scratch), run) == "":
                databases.drop(secret, scratch)
                failpoints.reached("drill:scratch-dropped")
                done.append(f"the scratch database {scratch} was dropped")
            else:
                done.append(f"{scratch} is not this drill's and was left as it is")
        reader = drill.reader_name(run)
        dropped, left = postgres_roles.drop_marked_roles(secret, [reader], drill.reader_marker(run))
        if left:  # a login with a password must not outlive its drill quietly
            raise postgres.DatabaseError(
                "RoleNotDropped", f"the reading login {reader} was not dropped: {left[reader]}"
            )
        if dropped:
            done.append(f"the reading login {reader} was dropped")
    except postgres.DatabaseError as error:
        raise StepFailed(
            "ScratchNotDropped",
            f"cleaning up the drill on its target server: {error.message}. Drop what it made by hand "
            f"(DROP DATABASE of status.drill.scratchDatabase, then DROP ROLE {drill.reader_name(run)})",
        ) from None
    created = drop_created_roles(run)
    if created:
        done.append(created)
    kube_secrets.delete_secret(run.kube, run.namespace, drill.reader_secret_name(run))
    if status.drill is not None and status.drill.scratch_database and status.drill.dropped_at is None:
        status.drill.dropped_at = format_timestamp(utcnow())
    return "; ".join(done) or None
