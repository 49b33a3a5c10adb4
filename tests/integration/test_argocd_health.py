"""The Argo CD health checks (argocd/health/*.lua), evaluated the way Argo CD evaluates them: with
gopher-lua (Lua 5.1), Argo CD's reduced libraries, the object as the global `obj` and the returned
table read as {status, message} — by argocd/luatest, built once by argocd/luatest/build.sh.

The sample objects carry statuses written by the operator's own code (the step engine, the
namespace lock step and the handlers' `finish`), so the checks are tested against what the
operator really writes, in every phase of both kinds.

The Lua files are the source of their copies in charts/walwarden/files/argocd/ and in
argocd/argocd-cm-patch.yaml; after editing them, refresh the copies with
    .venv/bin/python tests/integration/test_argocd_health.py --write
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from walwarden.api import (
    BackupArtifact,
    BackupRequest,
    BackupRequestStatus,
    ConditionType,
    RestoreRequest,
    RestoreRequestStatus,
    set_condition,
)
from walwarden.api.schedule import SCHEDULED_AT_ANNOTATION, BackupSchedule
from walwarden.kube import leases as locks
from walwarden.schedule.reconcile import reconcile
from walwarden.settings import OperatorConfig
from walwarden.workflow import steps as common_steps
from walwarden.workflow.engine import Run, Skip, Step, StepFailed, StepTable, Wait, advance, finish

REPO = Path(__file__).resolve().parents[2]
HEALTH_DIR = REPO / "argocd" / "health"
CHART_COPIES = REPO / "charts" / "walwarden" / "files" / "argocd"
CM_PATCH = REPO / "argocd" / "argocd-cm-patch.yaml"
BUILD = REPO / "argocd" / "luatest" / "build.sh"
KINDS = ("BackupRequest", "RestoreRequest")  # the requests: the checks share their phases
CHECKED_KINDS = (*KINDS, "BackupSchedule")  # every kind with a health check
EXAMPLE = {
    "BackupRequest": "backup.yaml",
    "RestoreRequest": "restore-inplace.yaml",
    "BackupSchedule": "backup-schedule.yaml",
}
MODELS = {"BackupRequest": BackupRequest, "RestoreRequest": RestoreRequest}
STATUS_MODELS = {"BackupRequest": BackupRequestStatus, "RestoreRequest": RestoreRequestStatus}

NAMESPACE = "vault"
UID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ARTIFACT_URI = "s3://vault-backups/prod/vault/vault/vault-2025-06-01-0a1b2c3d/vault.dump"

CM_PATCH_HEADER = """\
# Walwarden's Argo CD health checks for BackupRequest, RestoreRequest and BackupSchedule, as a patch of Argo CD's
# argocd-cm ConfigMap (see docs/gitops.md):
#
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd/argocd-cm-patch.yaml
#
# or put the data keys into the argocd-cm you manage (with the argo-cd Helm chart: under
# configs.cm).
#
# Generated from argocd/health/*.lua, which are the source; after editing those, run
#   .venv/bin/python tests/integration/test_argocd_health.py --write
# which also refreshes the chart's copies in charts/walwarden/files/argocd/. A test checks all
# three agree.
"""


def script(kind: str) -> Path:
    return HEALTH_DIR / f"walwarden.io_{kind}.lua"


def render_cm_patch() -> str:
    lines = [
        CM_PATCH_HEADER.rstrip("\n"),
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for kind in CHECKED_KINDS:
        lines.append(f"  resource.customizations.health.walwarden.io_{kind}: |")
        lines += [f"    {line}" if line else "" for line in script(kind).read_text().splitlines()]
    return "\n".join(lines) + "\n"


def write_copies() -> None:
    CHART_COPIES.mkdir(parents=True, exist_ok=True)
    for kind in CHECKED_KINDS:
        (CHART_COPIES / script(kind).name).write_bytes(script(kind).read_bytes())
    CM_PATCH.write_text(render_cm_patch())


# -- running a script the way Argo CD does ---------------------------------------------------------


@pytest.fixture(scope="session")
def luatest() -> Path:
    """The evaluator, built from its pinned Go module on first use (cached outside the clone)."""
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"building argocd/luatest failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


def evaluate(luatest: Path, path: Path, obj: dict, open_libs: bool = False) -> subprocess.CompletedProcess:
    args = [str(luatest), *(["-open-libs"] if open_libs else []), str(path), "-"]
    return subprocess.run(args, input=json.dumps(obj), capture_output=True, text=True, timeout=30, check=False)


def health(luatest: Path, kind: str, obj: dict) -> dict:
    result = evaluate(luatest, script(kind), obj)
    assert result.returncode == 0, f"the {kind} health check failed in gopher-lua:\n{result.stderr}"
    return json.loads(result.stdout)


def lua(luatest: Path, tmp_path: Path, source: str, obj: dict | None = None, open_libs: bool = False):
    path = tmp_path / "check.lua"
    path.write_text(source)
    return evaluate(luatest, path, obj or {}, open_libs)


# -- sample objects, with statuses written by the operator's own code ----------------------------------


def body(kind: str, **spec_changes) -> dict:
    document = yaml.safe_load((REPO / "examples" / EXAMPLE[kind]).read_text())
    document["metadata"].update(namespace=NAMESPACE, uid=UID, generation=1, creationTimestamp="2025-06-01T10:00:00Z")
    document["spec"].update(spec_changes)
    return document


def accepted(kind: str) -> dict:
    """What the handlers write on first sight of a valid request (handlers.requests.accept)."""
    message = f"{kind} validated; waiting to run"
    conditions = set_condition(None, ConditionType.PROGRESSING, True, "Accepted", message, 1)
    return {
        "phase": "Pending",
        "message": message,
        "observedGeneration": 1,
        "conditions": [c.to_dict() for c in conditions],
    }


def ok(message: str):
    return lambda run: message


def waits(message: str):
    def step(run):
        raise Wait(message)

    return step


def fails(reason: str, message: str):
    def step(run):
        raise StepFailed(reason, message)

    return step


def skips(message: str):
    def step(run):
        raise Skip(message)

    return step


def with_artifact(run) -> str:
    run.status.artifact = BackupArtifact(
        uri=ARTIFACT_URI,
        manifest_uri=ARTIFACT_URI.rsplit("/", 1)[0] + "/manifest.json",
        sha256="ab" * 32,
        size_bytes=1048576,
    )
    return "1 dump(s) verified in S3 against the signed manifest"


def drive(monkeypatch, kind: str, steps: list[Step], finished: bool = False, lock_holder=None, **spec_changes) -> dict:
    """The object after one pass of the engine over `steps` (and `finish` when it finished)."""
    monkeypatch.setattr(locks, "acquire", lambda kube, namespace, me, parent=None: lock_holder)
    obj = body(kind, **spec_changes)
    request = MODELS[kind].model_validate(obj)
    status = STATUS_MODELS[kind].model_validate(accepted(kind))
    run = Run(
        kind=kind,
        namespace=NAMESPACE,
        name=obj["metadata"]["name"],
        uid=UID,
        generation=1,
        owner={},
        spec=request.spec,
        status=status,
        kube=None,
        settings=OperatorConfig(poll_seconds=1),
        dry_run=bool(getattr(request.spec, "dry_run", False)),
    )
    table = StepTable(tuple(steps))
    outcome = advance(table, run)
    assert outcome.finished == finished
    if finished:
        finish(table, run, outcome.result)
    return {**obj, "status": json.loads(json.dumps(run.status.to_dict()))}


def undo_with(action):
    """The Restore step's undo, as the Rollback step runs it: `action` says what it put back (or fails)."""
    return lambda run, cause: action(run)


