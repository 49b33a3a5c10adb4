"""pytest fixtures for the cluster side of the local stack: the control plane (or the cluster named
by WALWARDEN_KUBECONFIG), the CRDs applied to it, and a namespace of its own for each test."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack.binaries import ensure_binaries, read_versions
from devstack.cluster import KUBECONFIG_ENV, ClusterAccess
from devstack.controlplane import LocalControlPlane
from devstack.processes import wait_until

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = REPO / "crds"


def pytest_report_header(config):
    versions = read_versions()
    target = os.environ.get(KUBECONFIG_ENV) or "local control plane (devstack)"
    pins = ", ".join(f"{k.removesuffix('_VERSION').lower()} {v}" for k, v in versions.items())
    return [f"walwarden cluster: {target}", f"walwarden pinned: {pins}"]


@pytest.fixture(scope="session")
def cluster(request, tmp_path_factory) -> ClusterAccess:
    """The cluster every integration test talks to, started once per session."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        access = ClusterAccess(Path(external), ensure_binaries(["kubernetes"]).kubectl)
        _report(request, f"using the cluster of {KUBECONFIG_ENV}: server {access.server_version()}")
        yield access
        return
    plane = LocalControlPlane(tmp_path_factory.mktemp("cluster"))
    plane.start()
    try:
        access = plane.access
        _report(
            request, f"local control plane up: kube-apiserver {access.server_version()} (kubeconfig {plane.kubeconfig})"
        )
        yield access
    finally:
        plane.stop()


def _report(request, line: str) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture:
        with capture.global_and_fixture_disabled():  # fd capture would swallow it otherwise
            reporter.write_line(f"\n[devstack] {line}")


@pytest.fixture(scope="session")
def crds(cluster: ClusterAccess) -> list[str]:
    """The generated CRDs of crds/, applied and Established."""
    cluster.kubectl(["apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR)])
    names = [d["metadata"]["name"] for d in cluster.kubectl_json(["get", "-f", str(CRD_DIR)])["items"]]
    for name in names:
        cluster.kubectl(["wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}"])
    return names


@contextmanager
def fresh_namespace(cluster: ClusterAccess, prefix: str) -> Iterator[str]:
    """A new namespace named after `prefix`, ready for pods, deleted afterwards."""
    name = f"{prefix[:48].strip('-')}-{secrets.token_hex(3)}"
    cluster.kubectl(["create", "namespace", name])
    # Pods are refused until the service-account controller made the namespace's "default" account.
    wait_until(
        lambda: cluster.kubectl(["get", "serviceaccount", "default", "-n", name], check=False).returncode == 0,
        60,
        f"serviceaccount default in {name}",
    )
    try:
        yield name
    finally:
        cluster.kubectl(["delete", "namespace", name, "--wait=false"], check=False)


@pytest.fixture
def namespace(request, cluster: ClusterAccess) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    with fresh_namespace(cluster, f"t-{slug}") as name:
        yield name


def wait_for(condition, timeout: float = 60, what: str = "condition", interval: float = 0.5, on_timeout=None):
    """Re-exported for tests: poll `condition` until true, else fail with `what` (and what
    `on_timeout()` says)."""
    wait_until(condition, timeout, what, interval=interval, on_timeout=on_timeout)
