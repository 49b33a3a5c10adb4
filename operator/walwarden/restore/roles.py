"""The roles a restore needs on its target server (issue 11): checked in Preflight against what
the backup's manifest records, created in Build with spec.target.roles CreateMissing, dropped by
Build's undo after the restored database.

Passwords: a created LOGIN role gets one only when it is a database service's DB_USER in the target
environment (`role_passwords`): that service's DB_PASSWORD, sent to the server as a SCRAM verifier.
Any other LOGIN role is created with LOGIN but no password — nothing can log in as it with a
password until someone sets one, and Build's message says so; NOLOGIN would silently change what
the backup recorded. A password never reaches a message, event, status or Job.
"""

from __future__ import annotations

from walwarden import postgres
from walwarden.api import RolePolicy
from walwarden.api.roles import DatabaseRole
from walwarden.postgres import roles as postgres_roles
from walwarden.restore import logins
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.target import target_secret
from walwarden.workflow.engine import StepFailed


def recorded_roles(run: RestoreRun) -> list[DatabaseRole] | None:
    """The roles the backup's manifest records; None for a manifest written before they were."""
    return source_of(run).manifest.roles


def role_marker(run: RestoreRun) -> str:
    """The comment on every role this request creates: how a later pass and the undo know them."""
    return f"walwarden: created for RestoreRequest {run.namespace}/{run.name} ({run.uid})"


def role_passwords(run: RestoreRun) -> dict[str, str]:
    """DB_USER -> DB_PASSWORD of every database service as it will log in after the repoint (its
    db-info secret, or spec.redirect.credentials); none for InPlace, whose services keep theirs."""
    if run.spec.redirect is None:
        return {}
    passwords: dict[str, str] = {}
    for login in logins.planned_logins(run):
        if passwords.get(login.user, login.password) != login.password:
            raise StepFailed(
                "RolePasswordConflict",
                f"the services give the database user {login.user} two different passwords ({login.service} and "
                "another): a role has one password. The vault was not touched: make them agree, or create "
                f"the role {login.user} on the target server yourself",
            )
        passwords[login.user] = login.password
    return passwords


def _missing(secret: dict[str, str], recorded: list[DatabaseRole]) -> list[DatabaseRole]:
    present = postgres_roles.existing_roles(secret, [role.name for role in recorded])
    return [role for role in recorded if role.name not in present]


def check_roles(run: RestoreRun, secret: dict[str, str]) -> str:
    """Preflight: which recorded roles the target lacks, refused (Require) or checked creatable
    (CreateMissing). Raises postgres.DatabaseError when the server does not answer."""
    recorded = recorded_roles(run)
    if recorded is None:
        return "the backup records no roles (taken before they were recorded): not checked"
    missing = _missing(secret, recorded)
    if not missing:
        return f"the {len(recorded)} role(s) the backup needs exist on the target"
    where = f"{secret.get('host')}:{secret.get('port', '5432')}"
    listed = "; ".join(role.describe() for role in missing)
    if run.spec.role_policy == RolePolicy.REQUIRE:
        raise StepFailed(
            "RolesMissing",
            f"the target server {where} lacks role(s) the backup's objects are owned by or granted to: "
            f"{listed}. pg_restore would fail on them. Nothing was touched: every service is still running. "
            "Create them there (with their memberships), or set spec.target.roles: CreateMissing to have the "
            "restore create them",
        )
    superusers = [role.name for role in missing if role.superuser]
    if superusers:
        raise StepFailed(
            "SuperuserRoleMissing",
            f"the target server {where} lacks the superuser role(s) {', '.join(superusers)} the backup needs: "
            "a restore never creates a superuser. Nothing was touched: every service is still running. Create "
            "them there, or give their objects to another role before the backup",
        )
    problems = postgres_roles.creation_problems(secret, missing)
    if problems:
        raise StepFailed(
            "RoleCreationNotPermitted",
            f"spec.target.roles is CreateMissing, but the restore user {secret.get('user')!r} may not create "
            f"{listed}: it lacks {'; '.join(problems)}. Nothing was touched: every service is still running. "
            "Grant it, or create the roles yourself",
        )
    return f"role(s) {', '.join(role.name for role in missing)} missing on the target, created before pg_restore"


def roles_to_create(run: RestoreRun, secret: dict[str, str]) -> set[str]:
    """The recorded roles the target lacks that Build creates (CreateMissing); empty otherwise."""
    recorded = recorded_roles(run)
    if run.spec.role_policy != RolePolicy.CREATE_MISSING or not recorded:
        return set()
    return {role.name for role in _missing(secret, recorded)}


def create_missing_roles(run: RestoreRun, secret: dict[str, str]) -> str | None:
    """Build, before pg_restore: the recorded roles the target lacks, created (CreateMissing) and
    recorded in status.createdRoles. Idempotent: roles this request marked count as its own."""
    recorded = recorded_roles(run)
    if run.spec.role_policy != RolePolicy.CREATE_MISSING or not recorded:
        return None
    passwords = role_passwords(run)
    created = postgres_roles.create_roles(secret, recorded, passwords, role_marker(run))
    run.status.created_roles = created
    if not created:
        return None
    by_name = {role.name: role for role in recorded}
    without = [name for name in created if by_name[name].login and name not in passwords]
    said = f"created the role(s) {', '.join(created)} on the target, with their memberships"
    if without:
        said += (
            f"; {', '.join(without)} may LOGIN but got no password (no database service logs in as them): "
            "set one (ALTER ROLE ... PASSWORD) before anything logs in as them"
        )
    run.event("RolesCreated", said)
    return said


def drop_created_roles(run: RestoreRun) -> str | None:
    """Build's undo, after the restored database was dropped: the roles this request created."""
    if run.spec.role_policy != RolePolicy.CREATE_MISSING:
        return None
    try:
        secret = target_secret(run)
        marker = role_marker(run)
        names = sorted(set(run.status.created_roles or []) | set(postgres_roles.marked_roles(secret, marker)))
        if not names:
            return None
        dropped, left = postgres_roles.drop_marked_roles(secret, names, marker)
    except postgres.DatabaseError as error:
        raise StepFailed("RollbackFailed", f"dropping the roles the restore created: {error.message}") from None
    run.status.created_roles = sorted(left) or None
    said = f"the role(s) {', '.join(dropped)} the restore created were dropped" if dropped else ""
    if left:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in sorted(left.items()))
        said += ("; " if said else "") + (
            f"the role(s) it created that were left ({reasons}): drop them once nothing needs them"
        )
    return said or None
