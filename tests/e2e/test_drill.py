"""Restore drills on the real local stack: a RestoreRequest of mode Drill restores a backup into a
scratch database on the vault's own server, proves it (row counts, SQL checks as a reading login)
and drops it, while the vault's services, db-info secrets and database stay exactly as they were.
A corrupted artifact and a failing check fail loudly; the vault's own database, and a database
the drill did not make, are refused before anything is written."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from devstack.vault import ready_replicas
from tests.e2e.vaults import (
    DB_SERVICES,
    ENVIRONMENT,
    Vault,
    account_names,
    flip_a_byte_of_the_dump,
    restore_killing_at,
)


def drill(vault: Vault, name: str, backup: str = "nightly", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "RestoreRequest",
        "metadata": {"name": name},
        "spec": {
            "mode": "Drill",
            "source": {"backupRef": {"name": backup}},
            "target": {"secretRef": {"name": "vault-db-admin"}},
            **spec,
        },
    }


def vault_state(vault: Vault) -> dict[str, Any]:
    """Everything a drill must leave as it was: the services' replicas, generations and pods, the
    db-info secrets' resourceVersions, and the vault database's rows."""
    workloads = {}
    for kind in ("deployments", "statefulsets"):
        for item in vault.cluster.kubectl_json(["get", kind, "-n", vault.namespace])["items"]:
            workloads[item["metadata"]["name"]] = (item["spec"].get("replicas"), item["metadata"]["generation"])
    pods = {
        (item["metadata"]["name"], item["metadata"]["uid"])
        for item in vault.cluster.kubectl_json(["get", "pods", "-n", vault.namespace])["items"]
        if all(owner["kind"] != "Job" for owner in item["metadata"].get("ownerReferences", []))
    }
    secrets = {
        service: vault.cluster.kubectl_json(
            ["get", "secret", f"{ENVIRONMENT}.{vault.namespace}.{service}.db-info", "-n", vault.namespace]
        )["metadata"]["resourceVersion"]
        for service in DB_SERVICES
    }
    return {
        "workloads": workloads,
        "ready": ready_replicas(vault.cluster, vault.namespace),
        "pods": pods,
        "secrets": secrets,
        "accounts": account_names(vault.postgres.dsn(vault.database)),
    }


def databases(vault: Vault) -> set[str]:
    with psycopg.connect(vault.postgres.dsn()) as connection:
        return {row[0] for row in connection.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def drill_roles(vault: Vault) -> list[str]:
    with psycopg.connect(vault.postgres.dsn()) as connection:
        return [
            row[0] for row in connection.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'walwarden_drill%'")
        ]


def failed_reason(request: dict) -> list[str]:
    return [c["reason"] for c in request["status"]["conditions"] if c["type"] == "Failed" and c["status"] == "True"]


def warnings(vault: Vault, name: str) -> list[str]:
    selector = f"involvedObject.name={name},type=Warning"
    listing = vault.cluster.kubectl_json(["get", "events", "-n", vault.namespace, "--field-selector", selector])
    return [event["reason"] for event in listing["items"]]


def test_a_drill_restores_into_a_scratch_database_proves_it_and_drops_it_leaving_the_vault_as_it_was(vault: Vault):
    vault.backup()
    accounts = account_names(vault.postgres.dsn(vault.database))
    before = vault_state(vault)
    checks = [
        {"name": "has-accounts", "sql": "SELECT count(*) > 0 FROM accounts", "expected": "t"},
        {"name": "account-count", "sql": "SELECT count(*) FROM accounts", "expected": str(len(accounts))},
        # The checks' login may read the scratch database and nothing else: a write is refused.
        {
            "name": "cannot-write",
            "sql": "SELECT has_table_privilege(current_user, 'accounts', 'INSERT')",
            "expected": "f",
        },
    ]
    # A check of your own, as a Job: it gets the scratch database's connection (as the reading
    # login) in the libpq environment, so plain psql connects.
    script = 'test "$(psql -Atc "SELECT count(*) FROM accounts")" = "$EXPECTED" && test "$PGUSER" != postgres'
    job = {"image": "postgres:17", "command": ["sh", "-c", script]}
    job["env"] = [{"name": "EXPECTED", "value": str(len(accounts))}]
    vault.apply(drill(vault, "drill", drill={"checks": checks, "job": job}))
    request = vault.wait_finished("restorerequests", "drill")
    status = request["status"]
    assert status["phase"] == "Succeeded", vault.describe("restorerequests", "drill")
    scratch = f"{vault.database}_drill"
    assert status["drill"]["scratchDatabase"] == scratch
    assert status["drill"]["rowCountsChecked"] >= 1
    assert [(c["name"], c["passed"]) for c in status["drill"]["checks"]] == [
        ("has-accounts", True),
        ("account-count", True),
        ("cannot-write", True),
    ]
    assert status["drill"]["droppedAt"]
    assert "the check Job" in next(s["message"] for s in status["steps"] if s["name"] == "Check")
    selector = f"job-name={status['drill']['job']}"
    pods = vault.cluster.kubectl_json(["get", "pods", "-n", vault.namespace, "-l", selector])["items"]
    assert [pod["status"]["phase"] for pod in pods] == ["Succeeded"]  # it ran, and its checks held
    assert [s["name"] for s in status["steps"]] == ["Validate", "Preflight", "Build", "Check", "DropScratch"]
    assert "row counts of" in next(s["message"] for s in status["steps"] if s["name"] == "Build")
    assert scratch not in databases(vault)
    assert drill_roles(vault) == []
    assert vault_state(vault) == before
    secrets = vault.cluster.kubectl_json(["get", "secrets", "-n", vault.namespace])["items"]
    assert not [s["metadata"]["name"] for s in secrets if "-drill-login-" in s["metadata"]["name"]]


def test_a_drill_whose_check_fails_fails_loudly_and_still_drops_its_scratch_database(vault: Vault):
    vault.backup()
    before = vault_state(vault)
    checks = [
        {"name": "no-accounts", "sql": "SELECT count(*) FROM accounts", "expected": "0"},
        # One statement only: nothing gets out of the read-only transaction.
        {"name": "escape", "sql": "COMMIT; SELECT 1", "expected": "1"},
        {"name": "write", "sql": "DELETE FROM accounts RETURNING 1", "expected": "1"},
    ]
    vault.apply(drill(vault, "drill-check", drill={"checks": checks}))
    request = vault.wait_finished("restorerequests", "drill-check")
    status = request["status"]
    assert status["phase"] == "Failed", vault.describe("restorerequests", "drill-check")
    assert failed_reason(request) == ["DrillCheckFailed"]
    assert "3 of 3 check(s) failed" in status["message"]
    assert "no-accounts: answered" in status["message"] and "expected '0'" in status["message"]
    results = {c["name"]: c["message"] for c in status["drill"]["checks"]}
    assert "cannot insert multiple commands into a prepared statement" in results["escape"], results
    # A write is not even run: a check is a query (SELECT, VALUES, TABLE, WITH), wrapped to bound its answer.
    assert "the statement is not a query" in results["write"], results
    assert "DrillCheckFailed" in warnings(vault, "drill-check")
    assert status["drill"]["droppedAt"]
    assert f"{vault.database}_drill" not in databases(vault)
    assert drill_roles(vault) == []
    assert vault_state(vault) == before


def test_a_drill_of_a_corrupted_artifact_fails_loudly_and_leaves_nothing_behind(vault: Vault):
    flip_a_byte_of_the_dump(vault, vault.backup())
    before = vault_state(vault)
    vault.apply(drill(vault, "drill-corrupt"))
    request = vault.wait_finished("restorerequests", "drill-corrupt")
    status = request["status"]
    assert status["phase"] == "Failed", vault.describe("restorerequests", "drill-corrupt")
    assert status["currentStep"] == "Build"  # the step that failed
    assert {s["name"]: s["state"] for s in status["steps"]}["DropScratch"] == "Succeeded"
    assert failed_reason(request) == ["ChecksumMismatch"]
    assert "does NOT restore" in status["message"]
    assert "ChecksumMismatch" in warnings(vault, "drill-corrupt")
    assert f"{vault.database}_drill" not in databases(vault)
    assert vault_state(vault) == before


def test_a_drill_refuses_the_vaults_own_database_and_a_database_it_did_not_make(vault: Vault):
    vault.backup()
    before = vault_state(vault)
    own = drill(vault, "drill-own", target={"secretRef": {"name": "vault-db-admin"}, "database": vault.database})
    vault.apply(own)
    request = vault.wait_finished("restorerequests", "drill-own")
    assert failed_reason(request) == ["DrillTargetIsTheVault"], vault.describe("restorerequests", "drill-own")
    assert "a drill restores under a name of its own" in request["status"]["message"]
    assert [s["name"] for s in request["status"]["steps"] if s["state"] not in ("Skipped",)] == [
        "Validate",
        "DropScratch",
    ]

    vault.postgres.create_database("reports")
    with psycopg.connect(vault.postgres.dsn("reports"), autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (id int)")
        connection.execute("INSERT INTO kept VALUES (7)")
    taken = drill(vault, "drill-taken", target={"secretRef": {"name": "vault-db-admin"}, "database": "reports"})
    vault.apply(taken)
    request = vault.wait_finished("restorerequests", "drill-taken")
    assert failed_reason(request) == ["ScratchDatabaseExists"], vault.describe("restorerequests", "drill-taken")
    assert "Set spec.target.database to a name that is free" in request["status"]["message"]
    with psycopg.connect(vault.postgres.dsn("reports")) as connection:
        assert connection.execute("SELECT id FROM kept").fetchall() == [(7,)]
    assert vault_state(vault) == before


DRILL_POINTS = ["drill:scratch-created", "drill:reader-created", "drill:scratch-dropped"]


def test_the_operator_killed_at_any_point_of_a_drill_resumes_and_leaves_nothing_behind(vault: Vault, tmp_path):
    """SIGKILL (a failpoint: the operator kills itself there) after the scratch database is made,
    after the checks' login is made, and after the scratch database is dropped; a new operator
    each time, with the points not reached yet. The drill ends Succeeded, nothing is left."""
    vault.backup()
    before = vault_state(vault)
    checks = [{"name": "has-accounts", "sql": "SELECT count(*) > 0 FROM accounts", "expected": "t"}]
    hit = restore_killing_at(vault, tmp_path, DRILL_POINTS, drill(vault, "drill-killed", drill={"checks": checks}))
    status = vault.get("restorerequests", "drill-killed")["status"]
    record = f"hit {hit}\n" + json.dumps(status, indent=1)
    assert hit == DRILL_POINTS, record
    assert status["phase"] == "Succeeded", record
    assert f"{vault.database}_drill" not in databases(vault), record
    assert drill_roles(vault) == [], record
    assert vault_state(vault) == before


def test_a_wrong_host_a_wrong_password_or_a_user_that_may_not_create_databases_is_refused_before_anything_is_made(
    vault: Vault,
):
    vault.backup()
    before = vault_state(vault)
    vault.admin_secret("wrong-password", password="not-the-password")
    with psycopg.connect(vault.postgres.dsn(), autocommit=True) as connection:
        connection.execute("CREATE ROLE drill_reader_only LOGIN PASSWORD 'reader-password'")
    vault.admin_secret("no-createdb", user="drill_reader_only", password="reader-password")
    vault.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "wrong-host"},
            # A loopback port nothing listens on: the wrong server, refused at once.
            "stringData": {"host": "127.0.0.1", "port": "1", "user": "postgres", "password": "x"},
        }
    )
    expected = {
        "wrong-password": ("AuthenticationFailed", "the drill's target server is not usable"),
        "no-createdb": ("DrillNotPermitted", "lacks what a drill needs: CREATEDB (ALTER ROLE drill_reader_only"),
        "wrong-host": ("DatabaseUnreachable", "the drill's target server is not usable"),
    }
    checks = [{"name": "has-accounts", "sql": "SELECT count(*) > 0 FROM accounts", "expected": "t"}]
    for secret in expected:
        vault.apply(drill(vault, f"drill-{secret}", target={"secretRef": {"name": secret}}, drill={"checks": checks}))
    for secret, (reason, words) in expected.items():
        request = vault.wait_finished("restorerequests", f"drill-{secret}")
        assert failed_reason(request) == [reason], vault.describe("restorerequests", f"drill-{secret}")
        assert words in request["status"]["message"], request["status"]["message"]
        assert request["status"]["currentStep"] == "Preflight"
    assert f"{vault.database}_drill" not in databases(vault)
    assert drill_roles(vault) == []
    assert vault_state(vault) == before
