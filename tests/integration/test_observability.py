"""Metrics, liveness and JSON logs of a real operator process, scraped after a backup and a restore."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from devstack.operator_process import OperatorProcess
from devstack.processes import free_port
from devstack.pytest_kube import wait_for
from tests.integration.conftest import BackupStack, deploy_stand_in_vault, describe

pytestmark = pytest.mark.integration


def scrape(port: int, missing_ok: bool = False) -> dict[str, float]:
    """The walwarden_ samples; with missing_ok, none while the endpoint is not up (yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        if missing_ok:
            return {}
        raise
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^(walwarden_[^ ]+) ([0-9.e+-]+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_metrics_health_and_json_logs_after_a_backup_and_a_restore(stack: BackupStack, vault_db, tmp_path):
    metrics_port, health_port = free_port(), free_port()
    stack.operator.stop()
    stack.operator = OperatorProcess(
        stack.cluster,
        stack.namespace,
        tmp_path / "observed.log",
        {
            "WALWARDEN_POLL_SECONDS": "1",
            "WALWARDEN_METRICS_PORT": str(metrics_port),
            "WALWARDEN_HEALTH_PORT": str(health_port),
            "WALWARDEN_LISTEN_ADDRESS": "127.0.0.1",
            "WALWARDEN_LOG_FORMAT": "json",
        },
    ).start()
    deploy_stand_in_vault(stack)
    stack.apply(stack.backup_request("nightly", [vault_db.name]))
    assert stack.wait_finished("nightly")["status"]["phase"] == "Succeeded", describe(stack, "nightly")
    stack.apply(
        {
            "apiVersion": "walwarden.io/v1alpha1",
            "kind": "RestoreRequest",
            "metadata": {"name": "undo"},
            "spec": {"mode": "InPlace", "source": {"backupRef": {"name": "nightly"}}, "safetyBackup": False},
        }
    )
    wait_for(
        lambda: (
            (
                stack.cluster.kubectl_json(["get", "restorerequest", "undo", "-n", stack.namespace]).get("status") or {}
            ).get("phase")
            in ("Succeeded", "Failed", "RolledBack")
        ),
        180,
        "the restore",
    )
    restore = stack.cluster.kubectl_json(["get", "restorerequest", "undo", "-n", stack.namespace])
    verify = next(step for step in restore["status"]["steps"] if step["name"] == "Verify")
    assert verify["message"] == (
        "pods Ready; health not checked (spec.verify.healthUrl is unset); accounts not "
        "checked (spec.verify.accountsUrl is unset)"
    ), verify  # said, not silently skipped

    samples = scrape(metrics_port)
    ns = stack.namespace
    assert samples[f'walwarden_requests_total{{kind="BackupRequest",namespace="{ns}",result="Succeeded"}}'] == 1
    assert samples[f'walwarden_requests_total{{kind="RestoreRequest",namespace="{ns}",result="Succeeded"}}'] == 1
    assert samples[f'walwarden_last_successful_backup_timestamp_seconds{{namespace="{ns}"}}'] > 0
    assert samples[f'walwarden_backup_size_bytes{{namespace="{ns}"}}'] > 0
    assert samples[f'walwarden_restore_downtime_seconds_count{{namespace="{ns}"}}'] == 1
    assert samples['walwarden_step_duration_seconds_count{kind="RestoreRequest",step="Switch"}'] == 1

    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as response:
        assert response.status == 200
    lines = [line for line in (tmp_path / "observed.log").read_text().splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["message"] is not None for line in lines)
    assert stack.postgres.password not in (tmp_path / "observed.log").read_text()

    # A restarted operator knows the last successful backup again (from the finished request it
    # finds), so an alert on that timestamp's age neither goes silent nor fires falsely.
    stack.operator.stop()
    stack.operator = OperatorProcess(
        stack.cluster,
        stack.namespace,
        tmp_path / "restarted.log",
        {"WALWARDEN_METRICS_PORT": str(metrics_port), "WALWARDEN_LISTEN_ADDRESS": "127.0.0.1"},
    ).start()
    last_backup = f'walwarden_last_successful_backup_timestamp_seconds{{namespace="{ns}"}}'
    # A new Python process importing kopf and the clients: seconds on a busy machine.
    wait_for(lambda: last_backup in scrape(metrics_port, missing_ok=True), 120, "the restarted operator's backup gauge")
    assert scrape(metrics_port)[last_backup] == samples[last_backup]
