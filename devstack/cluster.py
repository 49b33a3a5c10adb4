"""Access to a cluster through a kubeconfig: the local control plane, or any other (kind, a laptop
cluster) named by WALWARDEN_KUBECONFIG, so the same tests run unchanged against either."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

# One documented variable: point the tests (and the demo) at an existing cluster.
KUBECONFIG_ENV = "WALWARDEN_KUBECONFIG"


@dataclass(frozen=True)
class ClusterAccess:
    kubeconfig: Path
    kubectl_binary: Path
    # True on the local control plane, whose pod executor runs pods labelled
    # devstack.walwarden.io/exec as local processes; elsewhere real containers run.
    local: bool = False

    def kubectl(self, args: list[str], stdin: str | None = None, check: bool = True):
        result = subprocess.run(
            [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def kubectl_json(self, args: list[str], stdin: str | None = None):
        out = self.kubectl([*args, "-o", "json"], stdin=stdin).stdout
        return json.loads(out) if out.strip() else None

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def server_version(self) -> str:
        return client.VersionApi(self.api_client()).get_code().git_version