LOCK = Step("AcquireLock", common_steps.acquire_lock)
OTHER = locks.Holder("RestoreRequest", "vault-restore-2025-05-30", "5e6f7a8b-0000-4000-8000-000000000000")
LOCK_MESSAGE = (
    "waiting for RestoreRequest vault-restore-2025-05-30 to finish: one backup or restore at a time in namespace vault"
)
BACKUP_JOB_WAIT = "Job vault-2025-06-01-backup-0a1b2c3d is dumping vault to S3"
SCALE_DOWN_WAIT = "stopping tier 1 (wallet): waiting for 2 pod(s) to stop: wallet-5d9c8-abcde, wallet-5d9c8-fghij"
PG_DUMP_TOO_OLD = (
    "the backup Job vault-2025-06-01-backup-0a1b2c3d failed: pg_dump 15.8 cannot dump a "
    "PostgreSQL 16.4 server: use a pg_dump (a runner image) of major version 16 or newer"
)
CHECKSUM = (
    "the artifact failed verification: the artifact's sha256 is 1f…, the manifest says ab…: it is "
    "corrupt or was replaced; it is not restored. Nothing was touched: every service is still running"
)
RESTORE_FAILED = "pg_restore failed: pg_restore exited 1: pg_restore: error: could not execute query"
ROLLED_BACK = (
    "database restored from the safety backup vault-restore-2025-06-01-safety-0a1b2c3d; started nats, "
    "policy-node0, policy-node1, policy-node2, wallet with their original replica counts"
)


