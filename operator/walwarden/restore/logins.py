"""The logins a Redirected restore will leave the services with, proven before anything stops.

Each database service's login after the repoint — the new host, port and database, its own user
and password or the new ones spec.redirect.credentials gives it — is tried by a Job in the vault's
namespace (runner `logins`), so from where the services reach the database. The Job reads the
users and passwords from a Secret of the request, never from its arguments. The host is the
requester's choice: the Job sends a password only by SCRAM, over TLS as the operator's settings
say (redirect_login_ssl_mode), so a server that asks for it in cleartext never gets it.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from walwarden.kube.jobs import JobState
from walwarden.kube.runner_job import job_name, runner_job, runner_labels, secret_env
from walwarden.kube.secrets import delete_secret
from walwarden.postgres import Login
from walwarden.restore import dbinfo
from walwarden.restore.run import RestoreRun
from walwarden.runner.contract import Command, Env, Flag, login_argument, login_password_env, login_user_env
from walwarden.settings import OperatorConfig
from walwarden.workflow.engine import StepFailed
from walwarden.workflow.steps import ensure_own_secret, run_job

ROLE = "logins"  # the Job's role label and name part
LIBPQ_SSL_ROOT_CERT = "PGSSLROOTCERT"  # read by libpq itself, as PGSSLMODE


def prove_logins(run: RestoreRun, created_roles: Set[str] = frozenset()) -> str:
    """Preflight of a Redirected restore: every service's login after the repoint works from the
    vault's namespace, or the step fails with every service untouched. Logins as a role the
    restore creates (`created_roles`, with the service's own password) cannot be tried yet."""
    planned = planned_logins(run)
    logins = [login for login in planned if login.user not in created_roles]
    created = sorted({login.service for login in planned if login.user in created_roles})
    by_creation = f"; {', '.join(created)} log in as role(s) the restore creates for them" if created else ""
    if not logins:
        return by_creation.removeprefix("; ")
    outcome = run_job(
        run,
        logins_job(run, logins),
        lambda: keep_logins_secret(run, logins),
        "trying every database service's login on the new database",
    )
    delete_secret(run.kube, run.namespace, logins_secret_name(run))  # the Job has ended: no copy kept
    if outcome.state == JobState.FAILED:
        raise StepFailed(outcome.reason, f"{outcome.message}. Nothing was touched: every service is still running")
    hosts = sorted({f"{login.host}:{login.port}" for login in logins})
    return f"the logins of {', '.join(login.service for login in logins)} work on {', '.join(hosts)}{by_creation}"


def planned_logins(run: RestoreRun) -> list[Login]:
    """Every database service's login after the repoint, from its db-info secret as it is now and
    what the repoint changes in it."""
    current = dbinfo.read_all(run)
    repointed = dbinfo.repointed_values(run)
    logins = []
    for service, name in dbinfo.secret_of(run).items():
        if current.get(name) is None:
            raise StepFailed(
                "SecretNotFound",
                f"the db-info secret {name} of {service} does not exist ({run.secret_backend}): check "
                "spec.redirect.environment and the topology's secret name template. Nothing was touched",
            )
        values = {**(current[name] or {}), **repointed[name]}
        missing = [key for key in ("DB_USER", "DB_PASSWORD", "DB_NAME") if not values.get(key)]
        if missing:
            raise StepFailed(
                "SecretIncomplete",
                f"the db-info secret {name} of {service} has no {', '.join(missing)}, and the redirect does not "
                "set it: give the service its login in spec.redirect.credentials (and the database in "
                "spec.redirect.dbName). Nothing was touched: every service is still running",
            )
        logins.append(
            Login(
                service=service,
                host=values["DB_HOST"],
                port=int(values.get("DB_PORT") or 5432),
                database=values["DB_NAME"],
                user=values["DB_USER"],
                password=values["DB_PASSWORD"],
            )
        )
    return logins


def logins_secret_name(run: RestoreRun) -> str:
    return f"{run.name[:40]}-logins-{run.uid.replace('-', '')[:8]}"


def keep_logins_secret(run: RestoreRun, logins: list[Login]) -> None:
    """The users and passwords the Job tries, in a Secret the request owns, deleted once the Job
    has ended (or with the request)."""
    data = {}
    for index, login in enumerate(logins):
        data[f"{index}.user"], data[f"{index}.password"] = login.user, login.password
    ensure_own_secret(run, logins_secret_name(run), data)


def tls_policy_env(settings: OperatorConfig) -> list[dict[str, Any]]:
    """The operator's TLS policy for the logins (never the request's: it names the host), as libpq's
    own variables; the runner requires SCRAM whatever they say."""
    env = [{"name": Env.PG_SSLMODE, "value": settings.redirect_login_ssl_mode}]
    root_cert = settings.redirect_login_ssl_root_cert_in_use
    if root_cert:
        env.append({"name": LIBPQ_SSL_ROOT_CERT, "value": root_cert})
    return env


def logins_job(run: RestoreRun, logins: list[Login]) -> dict[str, Any]:
    secret = logins_secret_name(run)
    args: list[str] = [Command.LOGINS]
    env = tls_policy_env(run.settings)
    for index, login in enumerate(logins):
        args += [Flag.LOGIN, login_argument(login.service, login.host, login.port, login.database)]
        env += [
            secret_env(login_user_env(index), secret, f"{index}.user"),
            secret_env(login_password_env(index), secret, f"{index}.password"),
        ]
    return runner_job(
        name=job_name(run.name, run.uid, ROLE),
        namespace=run.namespace,
        labels=runner_labels(run.name, ROLE),
        owner=run.owner,
        config=run.settings,
        args=args,
        env=env,
        deadline_seconds=600,
    )
