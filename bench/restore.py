"""Benchmark: Walwarden's restore against raw `pg_restore -j2` and against the manual runbook.

    .venv/bin/python bench/restore.py                    # --sizes 0.25GB,2GB
    .venv/bin/python bench/restore.py --size 1GB         # one size

Brings up PostgreSQL, MinIO and the local control plane (devstack/), then, for each of --sizes in
turn: generates a vault database of at least that size (the previous one dropped first) and
backs it up with the backup runner (untimed), and measures, in the same run:

(a) the restore pipeline, into a fresh database each time: raw `pg_restore -j2` from a local file
    against `python -m walwarden runner restore` (what the restore Job runs: download through a
    presigned MinIO URL, size and sha256 checked, then pg_restore -j2 from the staged file);
(b) the service downtime of an InPlace restore of that database under the stand-in vault: a
    script that follows the manual runbook with kubectl and pg_restore, a RestoreRequest with
    strategy Overwrite (pg_restore --clean inside the stop window; safetyBackup: false) and one
    with strategy Switch (built beside the vault while it runs, renamed into place inside the stop
    window). Downtime is measured from the API server, first wallet pod deleted -> last wallet pod
    Ready, and for Walwarden also read from status.downtimeSeconds;
(c) the rollback of each strategy after a failed Verify (a health URL the wallet answers 404):
    Overwrite restores its safety backup, Switch renames back. Rollback time is from the Rollback
    step first seen Running to it seen Succeeded, on a watch of the request's status; afterwards
    the database must hold what it held before the restore, and the wallet must serve it.

Prints a table per size and a summary of the aims (bench/README.md); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/backup.py: the same data generation and process measurement

from backup import BUCKET, DATABASE, REPO, Measurement, generate, measure  # noqa: E402
from kubernetes import client, watch  # noqa: E402

from devstack import vaultdb, wallet  # noqa: E402
from devstack.cluster import ClusterAccess  # noqa: E402
from devstack.controlplane import LocalControlPlane  # noqa: E402
from devstack.observe import PodObserver  # noqa: E402
from devstack.operator_process import EXEC_LABELS, OperatorProcess  # noqa: E402
from devstack.postgres import PostgresServer  # noqa: E402
from devstack.processes import wait_until  # noqa: E402
from devstack.s3 import S3Server  # noqa: E402
from devstack.vault import DEFAULT_SERVICES, DatabaseInfo, deploy_vault, ready_replicas, workload  # noqa: E402
from walwarden.api import parse_timestamp  # noqa: E402
from walwarden.storage.manifest import DatabaseDump, manifest_key, read_manifest  # noqa: E402

MiB = 2**20
PREFIX = "bench/restore"
NAMESPACE = "vault"
ENVIRONMENT = "bench"
WALLET_ADDRESS = "127.3.0.9"  # no Service routing on the local stack: the stand-in binds its own address
WALLET_URL = f"http://{WALLET_ADDRESS}:8080"
URL_ENV = "WALWARDEN_ARTIFACT_URL"
RESTORE_TIMEOUT = 3600
# What the runner prints around pg_restore (runner/restore.py); read from the Job's log to time it.
PG_RESTORE_STARTED, PG_RESTORE_FINISHED = "running pg_restore", "pg_restore finished"

# The manual runbook, as an operator of the vault runs it by hand: record the replica counts, stop
# wallet → policy nodes → nats (each tier gone before the next), pg_restore from the dump downloaded
# beforehand, start nats → policy nodes → wallet (each tier Ready before the next).
RUNBOOK = r"""
set -euo pipefail
k() { kubectl -n "$NAMESPACE" "$@"; }
replicas() { k get "$1" -o jsonpath='{.spec.replicas}'; }
wallet=$(replicas deployment/wallet)
p0=$(replicas statefulset/policy-node0)
p1=$(replicas statefulset/policy-node1)
p2=$(replicas statefulset/policy-node2)
nats=$(replicas statefulset/nats)

k scale deployment/wallet --replicas=0
k wait --for=delete pod -l app.kubernetes.io/name=wallet --timeout=300s
k scale statefulset/policy-node0 statefulset/policy-node1 statefulset/policy-node2 --replicas=0
k wait --for=delete pod -l 'app.kubernetes.io/name in (policy-node0,policy-node1,policy-node2)' --timeout=300s
k scale statefulset/nats --replicas=0
k wait --for=delete pod -l app.kubernetes.io/name=nats --timeout=300s

echo "pg_restore started $(date +%s.%N)"
pg_restore --clean --if-exists --exit-on-error -j 2 -d "$PGDATABASE" "$DUMP"
echo "pg_restore finished $(date +%s.%N)"