def backup_steps(dump) -> list[Step]:
    return [
        Step("Validate", ok("Secrets checked")),
        LOCK,
        Step("Quiesce", skips("spec.quiesce is false")),
        Step("Dump", dump),
        Step("VerifyArtifact", with_artifact),
        Step("Resume", skips("nothing was stopped"), cleanup=True),
        Step("ReleaseLock", ok("namespace lock released"), cleanup=True),
    ]


def restore_steps(preflight=None, scale_down=None, restore=None, rollback=None) -> list[Step]:
    return [
        Step("Validate", ok("source and target checked")),
        Step("Plan", ok("stops wallet×2")),
        LOCK,
        Step("Preflight", preflight or ok("artifact sha256 verified")),
        Step("SafetyBackup", ok("safety backup taken")),
        Step("ScaleDown", scale_down or ok("stopped wallet → nats")),
        Step(
            "Restore",
            restore or ok("Job restored 1048576 bytes into vault"),
            undo=undo_with(rollback) if rollback else None,
        ),
        Step("Reconfigure", skips("InPlace: the services keep their database")),
        Step("ScaleUp", ok("started nats")),
        Step("Verify", ok("pods Ready; health OK; accounts OK")),
        Step("Rollback", None, rollback=True),
        Step("ReleaseLock", ok("namespace lock released"), cleanup=True),
    ]


