"""The main job on the embedded default (scripts/demo.sh): bring up the local stack — a real
control plane, PostgreSQL and S3 on loopback — with a stand-in vault and the Walwarden operator,
and show requests going through it. Run with --keep to leave everything running for kubectl.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from devstack import demo_gitops, vaultdb, wallet
from devstack.controlplane import LocalControlPlane
from devstack.operator_process import EXEC_LABELS, OperatorProcess
from devstack.postgres import PostgresServer
from devstack.s3 import S3Server
from devstack.vault import DatabaseInfo, deploy_vault, ready_replicas, workload

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "vault"
ENVIRONMENT = "demo"
# No Service routing on the local stack: the wallet stand-in binds a loopback address of its own.
WALLET_ADDRESS = "127.3.0.1"
WALLET_URL = f"http://{WALLET_ADDRESS}:8080"


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(cluster, args: list[str]) -> None:
    print(cluster.kubectl(args).stdout.rstrip(), flush=True)


def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo failed: timed out waiting for {what}")
        time.sleep(0.5)


def apply(cluster, manifest: dict) -> None:
    cluster.kubectl(["apply", "-n", NAMESPACE, "-f", "-"], stdin=json.dumps(manifest))


def request(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "walwarden.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def admin_secret(cluster, name: str, postgres: PostgresServer) -> None:
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {
                "host": "127.0.0.1",
                "port": str(postgres.port),
                "user": postgres.superuser,
                "password": postgres.password,
                "sslmode": "disable",
            },
        },
    )


def read_secret_key(cluster, name: str, key: str) -> str:
    data = cluster.kubectl_json(["get", "secret", name, "-n", NAMESPACE])["data"]
    return base64.b64decode(data[key]).decode()


def show_wallet(title: str) -> None:
    with urllib.request.urlopen(f"{WALLET_URL}/api/v2/accounts?limit=3", timeout=5) as response:
        accounts = json.loads(response.read())["accounts"]
    print(f"  {title}: " + ", ".join(repr(a["name"]) for a in accounts) + ", …")


def print_steps(status: dict) -> None:
    for step in status["steps"]:
        print(f"  {step['name']:<15} {step['state']:<10} {step.get('message', '')}")


def watch_request(cluster, plural: str, name: str, operator, timeout: float = 300) -> dict:
    """Print `kubectl get <plural>` each time the request's phase or step changes, until it ends."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = cluster.kubectl_json(["get", plural, name, "-n", NAMESPACE]).get("status") or {}
        seen = (status.get("phase"), status.get("currentStep"))
        if seen != last:
            table = cluster.kubectl(["get", plural, name, "-n", NAMESPACE]).stdout.splitlines()
            print(("\n".join(table) if last is None else table[-1]), flush=True)
            last = seen
        if status.get("phase") == "Succeeded":
            return status
        if status.get("phase") in ("Failed", "RolledBack"):
            raise SystemExit(
                f"demo failed: {plural}/{name} ended {status['phase']}: {status.get('message')}"
                f"\n(operator log: {operator.log_path})"
            )
        time.sleep(0.5)
    raise SystemExit(f"demo failed: {plural}/{name} did not finish in {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running until Ctrl-C")
    parser.add_argument(
        "--gitops",
        action="store_true",
        help="also run a pre-upgrade backup (PreSync hook) and a restore through a real Argo CD",
    )
    parser.add_argument("--workdir", type=Path, help="where the stack keeps its state (default: a temp dir)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="walwarden-demo-"))

    say("Local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok, pod executor)")
    with (
        LocalControlPlane(workdir / "cluster") as plane,
        PostgresServer(workdir / "postgres") as postgres,
        S3Server(workdir / "s3") as s3,
    ):
        cluster = plane.access
        print(f"kube-apiserver {cluster.server_version()} at {plane.server}")
        print(f"export KUBECONFIG={plane.kubeconfig}")

        say(f"PostgreSQL {postgres.version} on 127.0.0.1:{postgres.port}, with a generated vault database")
        postgres.create_database("vault")
        vaultdb.generate(postgres.dsn("vault"), accounts=500)
        for table, count in vaultdb.row_counts(postgres.dsn("vault")).items():
            print(f"  {table:<14} {count:>8} rows")

        say(f"S3 (MinIO) at {s3.endpoint}")
        bucket = s3.create_bucket("vault-backups")
        print(f"  bucket {bucket}")

        say("CRDs generated from the API models, and the vault: workloads and db-info secrets")
        cluster.kubectl(["apply", "--server-side", "-f", str(REPO / "crds")])
        cluster.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
        cluster.kubectl(["create", "namespace", NAMESPACE])
        wait(
            lambda: cluster.kubectl(["get", "sa", "default", "-n", NAMESPACE], check=False).returncode == 0,
            300,
            "the namespace's default service account",
        )
        database = DatabaseInfo("127.0.0.1", postgres.port, postgres.superuser, postgres.password, "vault")
        # The wallet stand-in really runs (local pod executor) and reads its db-info secret at start.
        wallet_deployment = workload(
            "wallet",
            "Deployment",
            1,
            EXEC_LABELS,
            wallet.container(f"{ENVIRONMENT}.{NAMESPACE}.wallet.db-info", bind=WALLET_ADDRESS),
        )
        deploy_vault(cluster, NAMESPACE, ENVIRONMENT, database, overrides={"wallet": wallet_deployment})
        admin_secret(cluster, "vault-db-admin", postgres)
        cluster.kubectl(
            [
                "create",
                "secret",
                "generic",
                "s3-credentials",
                "-n",
                NAMESPACE,
                f"--from-literal=accessKeyId={s3.access_key}",
                f"--from-literal=secretAccessKey={s3.secret_key}",
            ]
        )
        wait(lambda: all(n > 0 for n in ready_replicas(cluster, NAMESPACE).values()), 300, "vault pods Ready")
        show(cluster, ["get", "deployments,statefulsets", "-n", NAMESPACE])
        show_wallet("the wallet serves")

        say("The Walwarden operator (walwarden run)")
        operator = OperatorProcess(cluster, NAMESPACE, workdir / "operator.log", {"WALWARDEN_POLL_SECONDS": "1"})
        operator.start()
        try:
            storage = {
                "s3": {
                    "bucket": bucket,
                    "endpoint": s3.endpoint,
                    "forcePathStyle": True,
                    "credentialsSecretRef": {"name": "s3-credentials"},
                }
            }
            say("1. BackupRequest (quiesce): services stop in order, pg_dump streams into S3, verified, services back")
            apply(
                cluster,
                request(
                    "BackupRequest",
                    "nightly",
                    {
                        "database": {"secretRef": {"name": "vault-db-admin"}, "databases": ["vault"]},
                        "quiesce": True,
                        "storage": storage,
                    },
                ),
            )
            status = watch_request(cluster, "backuprequests", "nightly", operator)
            artifact = status["artifact"]
            print(f"  artifact  {artifact['uri']}  ({artifact['sizeBytes']} bytes, sha256 {artifact['sha256'][:16]}…)")
            print(f"  manifest  {artifact['manifestUri']}")
            print_steps(status)

            say(
                "1b. RestoreRequest Drill: does the backup restore? Restored into vault_drill while the vault runs, "
                "its row counts and a SQL check proven, then dropped; no service touched"
            )
            checks = [{"name": "has-accounts", "sql": "SELECT count(*) > 0 FROM accounts", "expected": "t"}]
            drill = {
                "mode": "Drill",
                "source": {"backupRef": {"name": "nightly"}},
                "target": {"secretRef": {"name": "vault-db-admin"}},
                "drill": {"checks": checks},
            }
            apply(cluster, request("RestoreRequest", "drill-nightly", drill))
            status = watch_request(cluster, "restorerequests", "drill-nightly", operator)
            print_steps(status)

            say("2. Something goes wrong: accounts are changed after the backup")
            vaultdb.mutate_accounts(postgres.dsn("vault"))
            show_wallet("the wallet now serves")

            verify = {
                "healthUrl": f"{WALLET_URL}/health",
                "accountsUrl": f"{WALLET_URL}/api/v2/accounts",
                "timeoutSeconds": 60,
            }
            say(
                "3. RestoreRequest InPlace (strategy Switch): the backup is restored into a new database while the "
                "vault runs; the stop window only renames it into place; the previous database is kept"
            )
            apply(
                cluster,
                request(
                    "RestoreRequest",
                    "undo-in-place",
                    {"mode": "InPlace", "source": {"backupRef": {"name": "nightly"}}, "verify": verify},
                ),
            )
            status = watch_request(cluster, "restorerequests", "undo-in-place", operator)
            print_steps(status)
            print(f"  before the stop: {', '.join(status['plan']['beforeStop'])}")
            inside = ", ".join(status["plan"]["stopWindow"])
            print(f"  inside the stop: {inside}; downtime {status.get('downtimeSeconds')} s")
            previous = status["previousDatabase"]["name"]
            print(
                f"  history after {status['dataLossWindow']['backupTime']} is not lost: it is kept in {previous} "
                "(refusing connections; drop it when nobody needs it)"
            )
            with psycopg.connect(postgres.dsn()) as connection:
                for name, allowed in connection.execute(
                    "SELECT datname, datallowconn FROM pg_database WHERE datname LIKE 'vault%' ORDER BY 1"
                ):
                    print(f"  database {name:<48} {'accepts connections' if allowed else 'refuses connections'}")
            show_wallet("the wallet serves the backed-up accounts again")

            if args.gitops:
                demo_gitops.run(workdir, cluster, NAMESPACE, bucket, s3.endpoint, say)

            say("4. RestoreRequest Redirected: restore into a new database, repoint all five db-info secrets")
            admin_secret(cluster, "new-db-admin", postgres)
            apply(
                cluster,
                request(
                    "RestoreRequest",
                    "to-new-database",
                    {
                        "mode": "Redirected",
                        "source": {"backupRef": {"name": "nightly"}},
                        "target": {"secretRef": {"name": "new-db-admin"}, "database": "vault_restored"},
                        "redirect": {"dbHost": "127.0.0.1", "dbName": "vault_restored", "environment": ENVIRONMENT},
                        "verify": verify,
                    },
                ),
            )
            status = watch_request(cluster, "restorerequests", "to-new-database", operator)
            print_steps(status)
            for name in status["plan"]["secrets"]:
                print(f"  {name}: DB_NAME={read_secret_key(cluster, name, 'DB_NAME')}")
            show_wallet("the wallet serves, from vault_restored")
            show(cluster, ["get", "backuprequests,restorerequests", "-n", NAMESPACE])

            say("An invalid request is refused by the API server")
            invalid = request(
                "RestoreRequest", "invalid", {"mode": "Redirected", "source": {"backupRef": {"name": "nightly"}}}
            )
            refused = cluster.kubectl(["apply", "-n", NAMESPACE, "-f", "-"], stdin=json.dumps(invalid), check=False)
            print(refused.stderr.strip())

            if args.keep:
                say(f"Running. KUBECONFIG={plane.kubeconfig}  (Ctrl-C to stop; state in {workdir})")
                while True:
                    time.sleep(5)
                    plane.check_alive()
        except KeyboardInterrupt:
            pass
        finally:
            operator.stop()
    say("Demo finished; everything stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
