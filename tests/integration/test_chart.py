"""The Helm chart against a real API server: its rendering accepted by a server-side dry run,
`helm install` / `helm upgrade` / `helm uninstall` (CRDs updated, then kept), and its RBAC
proven both sufficient — the operator, run as in the chart's pod with nothing but its
ServiceAccount's token, backs up and restores a stand-in vault end to end — and not excessive
(`kubectl auth can-i`)."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from devstack import vaultdb, wallet
from devstack.binaries import ensure_binaries
from devstack.cluster import ClusterAccess
from devstack.operator_process import EXEC_LABELS, LOCAL_STORAGE_LOCATIONS, OperatorProcess
from devstack.processes import ManagedProcess, free_port, log_tail
from devstack.pytest_kube import wait_for
from devstack.vault import DEFAULT_SERVICES, DatabaseInfo, deploy_vault, ready_replicas, workload
from walwarden.api import RestoreRequestSpec, crdgen
from walwarden.security.tokens import Approval, issue_token

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "walwarden"
CRD_DIR = REPO / "crds"
ENVIRONMENT = "test"
APPROVAL_KEY = b"chart-test-approval-key-0123456789"
# kopf's optional cluster-scope scans, which the chart does not grant (see templates/rbac.yaml).
KOPF_SCANS = re.compile(
    r"GET https://[^/ ]+/"
    r"(api/v1/namespaces|apis/apiextensions\.k8s\.io/v1/customresourcedefinitions)[? ]"
)


class Helm:
    """The helm binary (built from its Go module) pointed at the test cluster, with its own
    cache and config directories so nothing is written to the user's home."""

    def __init__(self, binary: Path, cluster: ClusterAccess, home: Path):
        self.binary, self.cluster = binary, cluster
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.cluster.kubeconfig}", *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result


@pytest.fixture
def helm(cluster, tmp_path) -> Helm:
    return Helm(ensure_binaries(["helm"]).helm, cluster, tmp_path / "helm")