# -- every phase, both kinds ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_without_status_is_progressing(luatest, kind):
    assert health(luatest, kind, body(kind)) == {
        "status": "Progressing",
        "message": f"waiting for the Walwarden operator to accept the {kind}",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_pending_request_is_progressing_with_its_message(luatest, kind):
    assert health(luatest, kind, {**body(kind), "status": accepted(kind)}) == {
        "status": "Progressing",
        "message": f"{kind} validated; waiting to run",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_waiting_for_the_lock_says_what_it_waits_for(luatest, monkeypatch, kind):
    steps = [Step("Validate", ok("checked")), LOCK, Step("Next", ok("never reached"))]
    obj = drive(monkeypatch, kind, steps, lock_holder=OTHER)
    status = obj["status"]
    assert status["phase"] == "Pending" and status["currentStep"] == "AcquireLock"
    assert [(c["status"], c["reason"]) for c in status["conditions"] if c["type"] == "Waiting"] == [
        ("True", "LockHeld")
    ]
    assert health(luatest, kind, obj) == {"status": "Progressing", "message": LOCK_MESSAGE}


def test_a_running_backup_names_its_step_and_what_it_does(luatest, monkeypatch):
    obj = drive(monkeypatch, "BackupRequest", backup_steps(dump=waits(BACKUP_JOB_WAIT)))
    assert obj["status"]["phase"] == "Running" and obj["status"]["currentStep"] == "Dump"
    # The lock was taken: a Waiting condition that is False no longer counts.
    assert [c["status"] for c in obj["status"]["conditions"] if c["type"] == "Waiting"] == ["False"]
    assert health(luatest, "BackupRequest", obj) == {"status": "Progressing", "message": f"Dump: {BACKUP_JOB_WAIT}"}


def test_a_running_restore_names_its_step_and_what_it_does(luatest, monkeypatch):
    obj = drive(monkeypatch, "RestoreRequest", restore_steps(scale_down=waits(SCALE_DOWN_WAIT)))
    assert obj["status"]["phase"] == "Running" and obj["status"]["currentStep"] == "ScaleDown"
    assert health(luatest, "RestoreRequest", obj) == {
        "status": "Progressing",
        "message": f"ScaleDown: {SCALE_DOWN_WAIT}",
    }


def test_a_running_request_without_step_messages_still_names_the_step(luatest):
    for kind in KINDS:
        obj = {
            **body(kind),
            "status": {"phase": "Running", "currentStep": "Verify", "steps": [{"name": "Verify", "state": "Running"}]},
        }
        assert health(luatest, kind, obj) == {"status": "Progressing", "message": "step Verify"}


def test_a_succeeded_backup_is_healthy_and_names_its_artifact(luatest, monkeypatch):
    obj = drive(monkeypatch, "BackupRequest", backup_steps(dump=ok("Job finished")), finished=True)
    assert obj["status"]["phase"] == "Succeeded"
    assert health(luatest, "BackupRequest", obj) == {
        "status": "Healthy",
        "message": f"BackupRequest succeeded: {ARTIFACT_URI}",
    }


def test_a_succeeded_restore_is_healthy(luatest, monkeypatch):
    obj = drive(monkeypatch, "RestoreRequest", restore_steps(), finished=True)
    assert obj["status"]["phase"] == "Succeeded"
    assert health(luatest, "RestoreRequest", obj) == {"status": "Healthy", "message": "RestoreRequest succeeded"}


def test_a_finished_dry_run_is_healthy_and_points_at_the_plan(luatest, monkeypatch):
    steps = [
        Step("Validate", ok("checked"), in_dry_run=True),
        Step("Plan", ok("dry run: stops wallet×2"), in_dry_run=True),
        Step("AcquireLock", skips("dry run: nothing changed")),
        Step("Preflight", skips("dry run: nothing changed")),
        Step("ReleaseLock", ok("namespace lock released"), cleanup=True),
    ]
    obj = drive(monkeypatch, "RestoreRequest", steps, finished=True, dryRun=True)
    assert obj["status"]["phase"] == "Succeeded"
    assert health(luatest, "RestoreRequest", obj) == {
        "status": "Healthy",
        "message": "dry run: the plan is in status.plan; nothing was changed",
    }


def test_a_failed_backup_is_degraded_with_the_reason_to_act_on(luatest, monkeypatch):
    obj = drive(monkeypatch, "BackupRequest", backup_steps(dump=fails("PgDumpTooOld", PG_DUMP_TOO_OLD)), finished=True)
    assert obj["status"]["phase"] == "Failed" and obj["status"]["currentStep"] == "Dump"
    assert health(luatest, "BackupRequest", obj) == {"status": "Degraded", "message": PG_DUMP_TOO_OLD}


def test_a_failed_restore_is_degraded_with_the_reason_to_act_on(luatest, monkeypatch):
    obj = drive(
        monkeypatch, "RestoreRequest", restore_steps(preflight=fails("ChecksumMismatch", CHECKSUM)), finished=True
    )
    assert obj["status"]["phase"] == "Failed" and obj["status"]["currentStep"] == "Preflight"
    assert health(luatest, "RestoreRequest", obj) == {"status": "Degraded", "message": CHECKSUM}


def test_a_drill_shows_its_step_while_it_runs_and_a_backup_that_does_not_restore_is_degraded(luatest, monkeypatch):
    build_wait = "Job drill-restore-1a2b3c4d: pg_restore of vault into vault_drill, the scratch database"
    does_not_restore = "the backup nightly does NOT restore: sha256 mismatch. The vault was not touched"
    drill_steps = [
        Step("Validate", ok("drill of nightly into the scratch database vault_drill"), in_dry_run=True),
        Step("Preflight", ok("PostgreSQL 17.2; vault_drill is free")),
        Step("Build", waits(build_wait)),
        Step("Check", ok("1 check(s) passed")),
        Step("DropScratch", ok("the scratch database vault_drill was dropped"), cleanup=True),
    ]
    running = drive(monkeypatch, "RestoreRequest", drill_steps)
    assert health(luatest, "RestoreRequest", running) == {"status": "Progressing", "message": f"Build: {build_wait}"}
    drill_steps[2] = Step("Build", fails("ChecksumMismatch", does_not_restore))
    failed = drive(monkeypatch, "RestoreRequest", drill_steps, finished=True)
    assert health(luatest, "RestoreRequest", failed) == {"status": "Degraded", "message": does_not_restore}


def test_a_rolled_back_restore_is_degraded_and_says_what_was_put_back(luatest, monkeypatch):
    obj = drive(
        monkeypatch,
        "RestoreRequest",
        restore_steps(restore=fails("RestoreFailed", RESTORE_FAILED), rollback=ok(ROLLED_BACK)),
        finished=True,
    )
    assert obj["status"]["phase"] == "RolledBack"
    assert health(luatest, "RestoreRequest", obj) == {
        "status": "Degraded",
        "message": f"{RESTORE_FAILED} — rolled back: {ROLLED_BACK}",
    }


def test_a_failed_rollback_is_loud_in_the_message_and_a_condition_of_its_own(luatest, monkeypatch):
    rollback_failed = (
        "restoring the safety backup vault-restore-2025-06-01-safety-0a1b2c3d failed: pg_restore "
        "exited 1. The services are stopped; restore it by hand, then scale them up"
    )
    obj = drive(
        monkeypatch,
        "RestoreRequest",
        restore_steps(
            restore=fails("RestoreFailed", RESTORE_FAILED), rollback=fails("RollbackFailed", rollback_failed)
        ),
        finished=True,
    )
    status = obj["status"]
    message = f"{RESTORE_FAILED} — ROLLBACK FAILED, the vault is not back to normal: {rollback_failed}"
    assert status["phase"] == "Failed" and status["message"] == message
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Failed"]["reason"] == "RestoreFailed"  # the first failure stays the reason
    assert (conditions["VaultNotRestored"]["status"], conditions["VaultNotRestored"]["reason"]) == (
        "True",
        "RollbackFailed",
    )
    assert health(luatest, "RestoreRequest", obj) == {"status": "Degraded", "message": message}


@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_without_a_status_message_falls_back_to_the_failed_condition(luatest, kind):
    conditions = set_condition(None, ConditionType.FAILED, True, "InvalidSpec", "invalid request: spec.mode", 1)
    obj = {**body(kind), "status": {"phase": "Failed", "conditions": [c.to_dict() for c in conditions]}}
    assert health(luatest, kind, obj) == {"status": "Degraded", "message": "invalid request: spec.mode"}


@pytest.mark.parametrize("kind, phase", [("BackupRequest", "RolledBack"), ("RestoreRequest", "Paused")])
def test_a_phase_the_check_does_not_know_is_unknown(luatest, kind, phase):
    assert health(luatest, kind, {**body(kind), "status": {"phase": phase}}) == {
        "status": "Unknown",
        "message": f"unknown {kind} phase {phase}",
    }


def test_status_objects_as_the_api_server_returns_them_are_read(luatest, monkeypatch):
    """Extra keys Argo CD's object carries (managedFields, annotations, hook finalizers) change nothing."""
    obj = drive(monkeypatch, "BackupRequest", backup_steps(dump=waits(BACKUP_JOB_WAIT)))
    obj = copy.deepcopy(obj)
    obj["metadata"].update(
        finalizers=["argocd.argoproj.io/hook-finalizer"],
        annotations={
            "argocd.argoproj.io/hook": "PreSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
        },
        managedFields=[
            {"manager": "kopf", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}}
        ],
    )
    assert health(luatest, "BackupRequest", obj)["message"] == f"Dump: {BACKUP_JOB_WAIT}"


# -- BackupSchedule: statuses written by one pass of the operator (schedule/reconcile.py) -------------


class ScheduleKube:
    """Just enough of the API for a schedule's pass: its BackupRequests (by label) and no restores."""

    def __init__(self, requests: list[dict], drills: list[dict]):
        self.requests, self.drills, self.created = requests, drills, []
        self.custom = self

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector=""):
        return {"items": self.requests if plural == "backuprequests" else self.drills}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.created.append(body)
        return body


