"""The main job on the embedded default (scripts/demo.sh): bring up the local stack — a real
control plane, PostgreSQL and S3 on loopback — with a stand-in vault and the Walwarden operator,
and show requests going through it. Run with --keep to leave everything running for kubectl.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

from devstack import vaultdb
from devstack.controlplane import LocalControlPlane
from devstack.postgres import PostgresServer
from devstack.operator_process import OperatorProcess
from devstack.s3 import S3Server
from devstack.vault import DatabaseInfo, deploy_vault, ready_replicas

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "vault"
ENVIRONMENT = "demo"


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


def watch_request(cluster, plural: str, name: str, timeout: float = 300) -> dict:
    """Print `kubectl get <plural>` each time the request's phase or step changes, until it ends."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = cluster.kubectl_json(["get", plural, name, "-n", NAMESPACE]).get("status") or {}
        seen = (status.get("phase"), status.get("currentStep"))
        if seen != last:
            table = cluster.kubectl(["get", plural, name, "-n", NAMESPACE]).stdout.splitlines()
            print(("\n".join(table) if last is None else table[-1]), flush=True)
            last = seen
        if status.get("phase") in ("Succeeded", "Failed", "RolledBack"):
            return status
        time.sleep(0.5)
    raise SystemExit(f"demo failed: {plural}/{name} did not finish in {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running until Ctrl-C")
    parser.add_argument("--workdir", type=Path, help="where the stack keeps its state (default: a temp dir)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="walwarden-demo-"))

    say("Local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok, pod executor)")
    with LocalControlPlane(workdir / "cluster") as plane, \
            PostgresServer(workdir / "postgres") as postgres, \
            S3Server(workdir / "s3") as s3:
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

        say("CRDs generated from the API models, and the vault's workloads and db-info secrets")
        cluster.kubectl(["apply", "--server-side", "-f", str(REPO / "crds")])
        cluster.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
        cluster.kubectl(["create", "namespace", NAMESPACE])
        wait(lambda: cluster.kubectl(["get", "sa", "default", "-n", NAMESPACE], check=False).returncode == 0,
             30, "the namespace's default service account")
        database = DatabaseInfo("127.0.0.1", postgres.port, postgres.superuser, postgres.password, "vault")
        deploy_vault(cluster, NAMESPACE, ENVIRONMENT, database)
        admin = {"host": "127.0.0.1", "port": str(postgres.port), "user": postgres.superuser,
                 "password": postgres.password, "sslmode": "disable"}
        cluster.kubectl(["create", "secret", "generic", "vault-db-admin", "-n", NAMESPACE,
                         *[f"--from-literal={k}={v}" for k, v in admin.items()]])
        cluster.kubectl(["create", "secret", "generic", "s3-credentials", "-n", NAMESPACE,
                         f"--from-literal=accessKeyId={s3.access_key}",
                         f"--from-literal=secretAccessKey={s3.secret_key}"])
        wait(lambda: all(n > 0 for n in ready_replicas(cluster, NAMESPACE).values()), 60, "vault pods Ready")
        show(cluster, ["get", "deployments,statefulsets", "-n", NAMESPACE])

        say("The Walwarden operator (walwarden run)")
        operator = OperatorProcess(cluster, NAMESPACE, workdir / "operator.log", {"WALWARDEN_POLL_SECONDS": "1"})
        operator.start()
        try:
            backup = {"apiVersion": "walwarden.io/v1alpha1", "kind": "BackupRequest",
                      "metadata": {"name": "nightly"},
                      "spec": {"database": {"secretRef": {"name": "vault-db-admin"}, "databases": ["vault"]},
                               "quiesce": True,
                               "storage": {"s3": {"bucket": bucket, "endpoint": s3.endpoint, "forcePathStyle": True,
                                                  "credentialsSecretRef": {"name": "s3-credentials"}}}}}
            say("A BackupRequest: the operator's runner Job streams pg_dump into S3, then the artifact is verified")
            cluster.kubectl(["apply", "-n", NAMESPACE, "-f", "-"], stdin=json.dumps(backup))
            status = watch_request(cluster, "backuprequests", "nightly")
            if status.get("phase") != "Succeeded":
                raise SystemExit(f"demo failed: the backup ended {status.get('phase')}: {status.get('message')}"
                                 f"\n(operator log: {operator.log_path})")
            artifact = status["artifact"]
            print(f"  artifact  {artifact['uri']}  ({artifact['sizeBytes']} bytes, sha256 {artifact['sha256'][:16]}…)")
            print(f"  manifest  {artifact['manifestUri']}")
            for step in status["steps"]:
                print(f"  {step['name']:<15} {step['state']:<10} {step.get('message', '')}")

            say("An invalid request is refused by the API server")
            invalid = {"apiVersion": "walwarden.io/v1alpha1", "kind": "RestoreRequest",
                       "metadata": {"name": "invalid"},
                       "spec": {"mode": "Redirected", "source": {"backupRef": {"name": "nightly"}}}}
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
