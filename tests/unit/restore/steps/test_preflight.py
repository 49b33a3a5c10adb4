"""Preflight (restore/steps/preflight.py): the artifact verified by a Job, the target usable and
of a version the dump restores into, the Encryptor Master Passwords the backup's — before anything
is touched."""

from __future__ import annotations

import pytest

from tests.unit.fakes import BUCKET, EMP, EMP_SECRET, REDIRECTED, deep_merge
from walwarden import postgres
from walwarden.api import RestoreMode
from walwarden.api.restore import RESTORE_CREDENTIALS_LABEL
from walwarden.api.roles import DatabaseRole, RoleMembership
from walwarden.restore.compatibility import check_target_version
from walwarden.restore.steps.preflight import preflight
from walwarden.runner.contract import parse_login_argument
from walwarden.security import fingerprints
from walwarden.workflow.engine import StepFailed, Wait


@pytest.mark.parametrize(
    "target, source", [("16.4", "16.1"), ("17.0", "15.18 (Debian 15.18-0+deb12u1)"), ("unknown", "16.4")]
)
def test_the_same_or_a_newer_major_version_is_accepted(target, source):
    check_target_version(target, source)


def test_an_older_major_version_is_refused_before_anything_is_touched():
    with pytest.raises(StepFailed) as refused:
        check_target_version("15.18 (Debian 15.18-0+deb12u1)", "16.4")
    assert refused.value.reason == "TargetServerTooOld"
    assert "PostgreSQL 16.4" in refused.value.message and "Nothing was touched" in refused.value.message


# --- the step ------------------------------------------------------------------------------------

VERIFY_JOB = "restore-1-verify-5e5f0e3c"
VERIFY_URL_SECRET = "restore-1-verify-url-5e5f0e3c"
LOGINS_JOB = "restore-1-logins-5e5f0e3c"
LOGINS_SECRET = "restore-1-logins-5e5f0e3c"
LOGIN_OK = {RESTORE_CREDENTIALS_LABEL: "true"}


def verified(vault, spec=None):
    """A restore whose verify Job (and, Redirected, logins Job) was started by a pass and has
    succeeded since."""
    run = vault.restore_run(spec)
    with pytest.raises(Wait):
        preflight(run)
    vault.kube.finish_job(VERIFY_JOB)
    run = vault.next_pass(run)
    if run.spec.mode == RestoreMode.REDIRECTED:
        if not vault.kube.secrets.get((vault.namespace, "prod.vault.wallet.db-info")):
            vault.add_db_info_secrets()
        try:
            preflight(run)
        except Wait:
            vault.kube.finish_job(LOGINS_JOB)
        except StepFailed:
            pass  # refused before the logins are tried: the caller's pass sees it again
        run = vault.next_pass(run)
    return run


def refused(run) -> StepFailed:
    with pytest.raises(StepFailed) as failed:
        preflight(run)
    return failed.value


def test_the_first_pass_starts_a_verify_job_with_a_presigned_url_and_waits(vault):
    vault.db.error = postgres.DatabaseError("DatabaseUnreachable", "cannot connect")  # not looked at yet
    with pytest.raises(Wait) as waiting:
        preflight(vault.restore_run())
    assert "downloading the artifact and checking its sha256" in waiting.value.message
    dump = vault.backup.manifest.databases[0]
    args = vault.kube.job(VERIFY_JOB)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert dump.sha256 in args and str(dump.size_bytes) in args
    url = vault.kube.secret(VERIFY_URL_SECRET)["url"]
    assert url.startswith(f"https://s3.test/{BUCKET}/{dump.key}?")
    assert vault.kube.writes.index(("create", "Secret", VERIFY_URL_SECRET)) < vault.kube.writes.index(
        ("create", "Job", VERIFY_JOB)
    )


def test_a_failed_verification_stops_the_restore_before_anything_is_touched(vault):
    run = vault.restore_run()
    with pytest.raises(Wait):
        preflight(run)
    vault.kube.fail_job(VERIFY_JOB, "ChecksumMismatch", "the artifact's sha256 is not the manifest's")
    failure = refused(vault.next_pass(run))
    assert failure.reason == "ChecksumMismatch"
    assert "the artifact's sha256 is not the manifest's" in failure.message
    assert "every service is still running" in failure.message
    assert vault.kube.replicas()["wallet"] == 2