def scheduled(requests: list[dict], now: datetime, drills: list[dict] | None = None, **spec_changes) -> dict:
    """The example schedule with the status one pass at `now` writes over `requests` (and `drills`)."""
    obj = body("BackupSchedule", **spec_changes)
    kube = ScheduleKube(requests, drills or [])
    done = reconcile(kube, BackupSchedule.model_validate(obj), now)  # type: ignore[arg-type]
    return {**obj, "status": done.status.to_dict()}


def nightly_run(name: str, phase: str, at: str) -> dict:
    return {
        "metadata": {"name": name, "uid": UID, "creationTimestamp": at, "annotations": {SCHEDULED_AT_ANNOTATION: at}},
        "spec": {},
        "status": {"phase": phase, "completedAt": at},
    }


NIGHT = datetime(2025, 6, 1, 1, tzinfo=UTC)  # 03:00 Zurich: after the 02:30 run


def test_a_schedule_the_operator_has_not_seen_is_progressing(luatest):
    assert health(luatest, "BackupSchedule", body("BackupSchedule")) == {
        "status": "Progressing",
        "message": "waiting for the Walwarden operator to schedule the BackupSchedule",
    }


def test_a_schedule_whose_last_backup_succeeded_is_healthy_with_its_next_run(luatest):
    runs = [nightly_run("vault-nightly-20250601-0030", "Succeeded", "2025-06-01T00:30:00Z")]
    obj = scheduled(runs, NIGHT)
    assert obj["status"]["lastBackupPhase"] == "Succeeded"
    assert health(luatest, "BackupSchedule", obj) == {"status": "Healthy", "message": obj["status"]["message"]}
    assert "next run at 2025-06-02T00:30:00Z" in obj["status"]["message"]  # 02:30 Zurich, summer time