@pytest.fixture
def make_namespace(cluster):
    """Extra namespaces (the operator's own, one outside its list), deleted afterwards."""
    made = []

    def make(prefix: str, labels: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{secrets.token_hex(3)}"
        cluster.kubectl(["create", "namespace", name])
        if labels:
            cluster.kubectl(["label", "namespace", name, *(f"{k}={v}" for k, v in labels.items())])
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.kubectl(["delete", "namespace", name, "--wait=false"], check=False)


def namespaced(*namespaces: str) -> list[str]:
    return ["--set", "rbac.scope=namespaces", "--set", f"watchNamespaces={{{','.join(namespaces)}}}"]


def can_i(cluster: ClusterAccess, service_account: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`resource` as kubectl auth can-i takes it: `secrets`, `secrets/<name>`, or with a
    subresource `pods --subresource=exec` (`pods/exec` would mean the pod named exec)."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = cluster.kubectl(["auth", "can-i", verb, *resource.split(), *where, f"--as={service_account}"], check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


# --- the rendered chart, checked by the API server ------------------------------------------------------


@pytest.mark.parametrize("mode", ["cluster", "namespaces"])
def test_rendered_chart_passes_a_server_side_dry_run(cluster, crds, helm, make_namespace, mode):
    # PodSecurity "restricted" on the release namespace: the API server warns about any pod
    # template that would be refused.
    release_ns = make_namespace(
        "ww-dry", {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}
    )
    watched = make_namespace("ww-vault")
    args = namespaced(watched) if mode == "namespaces" else ["--set", "rbac.scope=cluster"]
    manifest = helm("template", "ww-dry", CHART, "--namespace", release_ns, *args).stdout
    result = cluster.kubectl(["apply", "--dry-run=server", "-f", "-"], stdin=manifest, check=False)
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr and "would violate" not in result.stderr, result.stderr
    applied = result.stdout
    for expected in (
        "serviceaccount/ww-dry",
        "deployment.apps/ww-dry",
        "service/ww-dry-metrics",
        "role.rbac.authorization.k8s.io/ww-dry-approval-key",
        "customresourcedefinition.apiextensions.k8s.io/backuprequests.walwarden.io",
        "customresourcedefinition.apiextensions.k8s.io/restorerequests.walwarden.io",
        "customresourcedefinition.apiextensions.k8s.io/backupschedules.walwarden.io",
    ):
        assert expected in applied, applied
    assert ("clusterrole.rbac.authorization.k8s.io/ww-dry" in applied) == (mode == "cluster"), applied
    assert applied.count("(server dry run)") == len([d for d in yaml.safe_load_all(manifest) if d])
    # The PodSecurity check is not vacuous: without its securityContext the same pod is refused.
    deployment = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment")
    del deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    result = cluster.kubectl(["apply", "--dry-run=server", "-f", "-"], stdin=json.dumps(deployment), check=False)
    assert "would violate PodSecurity" in result.stderr, result.stderr


# --- install, upgrade, uninstall ---------------------------------------------------------------------------


def _old_chart(tmp_path: Path) -> Path:
    """The chart as an older version would have shipped it: a CRD without one printer column."""
    old = tmp_path / "walwarden-old"
    shutil.copytree(CHART, old)
    chart = yaml.safe_load((old / "Chart.yaml").read_text())
    (old / "Chart.yaml").write_text(yaml.safe_dump({**chart, "version": "0.0.1"}))
    template = old / "templates" / "crds" / "backuprequests.yaml"
    lines = template.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("apiVersion:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("{{- end"))
    crd = yaml.safe_load("\n".join(lines[start:end]))
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [c for c in columns if c["name"] != "Quiesce"]
    template.write_text(
        "\n".join(lines[:start]) + "\n" + yaml.safe_dump(crd, sort_keys=False) + "\n".join(lines[end:]) + "\n"
    )
    return old


def _printer_columns(cluster: ClusterAccess, crd: str) -> list[str]:
    found = cluster.kubectl_json(["get", "crd", crd])
    return [c["name"] for c in found["spec"]["versions"][0]["additionalPrinterColumns"]]


def _restore_session_crds(cluster: ClusterAccess, crds: list[str]) -> None:
    """Put the CRDs back as the session's `crds` fixture left them (no release owns them)."""
    for name in crds:
        cluster.kubectl(
            ["annotate", "crd", name, "meta.helm.sh/release-name-", "meta.helm.sh/release-namespace-"], check=False
        )
        cluster.kubectl(["label", "crd", name, "app.kubernetes.io/managed-by-"], check=False)
    cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR)])


def test_install_upgrade_and_uninstall_update_then_keep_the_crds(
    cluster, crds, helm, make_namespace, namespace, tmp_path
):
    release_ns = make_namespace("ww-rel", {"pod-security.kubernetes.io/enforce": "restricted"})
    release = f"ww-{secrets.token_hex(3)}"
    # The session's CRDs were applied with kubectl: hand them to this release, as an operator of
    # a cluster moving to the chart would.
    for name in crds:
        cluster.kubectl(
            [
                "annotate",
                "crd",
                name,
                f"meta.helm.sh/release-name={release}",
                f"meta.helm.sh/release-namespace={release_ns}",
                "--overwrite",
            ]
        )
        cluster.kubectl(["label", "crd", name, "app.kubernetes.io/managed-by=Helm", "--overwrite"])
    try:
        # As installed before the defaults became per-namespace RBAC and approvals: cluster-wide.
        cluster_wide = ("--set", "rbac.scope=cluster", "--set", "operator.approvalsRequired=false")
        helm(
            "install",
            release,
            _old_chart(tmp_path),
            "--namespace",
            release_ns,
            *cluster_wide,
            "--wait",
            "--timeout",
            "120s",
        )
        assert "Quiesce" not in _printer_columns(cluster, "backuprequests.walwarden.io")
        deployment = cluster.kubectl_json(["get", "deployment", release, "-n", release_ns])
        assert deployment["status"].get("availableReplicas") == 1  # its pod passed PodSecurity "restricted"
        assert cluster.kubectl(["get", "clusterrole", release], check=False).returncode == 0

        # Upgrade to this chart, switching to namespaced RBAC and approvals on.
        helm(
            "upgrade",
            release,
            CHART,
            "--namespace",
            release_ns,
            "--wait",
            "--timeout",
            "120s",
            "--set",
            "operator.approvalsRequired=true",
            *namespaced(namespace),
        )
        status = json.loads(helm("status", release, "--namespace", release_ns, "-o", "json").stdout)
        assert status["version"] == 2 and status["info"]["status"] == "deployed"
        for crd in crdgen.build_crds():  # the CRDs are updated to the generated ones
            live = cluster.kubectl_json(["get", "crd", crd["metadata"]["name"]])
            assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert [c["name"] for c in live["spec"]["versions"][0]["additionalPrinterColumns"]] == [
                c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
            ]
        assert "Quiesce" in _printer_columns(cluster, "backuprequests.walwarden.io")
        env = {
            e["name"]: e.get("value")
            for e in cluster.kubectl_json(["get", "deployment", release, "-n", release_ns])["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        }
        assert env["WALWARDEN_APPROVALS_REQUIRED"] == "true" and env["WALWARDEN_NAMESPACES"] == namespace
        assert cluster.kubectl(["get", "clusterrole", release], check=False).returncode != 0
        assert cluster.kubectl(["get", "role", release, "-n", namespace], check=False).returncode == 0

        # Uninstall: the operator's objects go, the CRDs — and the requests users made — stay.
        cluster.kubectl(
            ["apply", "-n", namespace, "-f", "-"],
            stdin=json.dumps(
                {
                    "apiVersion": "walwarden.io/v1alpha1",
                    "kind": "BackupRequest",
                    "metadata": {"name": "kept"},
                    "spec": {
                        "database": {"secretRef": {"name": "db"}, "databases": ["vault"]},
                        "storage": {"s3": {"bucket": "vault-backups"}},
                    },
                }
            ),
        )
        result = helm("uninstall", release, "--namespace", release_ns, "--wait")
        assert "kept due to the resource policy" in result.stdout + result.stderr
        for name in crds:
            assert cluster.kubectl(["get", "crd", name], check=False).returncode == 0
        assert cluster.kubectl(["get", "backuprequest", "kept", "-n", namespace], check=False).returncode == 0
        for kind, where in (
            ("deployment", release_ns),
            ("serviceaccount", release_ns),
            ("role", namespace),
            ("rolebinding", namespace),
            ("role", release_ns),
        ):
            name = release if kind != "role" or where != release_ns else f"{release}-approval-key"
            assert cluster.kubectl(["get", kind, name, "-n", where], check=False).returncode != 0, (kind, name)
    finally:
        helm("uninstall", release, "--namespace", release_ns, check=False)
        _restore_session_crds(cluster, crds)


# --- RBAC: not excessive ------------------------------------------------------------------------------------


def test_namespaced_rbac_grants_only_what_the_steps_need(cluster, crds, helm, make_namespace, namespace):
    release_ns, outside = make_namespace("ww-sys"), make_namespace("ww-outside")
    release = f"ww-{secrets.token_hex(3)}"
    helm("install", release, CHART, "--namespace", release_ns, "--set", "crds.create=false", *namespaced(namespace))
    try:
        sa = f"system:serviceaccount:{release_ns}:{release}"
        allowed = [
            ("get", "secrets", namespace),
            ("create", "secrets", namespace),
            ("patch", "secrets", namespace),
            ("delete", "secrets", namespace),
            ("create", "jobs.batch", namespace),
            ("delete", "jobs.batch", namespace),  # a rollback stops a restore Job before dropping its database
            ("list", "pods", namespace),
            ("patch", "deployments.apps", namespace),
            ("get", "statefulsets.apps", namespace),
            ("watch", "restorerequests.walwarden.io", namespace),
            ("patch", "backuprequests.walwarden.io", namespace),
            ("create", "backuprequests.walwarden.io", namespace),
            ("patch", "restorerequests.walwarden.io --subresource=status", namespace),
            ("patch", "backuprequests.walwarden.io --subresource=status", namespace),
            ("delete", "backuprequests.walwarden.io", namespace),  # a schedule's retention prunes
            ("create", "restorerequests.walwarden.io", namespace),  # a schedule's restore drills
            ("delete", "restorerequests.walwarden.io", namespace),  # drills beyond historyLimit
            ("watch", "backupschedules.walwarden.io", namespace),
            ("patch", "backupschedules.walwarden.io --subresource=status", namespace),
            ("create", "events", namespace),
            ("update", "leases.coordination.k8s.io/walwarden-lock", namespace),
            ("update", "configmaps/walwarden-restores", namespace),
            ("update", "configmaps/walwarden-approvals", release_ns),  # the spent tokens, out of requesters' reach
            ("get", "configmaps", namespace),  # by name: a restore's spec.source.trustedKeys
            ("get", "secrets/walwarden-approval-key", release_ns),
        ]
        denied = [
            # Nothing outside its list: not even the requests, let alone Secrets.
            ("get", "secrets", outside),
            ("list", "backuprequests.walwarden.io", outside),
            ("patch", "deployments.apps", outside),
            ("get", "secrets", "kube-system"),
            ("list", "restorerequests.walwarden.io", None),
            ("get", "secrets", None),
            # In its own namespace: the approval key only.
            ("get", "secrets/some-other-secret", release_ns),
            ("list", "secrets", release_ns),
            ("get", "configmaps", release_ns),
            # In a watched namespace: Secrets by name only; workloads scaled, never deleted or made.
            ("list", "secrets", namespace),
            ("watch", "secrets", namespace),
            ("delete", "deployments.apps", namespace),
            ("delete", "statefulsets.apps", namespace),
            ("create", "deployments.apps", namespace),
            ("update", "deployments.apps", namespace),
            ("patch", "deployments.apps --subresource=scale", namespace),
            ("create", "pods", namespace),
            ("update", "restorerequests.walwarden.io", namespace),
            ("update", "backuprequests.walwarden.io --subresource=status", namespace),
            ("create", "pods --subresource=exec", namespace),
            ("get", "pods --subresource=log", namespace),
            ("delete", "pods", namespace),
            ("list", "configmaps", namespace),
            ("update", "configmaps/someone-elses", namespace),
            ("update", "leases.coordination.k8s.io/other", namespace),
            ("delete", "backupschedules.walwarden.io", namespace),
            ("create", "backupschedules.walwarden.io", namespace),
            ("create", "rolebindings.rbac.authorization.k8s.io", namespace),
            ("create", "serviceaccounts --subresource=token", namespace),
            # Nothing cluster-scoped.
            ("create", "clusterroles.rbac.authorization.k8s.io", None),
            ("list", "namespaces", None),
            ("patch", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("list", "nodes", None),
            ("impersonate", "serviceaccounts", None),
        ]
        wrong = [
            f"can{'not' if expect else ''} {verb} {resource} in {where or 'all namespaces'}"
            for expect, checks in ((True, allowed), (False, denied))
            for verb, resource, where in checks
            if can_i(cluster, sa, verb, resource, where) != expect
        ]
        assert not wrong, "\n".join(wrong)
    finally:
        helm("uninstall", release, "--namespace", release_ns, check=False)


def test_cluster_rbac_reaches_every_namespace_but_grants_no_more_verbs(cluster, crds, helm, make_namespace, namespace):
    release_ns = make_namespace("ww-sys")
    release = f"ww-{secrets.token_hex(3)}"
    helm("install", release, CHART, "--namespace", release_ns, "--set", "crds.create=false,rbac.scope=cluster")
    try:
        sa = f"system:serviceaccount:{release_ns}:{release}"
        assert can_i(cluster, sa, "get", "secrets", namespace)
        assert can_i(cluster, sa, "watch", "backuprequests.walwarden.io", None)
        assert can_i(cluster, sa, "patch", "statefulsets.apps", namespace)
        for verb, resource, where in [
            ("list", "secrets", None),
            ("watch", "secrets", namespace),
            ("delete", "deployments.apps", namespace),
            ("create", "pods", namespace),
            ("create", "clusterroles.rbac.authorization.k8s.io", None),
            ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
            ("list", "namespaces", None),
            ("list", "configmaps", namespace),  # get by name only: a restore's spec.source.trustedKeys
            ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
        ]:
            assert not can_i(cluster, sa, verb, resource, where), f"can {verb} {resource} in {where}"
    finally:
        helm("uninstall", release, "--namespace", release_ns, check=False)


# --- RBAC: sufficient ----------------------------------------------------------------------------------------


class ApiForwarder:
    """`https://kubernetes.default.svc` (port 443, where kopf's in-cluster login always points)
    on a loopback address of its own, forwarded byte for byte (TLS end to end) to the API server."""

    def __init__(self, target: tuple[str, int]):
        self.address = f"127.7.{random.randint(0, 255)}.{random.randint(1, 254)}"

        class Pipe(socketserver.BaseRequestHandler):
            def handle(self):
                with socket.create_connection(target, timeout=10) as upstream:
                    upstream.settimeout(None)
                    back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
                    back.start()
                    _pump(self.request, upstream)
                    back.join()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((self.address, 443), Pipe)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def admin_cluster_entry(cluster: ClusterAccess) -> dict:
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    entry = dict(next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"])
    if "certificate-authority" in entry:  # relative to the admin kubeconfig
        base = Path(cluster.kubeconfig).parent
        entry["certificate-authority"] = str((base / entry["certificate-authority"]).resolve())
    return entry


def cluster_ca(cluster: ClusterAccess) -> str:
    entry = admin_cluster_entry(cluster)
    if "certificate-authority-data" in entry:
        return base64.b64decode(entry["certificate-authority-data"]).decode()
    return Path(entry["certificate-authority"]).read_text()


def service_account_token(cluster: ClusterAccess, namespace: str, name: str) -> str:
    """A token of the chart's ServiceAccount, from the TokenRequest API (as a projected volume gets it)."""
    return cluster.kubectl(["create", "token", name, "-n", namespace, "--duration=2h"]).stdout.strip()


def service_account_kubeconfig(cluster: ClusterAccess, token: str, path: Path) -> Path:
    entry = admin_cluster_entry(cluster)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "walwarden",
                "clusters": [
                    {
                        "name": "target",
                        "cluster": {
                            k: v
                            for k, v in entry.items()
                            if k in ("server", "certificate-authority", "certificate-authority-data", "tls-server-name")
                        },
                    }
                ],
                "users": [{"name": "walwarden", "user": {"token": token}}],
                "contexts": [{"name": "walwarden", "context": {"cluster": "target", "user": "walwarden"}}],
            }
        )
    )
    path.chmod(0o600)
    return path


def chart_environment(cluster: ClusterAccess, release: str, release_ns: str) -> dict[str, str]:
    """The WALWARDEN_* settings exactly as the installed Deployment gives them to the operator."""
    deployment = cluster.kubectl_json(["get", "deployment", release, "-n", release_ns])
    env = {}
    for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if not entry["name"].startswith("WALWARDEN_"):
            continue
        if "value" in entry or "valueFrom" not in entry:
            env[entry["name"]] = entry.get("value", "")  # the API server drops an empty value
        else:
            assert entry["valueFrom"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
            env[entry["name"]] = release_ns
    return env


class InPodOperator:
    """`walwarden run` exactly as in the chart's pod: no kubeconfig, the ServiceAccount's token,
    CA and namespace at /var/run/secrets/kubernetes.io/serviceaccount (in a private mount
    namespace of the process: nothing on this machine changes), the API server as
    kubernetes.default.svc:443, and the Deployment's environment."""

    def __init__(self, cluster: ClusterAccess, release_ns: str, token: str, env: dict[str, str], workdir: Path):
        server = urlparse(admin_cluster_entry(cluster)["server"])
        self.forwarder = ApiForwarder((server.hostname, server.port or 443))
        run = workdir / "run"
        account = run / "secrets" / "kubernetes.io" / "serviceaccount"
        account.mkdir(parents=True)
        (account / "token").write_text(token)
        (account / "ca.crt").write_text(cluster_ca(cluster))
        (account / "namespace").write_text(release_ns)
        hosts = workdir / "hosts"
        hosts.write_text(
            f"127.0.0.1 localhost\n{self.forwarder.address} kubernetes.default.svc kubernetes.default "
            "kubernetes.default.svc.cluster.local\n"
        )
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "WALWARDEN_"))}
        environment.update(env, KUBERNETES_SERVICE_HOST="kubernetes.default.svc", KUBERNETES_SERVICE_PORT="443")
        self.log_path = workdir / "operator.log"
        self.process = ManagedProcess(
            "walwarden-operator-in-pod",
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-ec",
                'mount --bind "$0" /run; mount --bind "$1" /etc/hosts; shift; exec "$@"',
                str(run),
                str(hosts),
                sys.executable,
                "-m",
                "walwarden",
                "run",
                "--verbose",
            ],
            self.log_path,
            env=environment,
        )

    def start(self) -> InPodOperator:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()
        self.forwarder.close()

    def log(self) -> str:
        return log_tail(self.log_path, 200)


