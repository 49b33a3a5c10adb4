"""Preflight: everything checked before anything is touched — the artifact's sha256 (a verify
Job); for a Redirected restore every service's login after the repoint (a logins Job in the
vault's namespace: restore/logins.py); the target server (reachable, its version, the InPlace
database exists); what the strategy needs there (Switch: the restore user may create databases
and rename the vault's; Redirected: the target database is new or empty); the roles the backup
records (missing ones refused, or checked creatable: restore/roles.py); the Encryptor Master
Passwords; the Secrets the request names to be sent elsewhere are labelled for it
(restore/opted_in_secrets.py). Any failure here ends with every service untouched."""

from __future__ import annotations

from walwarden import postgres
from walwarden.api import RestoreMode, RestoreStrategy
from walwarden.kube.jobs import JobState
from walwarden.postgres import databases
from walwarden.restore import history, logins, opted_in_secrets
from walwarden.restore import job as restore_jobs
from walwarden.restore.artifact_urls import url_secret
from walwarden.restore.compatibility import check_encryptor_fingerprints, check_target_version
from walwarden.restore.roles import check_roles, roles_to_create
from walwarden.restore.run import RestoreRun
from walwarden.restore.source import source_of
from walwarden.restore.switch import switch_names
from walwarden.restore.target import target_database, target_secret
from walwarden.workflow import gitops
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import run_job


def preflight(run: RestoreRun) -> str:
    found = source_of(run)
    # Again, under the namespace lock: a twin validated before this one's first run recorded it.
    history.check_not_a_repeat(run, found)
    # Verify sends it once the services run on the restored data: an unlabelled one is refused now.
    opted_in_secrets.verify_auth_header(run)
    gitops_checked = gitops.check_gitops_leaves_replicas_alone(run.kube, run.namespace, run.topology)
    manifest = restore_jobs.verify_job(
        **run.job_identity(),
        sha256=found.dump.sha256,
        size=found.dump.size_bytes,
    )
    outcome = run_job(
        run,
        manifest,
        lambda: url_secret(run, "verify", found.bucket, found.dump.key, found.storage),
        "downloading the artifact and checking its sha256 against the manifest",
    )
    if outcome.state == JobState.FAILED:
        raise StepFailed(
            outcome.reason,
            f"the artifact failed verification: {outcome.message}. Nothing was touched: every service is still running",
        )
    secret = target_secret(run)
    try:
        version = postgres.server_version(secret)
        if run.spec.mode == RestoreMode.IN_PLACE and not postgres.database_exists(secret, target_database(run)):
            raise StepFailed("DatabaseNotFound", f"the InPlace target database {target_database(run)} does not exist")
        strategy_checked = check_strategy_needs(run, secret)
        roles_checked = check_roles(run, secret)
        created_roles = roles_to_create(run, secret)
    except postgres.DatabaseError as error:
        raise StepFailed(error.reason, f"the target database is not usable: {error.message}") from None
    # After the roles: a login whose role the restore creates (with that very password) cannot be
    # tried before it exists.
    logins_proven = ""
    if run.spec.mode == RestoreMode.REDIRECTED:
        logins_proven = f"; {logins.prove_logins(run, created_roles)}"
    check_target_version(version, found.manifest.pg_server_version)
    check_encryptor_fingerprints(run, found)
    return (
        f"artifact sha256 verified by Job {manifest['metadata']['name']}; target PostgreSQL {version} "
        f"reachable; {strategy_checked}; {roles_checked}; EMP fingerprints match{logins_proven}"
        + (f"; {gitops_checked}" if gitops_checked else "")
    )


def check_strategy_needs(run: RestoreRun, secret: dict[str, str]) -> str:
    """What the strategy needs of the target server, before anything is touched."""
    if run.spec.effective_strategy == RestoreStrategy.SWITCH:
        names = switch_names(run)
        missing = databases.missing_switch_privileges(secret, names.database)
        if missing:
            raise StepFailed(
                "SwitchNotPermitted",
                f"the restore user {secret.get('user')!r} lacks what the Switch strategy needs: {'; '.join(missing)}. "
                "Nothing was touched: grant it, or set spec.strategy: Overwrite (pg_restore into the live "
                "database inside the stop window, with a safety backup)",
            )
        # The sibling's and previous database's names are not checked here: Preflight runs again
        # when an operator died before recording it, even after the switch, when both exist and are
        # this request's. No request may take either as its target (api TARGET_NAME_NOT_RESERVED),
        # and Build checks the previous name is free last before the stop, with the sibling built.
        return f"the restore user may build {names.restored} and switch it in"
    if run.spec.mode == RestoreMode.REDIRECTED:
        database = target_database(run)
        if postgres.database_exists(secret, database):
            objects = databases.has_objects(secret, database)
            if objects:
                raise StepFailed(
                    "TargetNotEmpty",
                    f"the Redirected target database {database} already holds objects ({', '.join(objects)}, ...): "
                    "a restore does not mix into them. Nothing was touched: name an empty or new database in "
                    "spec.target.database, or empty this one",
                )
        return f"the Redirected target {database} is empty or new"
    return "Overwrite: pg_restore --clean into the live database"