def test_a_schedule_whose_last_backup_failed_is_degraded_and_names_the_last_success(luatest):
    runs = [
        nightly_run("vault-nightly-20250531-0030", "Succeeded", "2025-05-31T00:30:00Z"),
        nightly_run("vault-nightly-20250601-0030", "Failed", "2025-06-01T00:30:00Z"),
    ]
    assert health(luatest, "BackupSchedule", scheduled(runs, NIGHT)) == {
        "status": "Degraded",
        "message": "the last scheduled backup vault-nightly-20250601-0030 failed (see its message); the last "
        "successful one is vault-nightly-20250531-0030 (2025-05-31T00:30:00Z)",
    }


def test_a_schedule_with_a_bad_time_zone_is_degraded_with_what_to_write(luatest):
    obj = scheduled([], NIGHT, timeZone="Europe/Atlantis")
    assert health(luatest, "BackupSchedule", obj) == {
        "status": "Degraded",
        "message": "spec.timeZone 'Europe/Atlantis' is not an IANA time zone: use a name such as UTC or Europe/Zurich",
    }


def finished_drill(name: str, phase: str, at: str, message: str) -> dict:
    conditions = [{"type": "Failed", "status": "True", "reason": "ChecksumMismatch"}] if phase == "Failed" else []
    return {
        "metadata": {"name": name, "uid": UID, "creationTimestamp": at, "annotations": {SCHEDULED_AT_ANNOTATION: at}},
        "spec": {"source": {"backupRef": {"name": "vault-nightly-20250601-0030"}}},
        "status": {"phase": phase, "completedAt": at, "message": message, "conditions": conditions},
    }


def test_a_schedule_whose_last_drill_failed_is_degraded_with_the_drills_message(luatest):
    runs = [nightly_run("vault-nightly-20250601-0030", "Succeeded", "2025-06-01T00:30:00Z")]
    failed = finished_drill("vault-nightly-drill-20250601-0200", "Failed", "2025-06-01T00:31:00Z", "does NOT restore")
    obj = scheduled(runs, NIGHT, drills=[failed])
    assert health(luatest, "BackupSchedule", obj) == {
        "status": "Degraded",
        "message": "the last restore drill vault-nightly-drill-20250601-0200: does NOT restore: the newest backup "
        "is not proven to restore",
    }
    invalid = scheduled(runs, NIGHT, drill={**obj["spec"]["drill"], "schedule": "61 * * * *"})
    assert health(luatest, "BackupSchedule", invalid) == {
        "status": "Degraded",
        "message": "spec.drill.schedule '61 * * * *' is not a cron expression: five fields (minute hour day-of-month "
        "month day-of-week), e.g. '30 2 * * *' for 02:30 every day, or @daily, @hourly, @weekly (no restore drills "
        "until it is fixed)",
    }
    passed = finished_drill("vault-nightly-drill-20250601-0200", "Succeeded", "2025-06-01T00:31:00Z", "ok")
    assert health(luatest, "BackupSchedule", scheduled(runs, NIGHT, drills=[passed]))["status"] == "Healthy"


