"""The operator run the way users run it (`walwarden run`), as a separate process watching one
namespace, so tests and the demo can also kill and restart it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from devstack.cluster import ClusterAccess
from devstack.processes import ManagedProcess, log_tail

EXEC_LABELS = {"devstack.walwarden.io/exec": "true"}
OPERATOR_NAMESPACE = "walwarden-system"
LOCAL_STORAGE_LOCATIONS = {"*": [{"bucket": "*", "endpoint": "http://127.0.0.1:*"}]}


class OperatorProcess:
    def __init__(self, cluster: ClusterAccess, namespace: str, log_path: Path, env: dict[str, str]):
        self.cluster, self.namespace, self.log_path = cluster, namespace, log_path
        env = {**os.environ, **env}
        # The logins Job of a Redirected restore requires verified TLS by default; the local stack's
        # PostgreSQL serves none. Said here, as an operator would configure it (passwords still go
        # only by SCRAM).
        env.setdefault("WALWARDEN_REDIRECT_LOGIN_SSL_MODE", "disable")
        # Artifacts only in the local stack's own S3 server (MinIO on 127.0.0.1): a request naming
        # any other endpoint is refused, as the operator's admin would configure it.
        env.setdefault("WALWARDEN_STORAGE_LOCATIONS", json.dumps(LOCAL_STORAGE_LOCATIONS))
        # The origin tests name their trusted keys in the request (spec.source.trustedKeys).
        env.setdefault("WALWARDEN_REQUEST_TRUSTED_KEYS_NAMESPACES", "*")
        # Its own namespace, as a Helm install has: the drill slots of each server are kept there.
        env.setdefault("WALWARDEN_OPERATOR_NAMESPACE", OPERATOR_NAMESPACE)
        self.operator_namespace = env["WALWARDEN_OPERATOR_NAMESPACE"]
        if cluster.local:
            # Runner Jobs must really run: the local pod executor picks up pods with this label.
            env.setdefault("WALWARDEN_RUNNER_POD_LABELS", json.dumps(EXEC_LABELS))
        self.process = ManagedProcess(
            "walwarden-operator",
            [
                sys.executable,
                "-m",
                "walwarden",
                "run",
                f"--kubeconfig={cluster.kubeconfig}",
                f"--namespace={namespace}",
                "--verbose",
            ],
            log_path,
            env=env,
        )

    def start(self) -> OperatorProcess:
        # Created once, kept (kubectl create refuses an existing one: that is fine).
        self.cluster.kubectl(["create", "namespace", self.operator_namespace], check=False)
        self.process.start()
        return self

    def stop(self) -> None:
        """A graceful stop, as on a rollout: SIGTERM, kopf finishes what it is doing."""
        self.process.stop()

    def kill(self) -> None:
        """A crash: SIGKILL to the operator's process group, nothing finishes; returns once it is gone."""
        self.process.kill()

    def alive(self) -> bool:
        return self.process.alive()

    def log(self) -> str:
        return log_tail(self.log_path, 200)