k scale statefulset/nats --replicas="$nats"
k rollout status statefulset/nats --timeout=300s
k scale statefulset/policy-node0 --replicas="$p0"
k scale statefulset/policy-node1 --replicas="$p1"
k scale statefulset/policy-node2 --replicas="$p2"
for node in policy-node0 policy-node1 policy-node2; do k rollout status "statefulset/$node" --timeout=300s; done
k scale deployment/wallet --replicas="$wallet"
k rollout status deployment/wallet --timeout=300s
"""


# The middle phase is the work the stop window exists for: pg_restore for the runbook and Overwrite
# (from their output), the Switch step's statements for Switch (seen on the server: SwitchMarks).
PHASES = ("stop tiers", "to restore", "restore", "to start", "start tiers")
# The stand-in vault's replica counts (one stand-in wallet: it binds WALLET_ADDRESS).
REPLICAS = {name: replicas for name, (_, replicas, _) in DEFAULT_SERVICES.items()} | {"wallet": 1}
STOPPED = [name for name in REPLICAS if name != "orchestrator"]  # what both procedures stop and start
RUNBOOK_LABEL, OVERWRITE, SWITCH = "manual runbook", "Overwrite", "Switch"
PROCEDURES = (RUNBOOK_LABEL, OVERWRITE, SWITCH)
FINAL_PHASES = ("Succeeded", "Failed", "RolledBack")
# Verify that fails after ScaleUp, whatever the database holds: the stand-in wallet answers 404.
FAILING_VERIFY = {"healthUrl": f"{WALLET_URL}/no-such-endpoint", "timeoutSeconds": 5}
VAULT_READY_SECONDS = 300  # every service Ready again after a run: generous, never a short wait


@dataclass(frozen=True)
class Downtime:
    """One restore's downtime, first wallet pod deleted → last wallet pod Ready (from the API
    server), cut into phases at the last pod deleted, the restore's start and end (PHASES), and
    the first pod Ready: where the time goes."""

    phases: dict[str, float]
    reported: float | None = None  # status.downtimeSeconds (Walwarden only)
    steps: dict[str, float] | None = None  # Walwarden's step durations (whole seconds: status timestamps)

    @property
    def observed(self) -> float:
        return sum(self.phases.values())

    @property
    def added(self) -> float:
        """What the procedure adds to the downtime beyond the restore itself (pg_restore, or the switch)."""
        return self.observed - self.phases["restore"]


@dataclass(frozen=True)
class Contents:
    """What the vault's database holds, enough to tell one state from another (mutate_accounts
    renames every account and deletes one with what hangs off it)."""

    row_counts: dict[str, int]
    accounts_md5: str
    first_names: list[str]  # what the wallet's /api/v2/accounts?limit=1000 must serve


@dataclass(frozen=True)
class Rollback:
    """A RestoreRequest whose Verify failed after ScaleUp, so that it rolled back."""

    seconds: float  # Rollback step first seen Running → seen Succeeded (status watch, time.monotonic())
    phase: str
    same_data: bool  # the database holds what it held before the restore
    wallet_serves: bool  # ... and the wallet, Ready again, serves it
    reported: float | None  # status.downtimeSeconds
    steps: dict[str, float]  # whole seconds: status timestamps


@dataclass
class SizeResult:
    asked: int
    database_bytes: int
    dump: DatabaseDump
    raw: list[Measurement]
    runner: list[Measurement]
    downtimes: dict[str, list[Downtime]] = field(default_factory=lambda: {p: [] for p in PROCEDURES})
    rollbacks: dict[str, Rollback] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.asked / MiB:,.0f} MiB"

    def median_downtime(self, procedure: str) -> float:
        return median(d.observed for d in self.downtimes[procedure])


def median(values) -> float:
    return statistics.median(list(values))


def wait_until_seen_ready(observer: PodObserver) -> None:
    """The watch reports events a moment after the API server has them: the procedure is over
    once the observer has seen every pod it stopped Ready again, not after a fixed pause."""
    wait_until(
        lambda: all(len(observer.times("ready", [name])) >= REPLICAS[name] for name in STOPPED),
        120,
        "the pod watch to see every stopped service Ready again",
    )


def downtime(observer: PodObserver, window: tuple[float, float], **extra) -> Downtime:
    """The window's (start, end) are time.monotonic() moments, as the observer's events are. The
    cuts look at the stopped services only: a Switch restarts the orchestrator, which keeps running."""
    moments = [
        min(observer.times("deleted", ["wallet"])),
        max(observer.times("deleted", STOPPED)),
        *window,
        min(observer.times("ready", STOPPED)),
        max(observer.times("ready", ["wallet"])),
    ]
    return Downtime(
        {phase: end - start for phase, start, end in zip(PHASES, moments, moments[1:], strict=False)}, **extra
    )


def wait_vault_ready(plane: LocalControlPlane) -> None:
    wait_until(lambda: ready_replicas(plane.access, NAMESPACE) == REPLICAS, VAULT_READY_SECONDS, "every service Ready")


def drop_siblings(server: PostgresServer) -> list[str]:
    """Drop what Switch restores leave beside the vault's database (<db>_pre_restore_…, a
    <db>_walwarden_… sibling), so that disk use stays bounded from one run to the next."""
    with server.connect() as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
    siblings = [name for name in names if name.startswith(f"{DATABASE}_")]
    for name in siblings:
        server.drop_database(name)
    return siblings


def contents(server: PostgresServer) -> Contents:
    with server.connect(DATABASE) as conn:
        md5 = conn.execute("SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM accounts").fetchone()[0]
        names = [row[0] for row in conn.execute("SELECT name FROM accounts ORDER BY id LIMIT 1000")]
    return Contents(vaultdb.row_counts(server.dsn(DATABASE)), md5, names)


def wallet_names() -> list[str]:
    with urllib.request.urlopen(f"{WALLET_URL}/api/v2/accounts?limit=1000", timeout=10) as response:
        return [account["name"] for account in json.loads(response.read())["accounts"]]


# --- setup ---------------------------------------------------------------------------------------


def back_up(server: PostgresServer, s3: S3Server, workdir: Path, prefix: str) -> tuple[DatabaseDump, Path]:
    """The artifact both sides restore: written by the backup runner (under a prefix of its own
    per size, so each manifest names one dump), and downloaded beforehand to a local file for raw
    pg_restore and the runbook."""
    print("backing up with the backup runner (untimed)", flush=True)
    env = {**server.client_env(), "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "walwarden",
            "runner",
            "backup",
            "--database",
            DATABASE,
            "--bucket",
            BUCKET,
            "--prefix",
            prefix,
            "--endpoint",
            s3.endpoint,
            "--force-path-style",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    [dump] = read_manifest(s3.client(), BUCKET, manifest_key(prefix)).databases
    local = workdir / "local.dump"  # the previous size's is overwritten
    s3.client().download_file(BUCKET, dump.key, str(local))
    return dump, local


def presigned_url(s3: S3Server, dump: DatabaseDump) -> str:
    return s3.client().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": dump.key}, ExpiresIn=900)


# --- (a) the restore pipeline ---------------------------------------------------------------------


def pipeline(
    server: PostgresServer, s3: S3Server, dump: DatabaseDump, local: Path, workdir: Path, rounds: int
) -> tuple[list[Measurement], list[Measurement]]:
    """Raw pg_restore -j2 and the runner, alternated, each into a fresh database."""
    pg_restore = shutil.which("pg_restore")  # the one the runner finds on PATH: the same binary for both
    raw, runner = [], []
    for round_ in range(1, rounds + 1):
        for label, runs, argv in (
            ("raw pg_restore -j2 from a local file", raw, [pg_restore, "-j", "2", "-d", "fresh", str(local)]),
            (
                "walwarden runner restore from MinIO",
                runner,
                [
                    sys.executable,
                    "-m",
                    "walwarden",
                    "runner",
                    "restore",
                    "--url-env",
                    URL_ENV,
                    "--sha256",
                    dump.sha256,
                    "--size",
                    str(dump.size_bytes),
                    "--database",
                    "fresh",
                    "--jobs",
                    "2",
                ],
            ),
        ):
            print(f"round {round_}: {label}", flush=True)
            server.drop_database("fresh")
            server.create_database("fresh")
            env = {
                **server.client_env("fresh"),
                URL_ENV: presigned_url(s3, dump),
                "WALWARDEN_STAGING_DIR": str(workdir),
            }
            runs.append(measure(argv, env, workdir / "pipeline.log"))
    server.drop_database("fresh")
    return raw, runner


# --- (b) downtime on the local stack ---------------------------------------------------------------


def deploy(plane: LocalControlPlane, server: PostgresServer, s3: S3Server) -> None:
    """CRDs, the namespace, the admin and S3 Secrets, and the stand-in vault on the generated database."""
    cluster = plane.access
    cluster.kubectl(["apply", "--server-side", "-f", str(REPO / "crds")])
    cluster.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
    cluster.kubectl(["create", "namespace", NAMESPACE])
    wait_until(
        lambda: cluster.kubectl(["get", "sa", "default", "-n", NAMESPACE], check=False).returncode == 0,
        30,
        "the namespace's default service account",
    )
    apply(
        plane,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vault-db-admin"},
            "stringData": {
                "host": "127.0.0.1",
                "port": str(server.port),
                "user": server.superuser,
                "password": server.password,
                "sslmode": "disable",
            },
        },
    )
    apply(plane, s3.credentials_secret("s3-credentials"))
    database = DatabaseInfo("127.0.0.1", server.port, server.superuser, server.password, DATABASE)
    wallet_deployment = workload(
        "wallet",
        "Deployment",
        1,
        EXEC_LABELS,
        wallet.container(f"{ENVIRONMENT}.{NAMESPACE}.wallet.db-info", bind=WALLET_ADDRESS),
    )
    deploy_vault(cluster, NAMESPACE, ENVIRONMENT, database, overrides={"wallet": wallet_deployment})
    wait_until(lambda: ready_replicas(cluster, NAMESPACE) == REPLICAS, 120, "the stand-in vault Ready")


def apply(plane: LocalControlPlane, manifest: dict) -> None:
    plane.kubectl(["apply", "-n", NAMESPACE, "-f", "-"], stdin=json.dumps(manifest))


class LogMarks(threading.Thread):
    """When lines holding each marker first appear in log files that may not exist yet (the pod
    executor writes a pod's output to <pods>/<namespace>_<pod>_<uid>/container.log)."""

    def __init__(self, pattern: str, directory: Path, markers: list[str]):
        super().__init__(daemon=True)
        self.pattern, self.directory, self.markers = pattern, directory, markers
        self.seen: dict[str, float] = {}
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.wait(0.05) and len(self.seen) < len(self.markers):
            for log in self.directory.glob(self.pattern):
                text = log.read_text(errors="replace")
                for marker in self.markers:
                    if marker in text and marker not in self.seen:
                        self.seen[marker] = time.monotonic()

    def stop(self) -> None:
        self._finished.set()
        self.join(5)


class SwitchMarks(threading.Thread):
    """When the Switch step's statements run, seen on the server itself: the operator stores its
    status once a pass, with the step already done, so the status cannot say. Start: the vault's
    database refuses connections (or is gone from its name); end: another database under its
    name accepts them."""

    def __init__(self, server: PostgresServer):
        super().__init__(daemon=True)
        self.server = server
        with server.connect() as conn:
            self.original = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()[0]
        self.seen: dict[str, float] = {}
        self._finished = threading.Event()

    def run(self) -> None:
        with self.server.connect() as conn:
            while not self._finished.wait(0.02) and "end" not in self.seen:
                row = conn.execute(
                    "SELECT oid, datallowconn FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                now = time.monotonic()
                if "start" not in self.seen and row != (self.original, True):
                    self.seen["start"] = now
                if row is not None and row[0] != self.original and row[1]:
                    self.seen["end"] = now

    def stop(self) -> None:
        self._finished.set()
        self.join(5)


class StatusWatch:
    """Each status of one RestoreRequest as the API server stores it, with the time.monotonic()
    moment the watch delivered it: when a step was first seen in a state, to a fraction of a
    second (the status's own timestamps have whole seconds)."""

    def __init__(self, cluster: ClusterAccess, name: str):
        self.api = client.CustomObjectsApi(cluster.api_client())
        self.name = name
        self.seen: list[tuple[float, dict]] = []
        self._stop, self._started, self._finished = threading.Event(), threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusWatch:
        # Watching must have begun before the request is created, or its first states are lost.
        self._thread.start()
        wait_until(lambda: self._started.is_set() or not self._thread.is_alive(), 120, "the status watch to start")
        if not self._started.is_set():
            raise RuntimeError(f"the status watch of {self.name} failed to start: {self._error!r}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)  # the watch ends within its 2 s server timeout

    def _run(self) -> None:
        try:
            self._watch()
        except BaseException as error:  # seen by wait_finished: a dead watch must not pass silently
            self._error = error

    def _watch(self) -> None:
        where = ("walwarden.io", "v1alpha1", NAMESPACE, "restorerequests")
        selector = f"metadata.name={self.name}"
        resource_version = self.api.list_namespaced_custom_object(*where, field_selector=selector)["metadata"][
            "resourceVersion"
        ]
        self._started.set()
        last = None
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object,
                *where,
                field_selector=selector,
                resource_version=resource_version,
                timeout_seconds=2,
            )
            for event in stream:
                if event["type"] == "ERROR":
                    raise RuntimeError(f"the status watch of {self.name} failed: {event['object']}")
                resource_version = event["object"]["metadata"]["resourceVersion"]
                status = event["object"].get("status") or {}
                self.seen.append((time.monotonic(), status))
                step = (status.get("phase"), status.get("currentStep"))
                if step != last:
                    print(f"  RestoreRequest {self.name}: {step[0] or 'Pending'} {step[1] or ''}", flush=True)
                    last = step
                if status.get("phase") in FINAL_PHASES:
                    self._finished.set()
                if self._stop.is_set():
                    return

    def wait_finished(self) -> dict:
        deadline = time.monotonic() + RESTORE_TIMEOUT
        while not self._finished.wait(1):
            if not self._thread.is_alive():
                raise RuntimeError(f"the status watch of {self.name} ended: {self._error!r}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the RestoreRequest {self.name} did not finish in {RESTORE_TIMEOUT}s")
        return self.seen[-1][1]

    def first_seen(self, step: str, state: str) -> float | None:
        for at, status in self.seen:
            if any(s["name"] == step and s.get("state") == state for s in status.get("steps", [])):
                return at
        return None

    def step_window(self, step: str) -> tuple[float, float] | None:
        """First seen Running → first seen Succeeded. A step done within one pass is never stored
        Running: then it starts where it was first seen Succeeded (it counts as 0)."""
        end = self.first_seen(step, "Succeeded")
        if end is None:
            return None
        return (self.first_seen(step, "Running") or end, end)


def restore_request(name: str, s3: S3Server, dump: DatabaseDump, strategy: str, **spec) -> dict:
    """An InPlace RestoreRequest of the artifact; its Preflight verify Job always runs."""
    return {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "RestoreRequest",
        "metadata": {"name": name},
        "spec": {
            "mode": "InPlace",
            "strategy": strategy,
            "source": {"artifact": dump.uri},
            "storage": {
                "s3": {
                    "bucket": BUCKET,
                    "endpoint": s3.endpoint,
                    "forcePathStyle": True,
                    "credentialsSecretRef": {"name": "s3-credentials"},
                }
            },
            "target": {"secretRef": {"name": "vault-db-admin"}, "database": DATABASE},
            "verify": {
                "healthUrl": f"{WALLET_URL}/health",
                "accountsUrl": f"{WALLET_URL}/api/v2/accounts",
                "timeoutSeconds": 120,
            },
            "sessionPolicy": {"onRemaining": "Terminate", "waitSeconds": 3},
            "allowRepeat": True,  # the benchmark restores the same artifact there again and again
            **spec,
        },
    }


def walwarden_restore(
    plane: LocalControlPlane, server: PostgresServer, s3: S3Server, dump: DatabaseDump, name: str, strategy: str
) -> Downtime:
    """A RestoreRequest with `strategy` that succeeds, its downtime as the API server shows it."""
    marks: SwitchMarks | LogMarks
    if strategy == SWITCH:
        marks = SwitchMarks(server)
    else:
        # The restore Job's pod is named after the Job: <request>-restore-<uid>-<suffix>.
        pattern = f"{NAMESPACE}_{name}-restore-*/container.log"
        marks = LogMarks(pattern, plane.workdir / "pods", [PG_RESTORE_STARTED, PG_RESTORE_FINISHED])
    with PodObserver(plane.access, NAMESPACE) as observer, StatusWatch(plane.access, name) as statuses:
        marks.start()
        # safetyBackup: false for Overwrite (no dump of the target taken first); Switch takes none anyway.
        spec = {"safetyBackup": False} if strategy == OVERWRITE else {}
        apply(plane, restore_request(name, s3, dump, strategy, **spec))
        status = statuses.wait_finished()
        if status.get("phase") == "Succeeded":
            wait_until_seen_ready(observer)
        marks.stop()
    if status.get("phase") != "Succeeded":
        raise SystemExit(f"the RestoreRequest {name} did not succeed:\n{json.dumps(status, indent=1)}")
    if len(marks.seen) < 2:
        raise SystemExit(f"the start and end of {name}'s restore in the stop window were not seen ({marks.seen})")
    window = (min(marks.seen.values()), max(marks.seen.values()))
    return downtime(observer, window, reported=status.get("downtimeSeconds"), steps=step_seconds(status))


def rollback_restore(
    plane: LocalControlPlane, server: PostgresServer, s3: S3Server, dump: DatabaseDump, name: str, strategy: str
) -> Rollback:
    """A RestoreRequest whose Verify fails after ScaleUp. The database is changed first (as a bad
    migration would), so that what it held before the restore differs from the backup's: a
    rollback that left the backup's contents in place would show."""
    vaultdb.mutate_accounts(server.dsn(DATABASE))
    before = contents(server)
    # Overwrite's rollback restores its safety backup; Switch's renames back (it takes none).
    spec = {"safetyBackup": True} if strategy == OVERWRITE else {}
    with StatusWatch(plane.access, name) as statuses:
        apply(plane, restore_request(name, s3, dump, strategy, verify=FAILING_VERIFY, **spec))
        status = statuses.wait_finished()
    window = statuses.step_window("Rollback")
    if status.get("phase") != "RolledBack" or window is None:
        raise SystemExit(f"the RestoreRequest {name} did not roll back:\n{json.dumps(status, indent=1)}")
    wait_vault_ready(plane)  # the wallet serves again
    names = wallet_names()
    return Rollback(
        seconds=window[1] - window[0],
        phase=status["phase"],
        same_data=contents(server) == before,
        wallet_serves=bool(names) and names == before.first_names[: len(names)],
        reported=status.get("downtimeSeconds"),
        steps=step_seconds(status),
    )


def step_seconds(status: dict) -> dict[str, float]:
    return {
        step["name"]: (parse_timestamp(step["finishedAt"]) - parse_timestamp(step["startedAt"])).total_seconds()
        for step in status.get("steps", [])
        if step.get("startedAt") and step.get("finishedAt")
    }


def runbook_restore(plane: LocalControlPlane, server: PostgresServer, local: Path, workdir: Path) -> Downtime:
    """The manual runbook (RUNBOOK) on the same stack, from the dump downloaded beforehand."""
    kubectl = plane.access.kubectl_binary
    env = {
        **server.client_env(DATABASE),
        "KUBECONFIG": str(plane.kubeconfig),
        "NAMESPACE": NAMESPACE,
        "DUMP": str(local),
        "PATH": f"{kubectl.parent}{os.pathsep}{os.environ['PATH']}",
    }
    with PodObserver(plane.access, NAMESPACE) as observer:
        result = subprocess.run(["bash", "-c", RUNBOOK], env=env, capture_output=True, text=True)
        if result.returncode == 0:
            wait_until_seen_ready(observer)
    (workdir / "runbook.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"the runbook failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    # The script's marks are wall-clock (date +%s.%N); the observer's events are monotonic.
    offset = time.monotonic() - time.time()
    marks = {
        line.split()[1]: float(line.split()[2]) + offset
        for line in result.stdout.splitlines()
        if line.startswith("pg_restore ")
    }
    return downtime(observer, (marks["started"], marks["finished"]))


# --- main --------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    return [vaultdb.parse_size(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/restore.py", description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("0.25GB,2GB"),
        help="smallest database sizes to generate, in turn, comma-separated (default 0.25GB,2GB)",
    )
    sizes.add_argument(
        "--size", type=vaultdb.parse_size, help="one size only, e.g. 200MB or 1GB (the same as --sizes with one)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of (a) and of (b) per size, each alternating its sides; medians are shown (default 3)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        help="the operator's WALWARDEN_POLL_SECONDS: how soon a waiting step looks again "
        "(default 1; the operator's own default is 5)",
    )
    parser.add_argument("--workdir", type=Path, help="where the servers keep their data (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.size is not None:
        args.sizes = [args.size]

    workdir = Path(tempfile.mkdtemp(prefix="walwarden-bench-restore-", dir=args.workdir))
    results: list[SizeResult] = []
    try:
        with ExitStack() as stack:
            server = stack.enter_context(PostgresServer(workdir / "postgres"))
            s3 = stack.enter_context(S3Server(workdir / "s3"))
            s3.create_bucket(BUCKET)
            plane: LocalControlPlane | None = None
            for index, size in enumerate(args.sizes, start=1):
                print(f"== size {index}/{len(args.sizes)}: {size / MiB:,.0f} MiB", flush=True)
                # A known state to start from: a freshly generated database, nothing beside it.
                drop_siblings(server)
                server.drop_database(DATABASE)
                generate(server, size)
                database_bytes = vaultdb.database_size(server.dsn(DATABASE))
                dump, local = back_up(server, s3, workdir, f"{PREFIX}/size-{index}")

                print("(a) the restore pipeline", flush=True)
                raw, runner = pipeline(server, s3, dump, local, workdir, args.rounds)
                result = SizeResult(size, database_bytes, dump, raw, runner)

                if plane is None:
                    print("starting the local control plane, the stand-in vault and the operator", flush=True)
                    plane = stack.enter_context(LocalControlPlane(workdir / "cluster"))
                    deploy(plane, server, s3)
                    operator = OperatorProcess(
                        plane.access,
                        NAMESPACE,
                        workdir / "operator.log",
                        {"WALWARDEN_POLL_SECONDS": str(args.poll_seconds)},
                    ).start()
                    stack.callback(operator.stop)
                measure_downtimes(plane, server, s3, dump, local, workdir, args.rounds, index, result)
                measure_rollbacks(plane, server, s3, dump, index, result)
                results.append(result)
                report_size(args, result)
            summary(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def between_runs(plane: LocalControlPlane, server: PostgresServer) -> None:
    """Every run starts from the same state: the vault's database holds the backup's contents
    (each restore just put them there), nothing beside it, every service Ready."""
    dropped = drop_siblings(server)
    if dropped:
        print(f"  dropped {', '.join(dropped)}", flush=True)
    wait_vault_ready(plane)


def measure_downtimes(
    plane: LocalControlPlane,
    server: PostgresServer,
    s3: S3Server,
    dump: DatabaseDump,
    local: Path,
    workdir: Path,
    rounds: int,
    index: int,
    result: SizeResult,
) -> None:
    """(b): the three procedures, alternated round by round so that each sees the same machine."""
    for round_ in range(1, rounds + 1):
        between_runs(plane, server)
        print(f"(b) round {round_}: the manual runbook, kubectl and pg_restore", flush=True)
        result.downtimes[RUNBOOK_LABEL].append(runbook_restore(plane, server, local, workdir))
        for strategy in (OVERWRITE, SWITCH):
            between_runs(plane, server)
            print(f"(b) round {round_}: Walwarden, an InPlace RestoreRequest, strategy {strategy}", flush=True)
            name = f"s{index}-{strategy.lower()}-{round_}"
            result.downtimes[strategy].append(walwarden_restore(plane, server, s3, dump, name, strategy))
    between_runs(plane, server)


def measure_rollbacks(
    plane: LocalControlPlane, server: PostgresServer, s3: S3Server, dump: DatabaseDump, index: int, result: SizeResult
) -> None:
    """(c): last at each size, since they leave the database changed (the next size generates anew)."""
    for strategy in (OVERWRITE, SWITCH):
        print(f"(c) rollback: strategy {strategy}, Verify made to fail", flush=True)
        result.rollbacks[strategy] = rollback_restore(
            plane, server, s3, dump, f"s{index}-{strategy.lower()}-rb", strategy
        )
        between_runs(plane, server)


def report_size(args, result: SizeResult) -> None:
    dump, raw, runner = result.dump, result.raw, result.runner
    shortfall = "" if result.database_bytes >= result.asked else f"  (below the {result.label} asked for!)"
    print(f"\n=== {result.label} asked: database {result.database_bytes / MiB:,.1f} MiB (pg_database_size){shortfall}")
    print(
        f"dump      {dump.size_bytes / MiB:,.1f} MiB (custom format); {os.cpu_count()} CPUs shared by PostgreSQL, "
        f"pg_restore, MinIO, the control plane and the operator (load average now {os.getloadavg()[0]:.1f}); "
        f"{args.rounds} round(s) of each, medians\n"
    )

    print("(a) restore pipeline, into a fresh database")
    print(f"{'':36}{'wall time':>10}{'rate':>14}{'tree RSS':>11}")
    for label, runs in (("raw pg_restore -j2 < local file", raw), ("walwarden runner restore < MinIO", runner)):
        seconds = median(r.seconds for r in runs)
        print(
            f"{label:36}{seconds:>9.1f}s{dump.size_bytes / MiB / seconds:>8.1f} MiB/s"
            f"{median(r.peak_tree_rss for r in runs) / MiB:>7.0f} MiB"
        )
    print(
        "per round (raw/walwarden)           "
        + ", ".join(f"{r.seconds:.1f}s/{w.seconds:.1f}s" for r, w in zip(raw, runner, strict=False))
    )
    print(f"ratio walwarden/raw                 {pipeline_ratio(result):.3f}   (aim <= 1.15)\n")

    print(
        "(b) service downtime of an InPlace restore, from the API server: first wallet pod deleted -> last "
        "wallet pod Ready"
    )
    print(
        f"{'':24}"
        + "".join(f"{phase:>13}" for phase in PHASES)
        + f"{'downtime':>10}{'beyond restore':>16}{'status.downtimeSeconds':>24}"
    )
    for procedure in PROCEDURES:
        runs = result.downtimes[procedure]
        reported = f"{median(r.reported for r in runs):>23.1f}s" if runs[0].reported is not None else f"{'-':>24}"
        print(
            f"{procedure:24}"
            + "".join(f"{median(r.phases[phase] for r in runs):>12.1f}s" for phase in PHASES)
            + f"{median(r.observed for r in runs):>9.1f}s{median(r.added for r in runs):>15.1f}s{reported}"
        )
    print(
        "restore: pg_restore for the runbook and Overwrite (from their output); for Switch, its Switch step, "
        "from the vault's database refusing connections to the restored one under its name accepting them "
        "(pg_database, sampled every 20 ms)"
    )
    for procedure in PROCEDURES:
        print(
            f"per round, {procedure:<14}           "
            + ", ".join(f"{r.observed:.1f}s" for r in result.downtimes[procedure])
        )
    for strategy in (OVERWRITE, SWITCH):
        runs = result.downtimes[strategy]
        names = ("Preflight", "Build", "Stage", "ScaleDown", "Restore", "Switch", "ScaleUp", "Verify")
        print(
            f"{strategy} steps (whole seconds)".ljust(36)
            + ", ".join(f"{n} {median(r.steps.get(n, 0) for r in runs):.0f}s" for n in names if n in runs[0].steps)
        )
    print(
        f"The timed RestoreRequests ran with safetyBackup: false (Overwrite; Switch takes none); their Preflight "
        f"verify Job (download and sha256 of the artifact, before any service stops) ran. Operator poll interval "
        f"{args.poll_seconds:g}s.\n"
    )

    print(
        "(c) rollback after a failed Verify (health URL answered 404, timeoutSeconds 5): Rollback step first seen "
        "Running -> seen Succeeded, on the request's status watch"
    )
    print(f"{'':36}{'rollback':>10}{'phase':>12}{'data as before':>16}{'wallet serves it':>18}{'downtimeSeconds':>17}")
    for strategy, label in ((OVERWRITE, "Overwrite (restores its safety dump)"), (SWITCH, "Switch (renames back)")):
        r = result.rollbacks[strategy]
        reported = f"{r.reported:.1f}s" if r.reported is not None else "-"
        print(
            f"{label:36}{r.seconds:>9.1f}s{r.phase:>12}{'yes' if r.same_data else 'NO':>16}"
            f"{'yes' if r.wallet_serves else 'NO':>18}{reported:>17}"
        )
    for strategy in (OVERWRITE, SWITCH):
        steps = result.rollbacks[strategy].steps
        names = ("SafetyBackup", "Build", "Restore", "Switch", "ScaleUp", "Verify", "Rollback")
        print(
            f"{strategy} steps (whole seconds)".ljust(36)
            + ", ".join(f"{n} {steps[n]:.0f}s" for n in names if n in steps)
        )
    print()


def pipeline_ratio(result: SizeResult) -> float:
    return median(r.seconds for r in result.runner) / median(r.seconds for r in result.raw)


def summary(results: list[SizeResult]) -> None:
    """The aims of bench/README.md, PASS or MISS: the bench measures, it asserts nothing."""

    def verdict(met: bool) -> str:
        return "PASS" if met else "MISS"

    smallest, largest = min(results, key=lambda r: r.asked), max(results, key=lambda r: r.asked)
    print(f"=== aims (largest size {largest.label}, smallest {smallest.label})")
    switch, runbook = largest.median_downtime(SWITCH), largest.median_downtime(RUNBOOK_LABEL)
    print(
        f"{verdict(switch <= 0.15 * runbook)}  Switch downtime <= 0.15x the runbook's at {largest.label}: "
        f"{switch:.1f}s vs {runbook:.1f}s = {switch / runbook:.2f}x"
    )
    if len(results) > 1:
        small = smallest.median_downtime(SWITCH)
        print(
            f"{verdict(switch <= 1.3 * small)}  Switch downtime flat in size, {largest.label} within 1.3x of "
            f"{smallest.label}: {switch:.1f}s vs {small:.1f}s = {switch / small:.2f}x"
        )
    else:
        print("n/a   Switch downtime flat in size: one size only")
    rollback = largest.rollbacks[SWITCH].seconds
    print(f"{verdict(rollback <= 5)}  rollback after the Switch <= 5 s at {largest.label}: {rollback:.1f}s")
    for result in results:
        overwrite, runbook = result.median_downtime(OVERWRITE), result.median_downtime(RUNBOOK_LABEL)
        added = median(d.added for d in result.downtimes[OVERWRITE])
        rollbacks = result.rollbacks.values()
        print(
            f"{verdict(pipeline_ratio(result) <= 1.15)}  {result.label}: pipeline ratio walwarden/raw <= 1.15: "
            f"{pipeline_ratio(result):.3f}"
        )
        print(
            f"{verdict(overwrite < runbook)}  {result.label}: Overwrite downtime below the runbook's: "
            f"{overwrite:.1f}s vs {runbook:.1f}s = {overwrite / runbook:.2f}x"
        )
        print(f"{verdict(added <= 5)}  {result.label}: Overwrite's downtime beyond its pg_restore <= 5 s: {added:.1f}s")
        print(
            f"{verdict(all(r.same_data and r.wallet_serves for r in rollbacks))}  {result.label}: after each "
            "rollback the database holds what it held before, and the wallet serves it"
        )


if __name__ == "__main__":
    sys.exit(main())