def test_a_verified_artifact_a_usable_target_and_matching_emps_pass(vault):
    message = preflight(verified(vault))
    assert message == (
        f"artifact sha256 verified by Job {VERIFY_JOB}; target PostgreSQL {vault.db.version} "
        "reachable; Overwrite: pg_restore --clean into the live database; the backup records no roles "
        "(taken before they were recorded): not checked; EMP fingerprints match"
    )


def test_an_unreachable_target_is_reported_with_its_own_reason(vault):
    run = verified(vault)
    vault.db.error = postgres.DatabaseError("AuthenticationFailed", "password authentication failed")
    failure = refused(run)
    assert failure.reason == "AuthenticationFailed"
    assert failure.message == "the target database is not usable: password authentication failed"


def test_in_place_needs_its_database_to_exist_redirected_does_not(vault):
    vault.db.databases = set()
    failure = refused(verified(vault))
    assert failure.reason == "DatabaseNotFound" and "vault" in failure.message
    vault.kube.jobs.clear()
    preflight(verified(vault, vault.restore_spec(**REDIRECTED)))


def test_a_target_older_than_the_backups_server_is_refused(vault):
    vault.db.version = "15.8"
    assert refused(verified(vault)).reason == "TargetServerTooOld"


# --- the Encryptor Master Passwords -------------------------------------------------------------


def test_emp_secrets_must_be_named_when_the_backup_has_fingerprints(vault):
    failure = refused(verified(vault, vault.restore_spec(encryptorSecrets=[])))
    assert failure.reason == "EncryptorSecretsMissing" and f"{EMP_SECRET}/password" in failure.message


def test_another_emp_than_the_backups_is_refused(vault):
    vault.kube.add_secret(EMP_SECRET, {"password": "another-password"})
    failure = refused(verified(vault))
    assert failure.reason == "EncryptorMismatch" and "undecryptable" in failure.message


def test_the_only_fingerprint_is_compared_whatever_the_target_calls_its_secret(vault):
    vault.kube.add_secret("target-emp", {"emp": EMP})
    spec = vault.restore_spec(encryptorSecrets=[{"name": "target-emp", "key": "emp"}])
    assert preflight(verified(vault, spec)).endswith("EMP fingerprints match")
    vault.kube.add_secret("target-emp", {"emp": "not-the-emp"})
    vault.kube.jobs.clear()
    assert refused(verified(vault, spec)).reason == "EncryptorMismatch"


def test_with_several_fingerprints_each_secret_is_compared_with_its_own(vault):
    other = fingerprints.fingerprint("second-emp", n=fingerprints.MIN_N)
    vault.add_backup("two-emps", emps={f"{EMP_SECRET}/password": vault.emp_fingerprint, "emp-2/password": other})
    vault.kube.add_secret("emp-2", {"password": "second-emp"})
    vault.kube.add_secret("emp-3", {"password": "second-emp"})
    source = {"backupRef": {"name": "two-emps"}}
    both = vault.restore_spec(source=source, encryptorSecrets=[{"name": EMP_SECRET}, {"name": "emp-2"}])
    preflight(verified(vault, both))
    vault.kube.jobs.clear()
    unknown = vault.restore_spec(source=source, encryptorSecrets=[{"name": "emp-3"}])
    failure = refused(verified(vault, unknown))
    assert failure.reason == "EncryptorMismatch" and "no fingerprint for emp-3/password" in failure.message


def test_a_backup_without_fingerprints_needs_no_emp_secrets(vault):
    vault.add_backup("no-emps", emps={})
    preflight(verified(vault, vault.restore_spec(source={"backupRef": {"name": "no-emps"}}, encryptorSecrets=[])))


def test_an_emp_secret_without_its_key_is_refused(vault):
    vault.kube.add_secret(EMP_SECRET, {"other-key": EMP})
    assert refused(verified(vault)).reason == "SecretIncomplete"


