"""The admission hook (devstack/admission.py): the real API server asks it about a selected write
before storing it, stores the write only if it agrees, and forgets the hook on exit."""

from __future__ import annotations

import json

import pytest

from devstack.admission import AdmissionHook
from devstack.pytest_kube import wait_for

pytestmark = pytest.mark.integration

CONFIGMAP_WRITES = [
    {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["configmaps"],
        "scope": "Namespaced",
    }
]
HOOKED = {"walwarden.test/hooked": "yes"}


@pytest.fixture
def local_only(cluster):
    if not cluster.local:
        pytest.skip("the API server must reach a webhook on this machine's loopback: local control plane only")


def apply(cluster, namespace: str, name: str, value: str, labels: dict[str, str]):
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"v": value},
    }
    return cluster.kubectl(["apply", "-n", namespace, "-f", "-"], stdin=json.dumps(manifest), check=False)


def stored(cluster, namespace: str, name: str) -> str | None:
    result = cluster.kubectl(["get", "configmap", name, "-n", namespace, "-o", "json"], check=False)
    return json.loads(result.stdout)["data"]["v"] if result.returncode == 0 else None


def test_a_selected_write_is_shown_first_and_stored_only_if_allowed(cluster, namespace, tmp_path, local_only):
    seen = []

    def decide(request: dict) -> str | None:
        seen.append((request["operation"], request["name"], request["object"]["data"]["v"]))
        return "refused by the test" if request["object"]["data"]["v"] == "refuse" else None

    with AdmissionHook(cluster, tmp_path, namespace, CONFIGMAP_WRITES, HOOKED, decide) as hook:
        assert apply(cluster, namespace, "watched", "first", HOOKED).returncode == 0
        refused = apply(cluster, namespace, "watched", "refuse", HOOKED)
        assert refused.returncode != 0 and "refused by the test" in refused.stderr
        assert stored(cluster, namespace, "watched") == "first"
        # Not selected (no label): never shown, stored as usual.
        assert apply(cluster, namespace, "unwatched", "refuse", {}).returncode == 0
        assert stored(cluster, namespace, "unwatched") == "refuse"
    assert seen == [("CREATE", "watched", "first"), ("UPDATE", "watched", "refuse")]
    # Gone on exit: the API server stops asking it (once it has noticed the configuration is gone).
    assert cluster.kubectl(["get", "validatingwebhookconfiguration", hook.name], check=False).returncode != 0
    wait_for(
        lambda: apply(cluster, namespace, "watched", "refuse", HOOKED).returncode == 0,
        120,
        "the API server to forget the removed hook",
    )


def test_a_failing_decision_refuses_the_write_and_fails_the_test(cluster, namespace, tmp_path, local_only):
    def decide(request: dict) -> str | None:
        raise ValueError("a bug in the test's hook")

    with (
        pytest.raises(RuntimeError, match="a bug in the test's hook"),
        AdmissionHook(cluster, tmp_path, namespace, CONFIGMAP_WRITES, HOOKED, decide),
    ):
        refused = apply(cluster, namespace, "watched", "any", HOOKED)
        assert refused.returncode != 0 and "the admission hook failed" in refused.stderr
    assert stored(cluster, namespace, "watched") is None
