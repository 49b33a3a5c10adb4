"""A restore drill's scratch database and the login its checks run as (issue 13).

A drill restores a backup into a scratch database, proves it (row counts, the user's checks) and
drops it. What keeps it away from the vault:

- the scratch database is never one of the backup's databases (the vault's own), and never a
  database that exists without this drill's marker (a comment set when it created it): a drill
  writes only into what it made, and drops only what carries its marker;
- its checks run as a reading login made for the drill (`reader_name`), never the admin login:
  a check's SQL is the request author's, and the admin of the vault's server could do anything;
- its step table (restore/table.py DRILL_TABLE) has no step that stops, repoints or restarts.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from walwarden.api import DrillJob, RestoreRequest
from walwarden.api import restore as restore_api
from walwarden.api.common import GROUP, VERSION
from walwarden.kube import leases
from walwarden.kube.runner_job import hardened_job, job_name, runner_labels, short_uid
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import Source
from walwarden.restore.target import target_database
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import ensure_own_secret

MARKER_PREFIX = "walwarden: drill scratch database"


def scratch_marker(run: RestoreRun) -> str:
    """The comment on the scratch database: whose it is, so only that drill ever drops it."""
    return f"{MARKER_PREFIX} of RestoreRequest {run.namespace}/{run.name} ({run.uid})"


def reader_marker(run: RestoreRun) -> str:
    return f"walwarden: drill reader of RestoreRequest {run.namespace}/{run.name} ({run.uid})"


def reader_name(run: RestoreRun) -> str:
    return f"walwarden_drill_{short_uid(run.uid)}"


def staging_name(run: RestoreRun) -> str:
    """The name the scratch database is made under before it is marked and renamed (only this
    request uses it, so one left by a crash is this drill's)."""
    return f"walwarden_drill_new_{short_uid(run.uid)}"


def reader_secret_name(run: RestoreRun) -> str:
    return f"{run.name[:36]}-drill-login-{short_uid(run.uid)}"


def reader_login(run: RestoreRun, admin: dict[str, str], scratch: str) -> dict[str, str]:
    """The reading login's connection, in the libpq environment a check Job gets (envFrom): made
    once, its password random, kept in a Secret owned by the request (a pass after an operator
    restart needs the same one), never in status, an Event or a log."""
    login = {
        "PGHOST": admin["host"],
        "PGPORT": admin.get("port", "5432"),
        "PGUSER": reader_name(run),
        "PGPASSWORD": secrets.token_urlsafe(32),
        "PGDATABASE": scratch,
        "PGSSLMODE": admin.get("sslmode") or "prefer",
    }
    return ensure_own_secret(run, reader_secret_name(run), login)


def as_admin_secret(login: dict[str, str]) -> dict[str, str]:
    """The login in the shape walwarden.postgres connects with (the admin Secret's keys)."""
    return {
        "host": login["PGHOST"],
        "port": login["PGPORT"],
        "user": login["PGUSER"],
        "password": login["PGPASSWORD"],
        "sslmode": login["PGSSLMODE"],
    }


def check_job(run: RestoreRun, job: DrillJob) -> dict[str, Any]:
    """The Job of spec.drill.job, built here from its narrow spec (image, command, args, literal
    env, resources) and hardened as the runner's: the request's author chooses what runs, never
    with what rights. Its only credential is the reading login (envFrom), never the admin's."""
    container = {
        "name": "check",
        "image": job.image,
        "command": list(job.command),
        "args": list(job.args),
        "env": [{"name": variable.name, "value": variable.value} for variable in job.env],
        "envFrom": [{"secretRef": {"name": reader_secret_name(run)}}],
        "resources": {
            "requests": {"cpu": job.resources.cpu, "memory": job.resources.memory},
            "limits": {"cpu": job.resources.cpu, "memory": job.resources.memory},
        },
    }
    return hardened_job(
        name=job_name(run.name, run.uid, "drill-check"),
        namespace=run.namespace,
        labels=runner_labels(run.name, "drill-check"),
        owner=run.owner,
        pod_labels=run.settings.runner_pod_labels,
        container=container,
        deadline_seconds=job.active_deadline_seconds,
    )


def drills_ahead(run: RestoreRun) -> list[str]:
    """The namespace's unfinished drills asked for before this one (creation time, then name):
    the oldest max_drills_per_namespace run, the others wait, so drills queue in a fixed order and
    two can never each wait for the other."""
    listing: Any = run.kube.custom.list_namespaced_custom_object(GROUP, VERSION, run.namespace, restore_api.PLURAL)
    me = (run.created_at, run.name)
    ahead = []
    for item in listing.get("items", []):
        other = RestoreRequest.model_validate(item)
        created = str(other.metadata.get("creationTimestamp") or "")
        if other.spec.is_drill and not (other.status and other.status.finished) and (created, other.name) < me:
            ahead.append(other.name)
    return ahead


def _slot_holder(run: RestoreRun) -> leases.Holder:
    return leases.Holder(run.kind, run.name, run.uid, namespace=run.namespace)


def server_slots(run: RestoreRun, admin: dict[str, str]) -> list[str]:
    """The Lease names of the drill slots of the server `admin` connects to (host:port)."""
    server = f"{admin.get('host', '')}:{admin.get('port') or '5432'}"
    digest = hashlib.sha256(server.lower().encode()).hexdigest()[:16]
    return [f"walwarden-drill-{digest}-{slot}" for slot in range(run.settings.max_drills_per_server)]


def take_server_slot(run: RestoreRun, admin: dict[str, str]) -> list[leases.Holder]:
    """Hold one of the server's drill slots: [] once held (kept across passes), else who holds
    them all. A slot whose holder finished or was deleted is taken over."""
    me, namespace, slots = _slot_holder(run), run.settings.operator_namespace, server_slots(run, admin)
    if any(leases.holder_of(run.kube, namespace, slot) == me for slot in slots):
        return []
    busy = []
    for slot in slots:
        other = leases.acquire(run.kube, namespace, me, lease_name=slot)
        if other is None:
            return []
        busy.append(other)
    return busy


def release_server_slot(run: RestoreRun, admin: dict[str, str]) -> None:
    for slot in server_slots(run, admin):
        leases.release(run.kube, run.settings.operator_namespace, _slot_holder(run), lease_name=slot)


def refuse_the_vaults_database(run: RestoreRun, found: Source) -> str:
    """The scratch database's name, unless it is one of the backup's own databases."""
    scratch = target_database(run)
    own = [dump.name for dump in found.manifest.databases]
    if scratch in own:
        raise StepFailed(
            "DrillTargetIsTheVault",
            f"spec.target.database {scratch} is a database the backup was taken of (the vault's own): a drill "
            f"restores under a name of its own, e.g. {found.dump.name}_drill (the default when unset). "
            "Nothing was touched",
        )
    return scratch


def scratch_owner(comment: str | None, run: RestoreRun) -> str | None:
    """Whose scratch database a database with `comment` is: None when it is not a drill's at all,
    '' when it is this drill's, else the marker naming the other drill."""
    if comment is None or not comment.startswith(MARKER_PREFIX):
        return None
    return "" if comment == scratch_marker(run) else comment.removeprefix(MARKER_PREFIX + " of ")