def test_a_redirected_target_that_already_holds_objects_is_refused_before_anything_is_touched(vault):
    spec = vault.restore_spec(**REDIRECTED)
    target = spec["target"]["database"]
    vault.db.databases.add(target)
    vault.db.objects[target] = ["public.accounts", "public.wallets"]
    failure = refused(verified(vault, spec))
    assert failure.reason == "TargetNotEmpty" and "public.accounts" in failure.message
    assert "spec.target.database" in failure.message
    vault.db.objects[target] = []  # an empty database of that name is fine
    vault.kube.jobs.clear()
    assert "is empty or new" in preflight(verified(vault, spec))


def test_a_switch_needs_the_restore_users_privileges_and_names_them(vault):
    spec = vault.restore_spec(strategy=None)
    vault.db.missing_privileges = ["CREATEDB (ALTER ROLE restorer CREATEDB): to create the new database and rename"]
    failure = refused(verified(vault, spec))
    assert failure.reason == "SwitchNotPermitted" and "ALTER ROLE restorer CREATEDB" in failure.message
    assert "spec.strategy: Overwrite" in failure.message and "Nothing was touched" in failure.message
    vault.db.missing_privileges = []
    vault.kube.jobs.clear()
    assert "may build vault_walwarden_5e5f0e3c and switch it in" in preflight(verified(vault, spec))


# --- Redirected: every service's login after the repoint, tried by a Job ------------------------


def logins_started(vault, **redirect):
    vault.add_db_info_secrets()
    spec = vault.restore_spec(**REDIRECTED)
    spec["redirect"].update(redirect)
    run = vault.restore_run(spec)
    with pytest.raises(Wait):
        preflight(run)
    vault.kube.finish_job(VERIFY_JOB)
    run = vault.next_pass(run)
    with pytest.raises(Wait) as waiting:
        preflight(run)
    assert "trying every database service's login on the new database" in waiting.value.message
    return run


def test_a_redirected_restore_tries_every_services_login_where_the_repoint_points_it(vault):
    vault.kube.add_secret("prod-logins", {"user": "wallet_prod", "password": "new-wallet-password"}, labels=LOGIN_OK)
    run = logins_started(
        vault,
        dbPort=6432,
        dbName="vault_prod",
        credentials=[
            {"service": "wallet", "secretRef": {"name": "prod-logins"}, "userKey": "user", "passwordKey": "password"}
        ],
    )
    container = vault.kube.job(LOGINS_JOB)["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    wheres = [parse_login_argument(args[i + 1]) for i, arg in enumerate(args) if arg == "--login"]
    assert wheres == [
        (service, "new-db.internal", 6432, "vault_prod")
        for service in ("orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet")
    ]
    logins = vault.kube.secret(LOGINS_SECRET)
    assert (logins["4.user"], logins["4.password"]) == ("wallet_prod", "new-wallet-password")  # the new login
    assert (logins["0.user"], logins["0.password"]) == ("orchestrator", "orchestrator-password")  # kept
    job_text = str(vault.kube.job(LOGINS_JOB))
    assert "password" not in " ".join(container["args"]) and "new-wallet-password" not in job_text
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "LOGIN" in e["name"]} == {LOGINS_SECRET}
    vault.kube.finish_job(LOGINS_JOB)
    assert (
        "the logins of orchestrator, policy-node0, policy-node1, policy-node2, wallet work on new-db.internal:6432"
        in (preflight(vault.next_pass(run)))
    )
    assert (vault.namespace, LOGINS_SECRET) not in vault.kube.secrets  # no copy of the passwords kept


def test_a_refused_login_fails_preflight_naming_the_service_with_nothing_touched(vault):
    run = logins_started(vault)
    vault.kube.fail_job(
        LOGINS_JOB,
        "ServiceLoginRefused",
        "the new database refuses the login of wallet (user 'wallet' on new-db.internal:5432, database 'vault'): "
        "password authentication failed",
    )
    failure = refused(vault.next_pass(run))
    assert failure.reason == "ServiceLoginRefused" and "wallet (user 'wallet'" in failure.message
    assert failure.message.endswith("Nothing was touched: every service is still running")


def test_a_missing_db_info_secret_is_named_before_any_login_is_tried(vault):
    run = vault.restore_run(vault.restore_spec(**REDIRECTED))
    with pytest.raises(Wait):
        preflight(run)
    vault.kube.finish_job(VERIFY_JOB)
    failure = refused(vault.next_pass(run))
    assert failure.reason == "SecretNotFound" and "prod.vault.orchestrator.db-info" in failure.message
    assert vault.kube.job(LOGINS_JOB) is None


