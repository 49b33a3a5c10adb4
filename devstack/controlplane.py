"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok for nodes and pod lifecycles, and the local pod executor.

Everything listens on 127.0.0.1 only. Pods get addresses from kwok's CIDR, which we set inside
127.0.0.0/8 so that nothing ever routes off the machine.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.request
from pathlib import Path

import yaml

from devstack.binaries import Binaries, ensure_binaries
from devstack.cluster import ClusterAccess
from devstack.pki import Pki, make_pki
from devstack.processes import ManagedProcess, free_port, http_ok, log_tail, run_until_interrupted, wait_until

HERE = Path(__file__).resolve().parent
KWOK_STAGES = HERE / "kwok" / "stages.yaml"
NODE_NAME = "kwok-node-0"
SERVICE_CIDR = "10.96.0.0/16"  # allocated on paper only: there is no kube-proxy to route it
POD_CIDR = "127.1.0.0/16"  # kwok's fake pod IPs: loopback, so a stray connection stays local


def write_kubeconfig(path: Path, server: str, pki: Pki, user: str = "devstack-admin") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devstack", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
        "users": [
            {"name": user, "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}}
        ],
        "contexts": [{"name": "devstack", "context": {"cluster": "devstack", "user": user}}],
        "current-context": "devstack",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class LocalControlPlane:
    """Start with `start()` (or as a context manager); `kubeconfig` points at the running cluster."""

    def __init__(self, workdir: Path, binaries: Binaries | None = None, pod_executor: bool = True):
        self.workdir = Path(workdir)
        self.binaries = binaries or ensure_binaries(["etcd", "kubernetes", "kwok"])
        self.pod_executor = pod_executor
        self.processes: list[ManagedProcess] = []
        self.kubeconfig = self.workdir / "kubeconfig"
        self.apiserver_port = 0
        self.pki: Pki | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> LocalControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(
            self.workdir / "pki",
            ["127.0.0.1", "10.96.0.1"],
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        try:
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            write_kubeconfig(self.kubeconfig, self.server, self.pki)
            self._start_controllers()
            self._start_kwok()
            self._register_node()
            if self.pod_executor:
                self._start_pod_executor()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    # -- components ------------------------------------------------------------------------

    def _run(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.workdir / "logs" / f"{name}.log", env=env).start()
        self.processes.append(process)
        return process

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        etcd = self._run(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=devstack",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=devstack={peer_url}",
                "--unsafe-no-fsync",  # a test cluster: durability is not worth the fsync cost
                "--log-level=warn",
            ],
        )
        wait_until(
            lambda: http_ok(f"{client_url}/health", etcd),
            60,
            "etcd",
            on_timeout=lambda: "\n" + log_tail(etcd.log_path),
        )
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        self.apiserver_port = free_port()
        pki = self.pki
        apiserver = self._run(
            "kube-apiserver",
            [
                str(self.binaries.kube("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                # RBAC on, so the operator's least-privilege role can be tested for real.
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",  # no kubelet, no real endpoints to keep in sync
                "--v=0",
            ],
        )
        ready_url = f"{self.server}/readyz"
        wait_until(
            lambda: self._https_ok(ready_url, apiserver),
            120,
            "kube-apiserver /readyz",
            on_timeout=lambda: "\n" + log_tail(apiserver.log_path),
        )

    def _start_controllers(self) -> None:
        kubeconfig, pki = str(self.kubeconfig), self.pki
        common = [f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1", "--v=0"]
        self._run(
            "kube-controller-manager",
            [
                str(self.binaries.kube("kube-controller-manager")),
                *common,
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # No cloud provider: nothing to allocate pod CIDRs for, route or load-balance. The node
                # lifecycle controller stays: it lifts the not-ready taint once kwok reports Ready.
                "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle,-route",
            ],
        )
        self._run(
            "kube-scheduler",
            [
                str(self.binaries.kube("kube-scheduler")),
                *common,
                f"--secure-port={free_port()}",
            ],
        )

    def _start_kwok(self) -> None:
        self._run(
            "kwok",
            [
                str(self.binaries.kwok),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=true",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
                f"--config={KWOK_STAGES}",
            ],
        )

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            },
        }
        self.kubectl_json(["apply", "-f", "-"], stdin=json.dumps(node))
        wait_until(
            self._node_ready,
            60,
            f"node {NODE_NAME} Ready (kwok)",
            on_timeout=lambda: "\n" + log_tail(self.workdir / "logs" / "kwok.log"),
        )

    def _start_pod_executor(self) -> None:
        self._run(
            "pod-executor",
            [
                sys.executable,
                "-m",
                "devstack.podexec",
                f"--kubeconfig={self.kubeconfig}",
                f"--state-dir={self.workdir / 'pods'}",
            ],
            env=_env_with_repo_on_path(),
        )

    # -- helpers ---------------------------------------------------------------------------

    @property
    def access(self) -> ClusterAccess:
        return ClusterAccess(self.kubeconfig, self.binaries.kubectl, local=True)

    def kubectl(self, args: list[str], stdin: str | None = None, check: bool = True):
        return self.access.kubectl(args, stdin=stdin, check=check)

    def kubectl_json(self, args: list[str], stdin: str | None = None):
        return self.access.kubectl_json(args, stdin=stdin)

    def server_version(self) -> dict:
        return json.loads(self._https_get(f"{self.server}/version"))

    def _node_ready(self) -> bool:
        node = self.kubectl_json(["get", "node", NODE_NAME]) or {}
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        # Schedulable only once the node lifecycle controller lifted the not-ready taint.
        return ready and not node.get("spec", {}).get("taints")

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _https_get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._ssl_context(), timeout=5) as response:
            return response.read()

    def _https_ok(self, url: str, process: ManagedProcess) -> bool:
        process.check_alive()
        try:
            return self._https_get(url).strip() == b"ok"
        except OSError:
            return False


def _env_with_repo_on_path() -> dict[str, str]:
    import os

    env = dict(os.environ)
    repo = str(HERE.parent)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main() -> None:  # pragma: no cover - manual use: python -m devstack.controlplane DIR
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".devstack/cluster").resolve()
    with LocalControlPlane(workdir) as cluster:
        print(
            f"cluster up: {cluster.server_version()['gitVersion']}; export KUBECONFIG={cluster.kubeconfig}", flush=True
        )
        run_until_interrupted(cluster.check_alive)


if __name__ == "__main__":
    main()