def install_for_a_vault(helm: Helm, cluster: ClusterAccess, release_ns: str, namespace: str) -> str:
    release = f"ww-{secrets.token_hex(3)}"
    helm(
        "install",
        release,
        CHART,
        "--namespace",
        release_ns,
        "--set",
        "crds.create=false",
        "--set",
        "operator.approvalsRequired=true",
        "--set",
        "operator.pollSeconds=1",
        # The local stack's PostgreSQL serves no TLS: the Redirected restore's logins Job may go without.
        "--set",
        "operator.redirectLoginSslMode=disable",
        "--set-json",
        f"operator.runnerPodLabels={json.dumps(EXEC_LABELS)}",
        "--set-json",  # the local stack's own S3 server only
        f"operator.storageLocations={json.dumps(LOCAL_STORAGE_LOCATIONS)}",
        *namespaced(namespace),
    )
    cluster.kubectl(
        ["apply", "-n", release_ns, "-f", "-"],
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "walwarden-approval-key"},
                "stringData": {"key": APPROVAL_KEY.decode()},
            }
        ),
    )
    return release


def account_names(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM accounts ORDER BY id")]


def test_operator_with_only_the_chart_service_account_backs_up_and_restores(
    cluster, crds, helm, make_namespace, namespace, postgres_server, s3_server, s3_bucket, vault_db, tmp_path
):
    if not cluster.local:
        pytest.skip("the stand-in wallet and the runner Jobs run on the local stack's pod executor only")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("running the operator with in-pod credentials needs root and unshare(1)")
    release_ns = make_namespace("ww-sys")
    release = install_for_a_vault(helm, cluster, release_ns, namespace)
    token = service_account_token(cluster, release_ns, release)
    whoami = ClusterAccess(
        service_account_kubeconfig(cluster, token, tmp_path / "sa.kubeconfig"), cluster.kubectl_binary
    ).kubectl_json(["auth", "whoami"])
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{release_ns}:{release}"

    env = chart_environment(cluster, release, release_ns)
    assert env["WALWARDEN_NAMESPACES"] == namespace and env["WALWARDEN_OPERATOR_NAMESPACE"] == release_ns
    assert json.loads(env["WALWARDEN_RUNNER_POD_LABELS"]) == EXEC_LABELS
    # The endpoints on loopback ports of their own (a pod has its own network; this machine does not).
    health_port, metrics_port = free_port(), free_port()
    env.update(
        WALWARDEN_LISTEN_ADDRESS="127.0.0.1",
        WALWARDEN_HEALTH_PORT=str(health_port),
        WALWARDEN_METRICS_PORT=str(metrics_port),
    )
    operator = InPodOperator(cluster, release_ns, token, env, tmp_path / "pod").start()
    try:
        _back_up_and_restore(cluster, operator, namespace, postgres_server, s3_server, s3_bucket, vault_db.name)
        # Its health endpoint (the Deployment's probes) and metrics answer too.
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert (
            f'walwarden_requests_total{{kind="RestoreRequest",namespace="{namespace}",result="Succeeded"}}' in metrics
        )
        # Nothing the operator did was refused. kopf's own optional scans (list/watch of
        # namespaces and CRDs at cluster scope) are, on purpose: it falls back to the listed
        # namespaces and to API discovery.
        log = operator.log_path.read_text()
        refused = [line for line in log.splitlines() if "forbidden" in line.lower() and not KOPF_SCANS.search(line)]
        assert not refused, "\n".join(refused)
        assert "Failed to post an event" not in log
    finally:
        operator.stop()
        helm("uninstall", release, "--namespace", release_ns, check=False)


def test_operator_runs_from_a_service_account_token_kubeconfig(
    cluster, crds, helm, make_namespace, namespace, tmp_path
):
    release_ns = make_namespace("ww-sys")
    release = install_for_a_vault(helm, cluster, release_ns, namespace)
    kubeconfig = service_account_kubeconfig(
        cluster, service_account_token(cluster, release_ns, release), tmp_path / "sa.kubeconfig"
    )
    operator = OperatorProcess(
        ClusterAccess(kubeconfig, cluster.kubectl_binary, local=cluster.local),
        namespace,
        tmp_path / "operator.log",
        chart_environment(cluster, release, release_ns),
    ).start()
    try:
        cluster.kubectl(
            ["apply", "-n", namespace, "-f", "-"],
            stdin=json.dumps(
                {
                    "apiVersion": "walwarden.io/v1alpha1",
                    "kind": "BackupRequest",
                    "metadata": {"name": "seen"},
                    "spec": {
                        "database": {"secretRef": {"name": "missing"}, "databases": ["vault"]},
                        "storage": {"s3": {"bucket": "vault-backups"}},
                    },
                }
            ),
        )

        def phase() -> str | None:
            return (cluster.kubectl_json(["get", "backuprequest", "seen", "-n", namespace]).get("status") or {}).get(
                "phase"
            )

        wait_for(
            lambda: "system:anonymous" in operator.log() or phase() == "Failed",
            150,
            "the operator to handle the BackupRequest (or to show it is anonymous)",
        )
        assert "system:anonymous" not in operator.log()
        assert phase() == "Failed"  # its Secret is missing: handled, with the ServiceAccount's rights
    finally:
        operator.stop()
        helm("uninstall", release, "--namespace", release_ns, check=False)


def _back_up_and_restore(cluster, operator, namespace, postgres, s3, bucket, database) -> None:
    def apply(manifest: dict) -> None:
        cluster.kubectl(["apply", "-n", namespace, "-f", "-"], stdin=json.dumps(manifest))

    def wait_finished(plural: str, name: str, timeout: float = 240) -> dict:
        get = lambda: cluster.kubectl_json(["get", plural, name, "-n", namespace])  # noqa: E731
        wait_for(
            lambda: (get().get("status") or {}).get("phase") in ("Succeeded", "Failed", "RolledBack"),
            timeout,
            f"{plural}/{name} to finish\n{operator.log()}",
        )
        found = get()
        assert found["status"]["phase"] == "Succeeded", json.dumps(found["status"], indent=1) + "\n" + operator.log()
        return found

    # A stand-in vault whose wallet really serves accounts from the database.
    address = f"127.4.{random.randint(0, 255)}.{random.randint(1, 254)}"
    wallet_url = f"http://{address}:8080"
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vault-db-admin"},
            "stringData": {
                "host": "127.0.0.1",
                "port": str(postgres.port),
                "user": postgres.superuser,
                "password": postgres.password,
                "sslmode": "disable",
            },
        }
    )
    apply(s3.credentials_secret("s3-credentials"))
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vault-emp"},
            "stringData": {"password": "encryptor-master-password"},
        }
    )
    info = DatabaseInfo("127.0.0.1", postgres.port, postgres.superuser, postgres.password, database)
    deploy_vault(
        cluster,
        namespace,
        ENVIRONMENT,
        info,
        overrides={
            "wallet": workload(
                "wallet",
                "Deployment",
                1,
                EXEC_LABELS,
                wallet.container(f"{ENVIRONMENT}.{namespace}.wallet.db-info", bind=address),
            )
        },
    )
    replicas = {name: count for name, (_, count, _) in DEFAULT_SERVICES.items()} | {"wallet": 1}
    wait_for(lambda: ready_replicas(cluster, namespace) == replicas, 300, "the vault to be Ready")
    storage = {
        "s3": {
            "bucket": bucket,
            "endpoint": s3.endpoint,
            "forcePathStyle": True,
            "credentialsSecretRef": {"name": "s3-credentials"},
        }
    }
    emp = [{"name": "vault-emp", "key": "password"}]

    apply(
        {
            "apiVersion": "walwarden.io/v1alpha1",
            "kind": "BackupRequest",
            "metadata": {"name": "nightly"},
            "spec": {
                "database": {"secretRef": {"name": "vault-db-admin"}, "databases": [database]},
                "storage": storage,
                "encryptorSecrets": emp,
                "quiesce": True,
            },
        }
    )
    backup = wait_finished("backuprequests", "nightly")
    original = account_names(postgres.dsn(database))
    vaultdb.mutate_accounts(postgres.dsn(database))
    assert account_names(postgres.dsn(database)) != original

    def approved(request: dict) -> dict:
        """The request with a token approving it as written (walwarden token issue --request)."""
        spec = RestoreRequestSpec.model_validate(request["spec"])
        name, sha256 = request["metadata"]["name"], backup["status"]["artifact"]["sha256"]
        token = issue_token(APPROVAL_KEY, Approval.of_request(namespace, name, spec, sha256), ttl_seconds=900)
        return request | {"spec": request["spec"] | {"approvalToken": token}}

    # InPlace (Switch), approved by a token, with a safety backup asked for (the operator creates a BackupRequest).
    apply(
        approved(
            {
                "apiVersion": "walwarden.io/v1alpha1",
                "kind": "RestoreRequest",
                "metadata": {"name": "in-place"},
                "spec": {
                    "mode": "InPlace",
                    "source": {"backupRef": {"name": "nightly"}},
                    "safetyBackup": True,  # asked for: Switch needs none, but the chart's RBAC must allow one
                    "encryptorSecrets": emp,
                    "verify": {
                        "healthUrl": f"{wallet_url}/health",
                        "accountsUrl": f"{wallet_url}/api/v2/accounts",
                        "timeoutSeconds": 60,
                    },
                    "sessionPolicy": {"onRemaining": "Terminate", "waitSeconds": 3},
                },
            }
        )
    )
    restore = wait_finished("restorerequests", "in-place")
    assert account_names(postgres.dsn(database)) == original
    steps = {s["name"]: s["state"] for s in restore["status"]["steps"]}
    assert steps["SafetyBackup"] == steps["Build"] == steps["Switch"] == steps["Verify"] == "Succeeded"
    assert wait_finished("backuprequests", restore["status"]["safetyBackup"])
    assert ready_replicas(cluster, namespace) == replicas

    # Redirected: the db-info Secrets are repointed (patched) and orchestrator restarted.
    redirected_db = f"{database}_redirected"
    apply(
        approved(
            {
                "apiVersion": "walwarden.io/v1alpha1",
                "kind": "RestoreRequest",
                "metadata": {"name": "redirected"},
                "spec": {
                    "mode": "Redirected",
                    "source": {"backupRef": {"name": "nightly"}},
                    "encryptorSecrets": emp,
                    "target": {"secretRef": {"name": "vault-db-admin"}, "database": redirected_db},
                    "redirect": {"dbHost": "127.0.0.1", "dbName": redirected_db, "environment": ENVIRONMENT},
                    "verify": {
                        "healthUrl": f"{wallet_url}/health",
                        "accountsUrl": f"{wallet_url}/api/v2/accounts",
                        "timeoutSeconds": 60,
                    },
                    "sessionPolicy": {"onRemaining": "Terminate", "waitSeconds": 3},
                },
            }
        )
    )
    try:
        wait_finished("restorerequests", "redirected")
        db_info = cluster.kubectl_json(["get", "secret", f"{ENVIRONMENT}.{namespace}.wallet.db-info", "-n", namespace])
        assert base64.b64decode(db_info["data"]["DB_NAME"]).decode() == redirected_db
        assert account_names(postgres.dsn(redirected_db)) == original
    finally:
        postgres.drop_database(redirected_db)

    # Every transition is an Event on the request: the operator could post them.
    events = cluster.kubectl_json(
        ["get", "events", "-n", namespace, "--field-selector", "involvedObject.name=in-place"]
    )["items"]
    assert {"Accepted", "Succeeded"} <= {event["reason"] for event in events}