def test_a_suspended_schedule_is_suspended(luatest):
    assert health(luatest, "BackupSchedule", scheduled([], NIGHT, suspend=True)) == {
        "status": "Suspended",
        "message": "BackupSchedule suspended: no new runs",
    }


# -- the evaluator is faithful to Argo CD where it matters for these scripts ----------------------------


def test_the_string_library_is_missing_as_in_argocd(luatest, tmp_path):
    source = 'return {status = string.sub("Healthy", 1)}'
    refused = lua(luatest, tmp_path, source)
    assert refused.returncode == 1 and "string" in refused.stderr
    assert json.loads(lua(luatest, tmp_path, source, open_libs=True).stdout) == {"status": "Healthy"}


def test_only_the_safe_os_functions_are_there(luatest, tmp_path):
    source = (
        'local ok = type(os.time) == "function" and os.execute == nil and os.getenv == nil '
        'and io == nil and require("os").exit == nil\n'
        'if ok then return {status = "Healthy"} end\nreturn {status = "Degraded"}'
    )
    assert json.loads(lua(luatest, tmp_path, source).stdout)["status"] == "Healthy"


def test_the_object_becomes_nested_tables_with_one_based_arrays(luatest, tmp_path):
    obj = {"status": {"phase": None, "count": 3, "ok": True, "conditions": [{"type": "Ready"}, {"type": "Failed"}]}}
    source = (
        "local s = obj.status\n"
        "if s.phase == nil and s.count == 3 and s.ok == true and #s.conditions == 2 "
        'and s.conditions[1].type == "Ready" and s.conditions[2].type == "Failed" then\n'
        '  return {status = "Healthy", message = s.conditions[1].type .. "," .. s.conditions[2].type}\n'
        'end\nreturn {status = "Degraded"}'
    )
    assert json.loads(lua(luatest, tmp_path, source, obj).stdout) == {"status": "Healthy", "message": "Ready,Failed"}


def test_an_invalid_status_becomes_unknown_and_a_non_table_is_an_error(luatest, tmp_path):
    assert json.loads(lua(luatest, tmp_path, 'return {status = "Fine"}').stdout) == {
        "status": "Unknown",
        "message": "Lua returned an invalid health status",
    }
    refused = lua(luatest, tmp_path, 'return "Healthy"')
    assert refused.returncode == 1 and "expect table output from Lua script, not string" in refused.stderr


def test_a_script_that_never_ends_is_stopped(luatest, tmp_path):
    refused = lua(luatest, tmp_path, "while true do end")
    assert refused.returncode == 1 and "deadline" in refused.stderr


# -- one source, identical copies ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", CHECKED_KINDS)
def test_the_charts_copy_is_identical(kind):
    copy_path = CHART_COPIES / script(kind).name
    assert copy_path.read_bytes() == script(kind).read_bytes(), (
        f"{copy_path} differs from {script(kind)}: run .venv/bin/python tests/integration/test_argocd_health.py --write"
    )


def test_the_argocd_cm_patch_embeds_the_sources():
    assert CM_PATCH.read_text() == render_cm_patch(), (
        f"{CM_PATCH} is stale: run .venv/bin/python tests/integration/test_argocd_health.py --write"
    )
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert (patch["apiVersion"], patch["kind"], patch["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert "namespace" not in patch["metadata"]  # `kubectl -n argocd patch` names it
    assert patch["data"] == {
        f"resource.customizations.health.walwarden.io_{kind}": script(kind).read_text() for kind in CHECKED_KINDS
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: tests/integration/test_argocd_health.py --write   (refresh the copies of argocd/health/*.lua)")
    write_copies()
    print(f"wrote {CM_PATCH.relative_to(REPO)} and {CHART_COPIES.relative_to(REPO)}/")