def test_new_credentials_from_a_secret_without_the_key_are_refused(vault):
    vault.add_db_info_secrets()
    vault.kube.add_secret("prod-logins", {"DB_USER": "wallet_prod"}, labels=LOGIN_OK)
    spec = vault.restore_spec(**REDIRECTED)
    spec["redirect"]["credentials"] = [{"service": "wallet", "secretRef": {"name": "prod-logins"}}]
    run = vault.restore_run(spec)
    with pytest.raises(Wait):
        preflight(run)
    vault.kube.finish_job(VERIFY_JOB)
    failure = refused(vault.next_pass(run))
    assert failure.reason == "SecretIncomplete" and "DB_PASSWORD" in failure.message and "wallet" in failure.message


# --- the roles the backup records ---------------------------------------------------------------

ROLES = [
    DatabaseRole(name="vault"),
    DatabaseRole(name="vault_app", login=True, member_of=[RoleMembership(role="vault_owner")]),
    DatabaseRole(name="vault_owner"),
]
CREATE_MISSING = deep_merge(REDIRECTED, {"target": {"roles": "CreateMissing"}})


def with_roles(vault, roles=ROLES, **changes):
    vault.add_backup("nightly", roles=roles)
    return verified(vault, vault.restore_spec(**changes))


def test_roles_the_target_lacks_are_refused_by_default_each_named_with_what_to_do(vault):
    failure = refused(with_roles(vault, **REDIRECTED))
    assert failure.reason == "RolesMissing"
    assert "vault_app (LOGIN, member of vault_owner); vault_owner (NOLOGIN)" in failure.message
    assert "new-db.internal:5432" in failure.message and "spec.target.roles: CreateMissing" in failure.message
    assert "every service is still running" in failure.message and "vault (" not in failure.message
    assert vault.kube.replicas()["wallet"] == 2


def test_roles_that_all_exist_pass_in_place_too(vault):
    vault.db.roles |= {"vault_app", "vault_owner"}
    assert "the 3 role(s) the backup needs exist on the target" in preflight(with_roles(vault))


def test_create_missing_checks_the_restore_user_may_create_them(vault):
    assert "vault_app, vault_owner missing on the target, created before pg_restore" in preflight(
        with_roles(vault, **CREATE_MISSING)
    )
    vault.db.role_problems = ["CREATEROLE (ALTER ROLE restorer CREATEROLE ...): to create vault_app, vault_owner"]
    vault.kube.jobs.clear()
    failure = refused(with_roles(vault, **CREATE_MISSING))
    assert failure.reason == "RoleCreationNotPermitted" and "ALTER ROLE restorer CREATEROLE" in failure.message
    assert "Nothing was touched" in failure.message


def test_create_missing_never_creates_a_superuser(vault):
    roles = [*ROLES, DatabaseRole(name="dba", superuser=True)]
    failure = refused(with_roles(vault, roles, **CREATE_MISSING))
    assert failure.reason == "SuperuserRoleMissing" and "dba" in failure.message
    assert vault.db.statements == []


def test_logins_as_a_role_the_restore_creates_are_not_tried_before_it_exists(vault):
    # The wallet logs in as vault_app, which CreateMissing creates (with the wallet's password).
    vault.kube.add_secret("app-login", {"DB_USER": "vault_app", "DB_PASSWORD": "app-password"}, labels=LOGIN_OK)
    credentials = [{"service": "wallet", "secretRef": {"name": "app-login"}}]
    spec = deep_merge(CREATE_MISSING, {"redirect": {"credentials": credentials}})
    vault.add_db_info_secrets()
    run = with_roles(vault, **spec)
    said = preflight(run)
    args = vault.kube.job(LOGINS_JOB)["spec"]["template"]["spec"]["containers"][0]["args"]
    tried = [parse_login_argument(args[i + 1])[0] for i, arg in enumerate(args) if arg == "--login"]
    assert tried == ["orchestrator", "policy-node0", "policy-node1", "policy-node2"]
    assert "wallet log in as role(s) the restore creates for them" in said
