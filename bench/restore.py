"""Benchmark: Walwarden's restore against raw `pg_restore -j2` and against the manual runbook.

    .venv/bin/python bench/restore.py --size 1GB

Brings up PostgreSQL, MinIO and the local control plane (devstack/), generates a vault database of
at least --size and backs it up with the backup runner (untimed), then measures, in the same run:

(a) the restore pipeline, into a fresh database each time: raw `pg_restore -j2` from a local file
    against `python -m walwarden runner restore` (what the restore Job runs: download through a
    presigned MinIO URL, size and sha256 checked, then pg_restore -j2 from the staged file);
(b) the service downtime of an InPlace restore of that database under the stand-in vault: a
    RestoreRequest (safetyBackup: false; its Preflight verify Job runs, outside the downtime)
    against a script that follows the manual runbook with kubectl and pg_restore. Downtime is
    measured from the API server, first wallet pod deleted → last wallet pod Ready, and for
    Walwarden also read from status.downtimeSeconds.

Prints a table; asserts nothing. Aims (bench/README.md): pipeline ratio <= 1.15; Walwarden's
downtime lower than the runbook's, and at most 5 s of it beyond pg_restore itself.
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench/backup.py: the same data generation and process measurement

from backup import BUCKET, DATABASE, REPO, Measurement, generate, measure  # noqa: E402

from devstack import vaultdb, wallet  # noqa: E402
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


PHASES = ("stop tiers", "to pg_restore", "pg_restore", "to start", "start tiers")
# The stand-in vault's replica counts (one stand-in wallet: it binds WALLET_ADDRESS).
REPLICAS = {name: replicas for name, (_, replicas, _) in DEFAULT_SERVICES.items()} | {"wallet": 1}
STOPPED = [name for name in REPLICAS if name != "orchestrator"]  # what both procedures stop and start


@dataclass(frozen=True)
class Downtime:
    """One restore's downtime, first wallet pod deleted → last wallet pod Ready (from the API
    server), cut into phases at the last pod deleted, pg_restore's start and end, and the first pod
    Ready: where the time goes."""

    phases: dict[str, float]
    reported: float | None = None  # status.downtimeSeconds (Walwarden only)
    steps: dict[str, float] | None = None  # Walwarden's step durations (whole seconds: status timestamps)

    @property
    def observed(self) -> float:
        return sum(self.phases.values())

    @property
    def added(self) -> float:
        """What the procedure adds to the downtime beyond pg_restore itself."""
        return self.observed - self.phases["pg_restore"]


def wait_until_seen_ready(observer: PodObserver) -> None:
    """The watch reports events a moment after the API server has them: the procedure is over
    once the observer has seen every pod it stopped Ready again, not after a fixed pause."""
    wait_until(
        lambda: all(len(observer.times("ready", [name])) >= REPLICAS[name] for name in STOPPED),
        120,
        "the pod watch to see every stopped service Ready again",
    )


def downtime(observer: PodObserver, pg_restore: tuple[float, float], **extra) -> Downtime:
    """pg_restore's (start, end) are time.monotonic() moments, as the observer's events are."""
    services = list(DEFAULT_SERVICES)
    moments = [
        min(observer.times("deleted", ["wallet"])),
        max(observer.times("deleted", services)),
        *pg_restore,
        min(observer.times("ready", services)),
        max(observer.times("ready", ["wallet"])),
    ]
    return Downtime(
        {phase: end - start for phase, start, end in zip(PHASES, moments, moments[1:], strict=False)}, **extra
    )


# --- setup ---------------------------------------------------------------------------------------


def back_up(server: PostgresServer, s3: S3Server, workdir: Path) -> tuple[DatabaseDump, Path]:
    """The artifact both sides restore: written by the backup runner, and downloaded beforehand
    to a local file for raw pg_restore and the runbook."""
    print("backing up with the backup runner (untimed)", flush=True)
    s3.create_bucket(BUCKET)
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
            PREFIX,
            "--endpoint",
            s3.endpoint,
            "--force-path-style",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    [dump] = read_manifest(s3.client(), BUCKET, manifest_key(PREFIX)).databases
    local = workdir / "local.dump"
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


def walwarden_restore(plane: LocalControlPlane, s3: S3Server, dump: DatabaseDump, name: str) -> Downtime:
    """An InPlace RestoreRequest of the artifact; safetyBackup: false, its Preflight still runs."""
    request = {
        "apiVersion": "walwarden.io/v1alpha1",
        "kind": "RestoreRequest",
        "metadata": {"name": name},
        "spec": {
            "mode": "InPlace",
            "source": {"artifact": dump.uri},
            "safetyBackup": False,
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
        },
    }
    # The restore Job's pod is named after the Job: <request>-restore-<uid>-<suffix>.
    marks = LogMarks(
        f"{NAMESPACE}_{name}-restore-*/container.log", plane.workdir / "pods", [PG_RESTORE_STARTED, PG_RESTORE_FINISHED]
    )
    with PodObserver(plane.access, NAMESPACE) as observer:
        marks.start()
        apply(plane, request)
        status = wait_finished(plane, name)
        if status.get("phase") == "Succeeded":
            wait_until_seen_ready(observer)
        marks.stop()
    if status.get("phase") != "Succeeded":
        raise SystemExit(f"the RestoreRequest did not succeed:\n{json.dumps(status, indent=1)}")
    if len(marks.seen) < 2:
        raise SystemExit(f"pg_restore's start and end were not found in the restore Job's log ({marks.seen})")
    return downtime(
        observer,
        (marks.seen[PG_RESTORE_STARTED], marks.seen[PG_RESTORE_FINISHED]),
        reported=status.get("downtimeSeconds"),
        steps=step_seconds(status),
    )


def wait_finished(plane: LocalControlPlane, name: str) -> dict:
    deadline, last = time.monotonic() + RESTORE_TIMEOUT, None
    while time.monotonic() < deadline:
        status = (plane.kubectl_json(["get", "restorerequest", name, "-n", NAMESPACE]) or {}).get("status") or {}
        step = (status.get("phase"), status.get("currentStep"))
        if step != last:
            print(f"  RestoreRequest {name}: {step[0] or 'Pending'} {step[1] or ''}", flush=True)
            last = step
        if status.get("phase") in ("Succeeded", "Failed", "RolledBack"):
            return status
        time.sleep(0.5)
    raise SystemExit(f"the RestoreRequest {name} did not finish in {RESTORE_TIMEOUT}s")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/restore.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        type=vaultdb.parse_size,
        default=vaultdb.parse_size("1GB"),
        help="smallest database size to generate, e.g. 200MB or 1GB (default 1GB)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of (a) and of (b), each alternating both sides; medians are shown (default 3)",
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

    workdir = Path(tempfile.mkdtemp(prefix="walwarden-bench-restore-", dir=args.workdir))
    try:
        with ExitStack() as stack:
            server = stack.enter_context(PostgresServer(workdir / "postgres"))
            s3 = stack.enter_context(S3Server(workdir / "s3"))
            generate(server, args.size)
            database_bytes = vaultdb.database_size(server.dsn(DATABASE))
            dump, local = back_up(server, s3, workdir)

            print("(a) the restore pipeline", flush=True)
            raw, runner = pipeline(server, s3, dump, local, workdir, args.rounds)

            print("(b) downtime: starting the local control plane, the stand-in vault and the operator", flush=True)
            plane = stack.enter_context(LocalControlPlane(workdir / "cluster"))
            deploy(plane, server, s3)
            operator = OperatorProcess(
                plane.access, NAMESPACE, workdir / "operator.log", {"WALWARDEN_POLL_SECONDS": str(args.poll_seconds)}
            ).start()
            stack.callback(operator.stop)
            walwarden, manual = [], []
            for round_ in range(1, args.rounds + 1):
                print(f"round {round_}: Walwarden, an InPlace RestoreRequest", flush=True)
                walwarden.append(walwarden_restore(plane, s3, dump, f"bench-{round_}"))
                print(f"round {round_}: the manual runbook, kubectl and pg_restore", flush=True)
                manual.append(runbook_restore(plane, server, local, workdir))
            report(args, database_bytes, dump, raw, runner, walwarden, manual)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(
    args,
    database_bytes: int,
    dump: DatabaseDump,
    raw: list[Measurement],
    runner: list[Measurement],
    walwarden: list[Downtime],
    manual: list[Downtime],
) -> None:
    def median(values) -> float:
        return statistics.median(list(values))

    shortfall = "" if database_bytes >= args.size else f"  (below the {args.size / MiB:,.0f} MiB asked for!)"
    print(f"\ndatabase  {database_bytes / MiB:,.1f} MiB (pg_database_size){shortfall}")
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
    ratio = median(r.seconds for r in runner) / median(r.seconds for r in raw)
    print(f"ratio walwarden/raw                 {ratio:.3f}   (aim <= 1.15)\n")

    print(
        "(b) service downtime of an InPlace restore, from the API server: first wallet pod deleted -> last "
        "wallet pod Ready"
    )
    print(f"{'':24}" + "".join(f"{phase:>14}" for phase in PHASES) + f"{'downtime':>10}{'beyond pg_restore':>19}")
    for label, runs in (("manual runbook", manual), ("Walwarden RestoreRequest", walwarden)):
        print(
            f"{label:24}"
            + "".join(f"{median(r.phases[phase] for r in runs):>13.1f}s" for phase in PHASES)
            + f"{median(r.observed for r in runs):>9.1f}s{median(r.added for r in runs):>18.1f}s"
        )
    for label, runs in (("manual", manual), ("Walwarden", walwarden)):
        print(f"per round, {label:<14}           " + ", ".join(f"{r.observed:.1f}s" for r in runs))
    ratio = median(r.observed for r in walwarden) / median(r.observed for r in manual)
    print(f"ratio walwarden/manual              {ratio:.3f}   (aim < 1)")
    print(
        f"Walwarden's operator-added downtime {median(r.added for r in walwarden):.1f}s   (aim <= 5 s: the downtime "
        "minus its restore Job's pg_restore)"
    )
    print(
        f"status.downtimeSeconds              {median(r.reported for r in walwarden):.1f}s   (from the start of "
        "ScaleDown, timestamps to the second)"
    )
    steps = [name for name in ("Preflight", "ScaleDown", "Restore", "ScaleUp", "Verify") if name in walwarden[0].steps]
    print(
        "Walwarden steps (whole seconds)     "
        + ", ".join(f"{name} {median(r.steps.get(name, 0) for r in walwarden):.0f}s" for name in steps)
    )
    print(
        f"The timed RestoreRequests ran with safetyBackup: false; their Preflight verify Job (download and sha256 "
        f"of the artifact, before any service stops) ran. Operator poll interval {args.poll_seconds:g}s."
    )


if __name__ == "__main__":
    sys.exit(main())
