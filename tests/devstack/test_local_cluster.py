"""The local stack's cluster behaves like a cluster: real API server at the pinned version, kwok
nodes and pod lifecycles, and the local pod executor running labelled pods for real."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from devstack.binaries import read_versions
from devstack.pytest_kube import wait_for

pytestmark = pytest.mark.integration

EXEC = {"devstack.walwarden.io/exec": "true"}


def apply(cluster, namespace, manifest: dict) -> None:
    cluster.kubectl(["apply", "-n", namespace, "-f", "-"], stdin=json.dumps(manifest))


def pods(cluster, namespace, selector: str) -> list[dict]:
    return cluster.kubectl_json(["get", "pods", "-n", namespace, "-l", selector])["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def deployment(name: str, replicas: int, labels: dict | None = None, container: dict | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {"containers": [container or {"name": "main", "image": "example/none"}]},
            },
        },
    }


def job(name: str, container: dict, labels: dict | None = None, volumes: list | None = None) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels or {}},
                "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes or []},
            },
        },
    }


def job_condition(cluster, namespace, name) -> str | None:
    status = cluster.kubectl_json(["get", "job", name, "-n", namespace]).get("status", {})
    for condition in status.get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return condition["type"]
    return None


def test_api_server_is_the_pinned_version(cluster):
    version = cluster.server_version()
    if cluster.local:
        assert version == read_versions()["KUBERNETES_VERSION"]
    assert version.startswith("v1.")


def test_scaled_deployment_gets_ready_pods_and_loses_them(cluster, namespace):
    apply(cluster, namespace, deployment("web", 3))
    wait_for(lambda: sum(ready(p) for p in pods(cluster, namespace, "app=web")) == 3, 60, "3 Ready pods")
    cluster.kubectl(["scale", "deployment/web", "--replicas=0", "-n", namespace])
    wait_for(lambda: not pods(cluster, namespace, "app=web"), 60, "pods gone after scale to 0")


def test_statefulset_scales_like_a_deployment(cluster, namespace):
    manifest = deployment("nats", 2)
    manifest["kind"] = "StatefulSet"
    manifest["spec"]["serviceName"] = "nats"
    apply(cluster, namespace, manifest)
    wait_for(lambda: sum(ready(p) for p in pods(cluster, namespace, "app=nats")) == 2, 60, "2 Ready pods")
    cluster.kubectl(["scale", "statefulset/nats", "--replicas=0", "-n", namespace])
    wait_for(lambda: not pods(cluster, namespace, "app=nats"), 60, "pods gone")


def test_plain_job_completes(cluster, namespace):
    apply(cluster, namespace, job("plain", {"name": "main", "image": "example/none"}))
    wait_for(lambda: job_condition(cluster, namespace, "plain") == "Complete", 60, "Job Complete")


@pytest.fixture
def executor_only(cluster):
    if not cluster.local:
        pytest.skip("the local pod executor exists only on the local control plane; other clusters run real containers")


def test_executor_runs_the_command_with_the_pods_environment(cluster, namespace, executor_only):
    cluster.kubectl(
        [
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            namespace,
            "--from-literal=password=s3cr3t",
            "--from-literal=user=alice",
        ]
    )
    cluster.kubectl(
        ["create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast", "--from-literal=LEVEL=debug"]
    )
    script = "\n".join(
        [
            "set -ex",  # the failing check lands in the pod's termination message
            'test "$LITERAL" = plain',
            'test "$EXPANDED" = plain-x',
            'test "$PASSWORD" = s3cr3t',
            'test "$MODE" = fast',
            'test "$CFG_LEVEL" = debug',
            'test "$CFG_mode" = fast',
            'test "$S_user" = alice',
            'case "$POD" in env-*) ;; *) exit 9 ;; esac',
            'test "$(cat /etc/creds/password)" = s3cr3t',
            "test -d /scratch",
        ]
    )
    container = {
        "name": "main",
        "image": "example/none",
        "command": ["sh", "-c", script],
        "env": [
            {"name": "LITERAL", "value": "plain"},
            {"name": "EXPANDED", "value": "$(LITERAL)-x"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}, "prefix": "S_"},
        ],
        "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}, {"name": "scratch", "mountPath": "/scratch"}],
    }
    volumes = [{"name": "creds", "secret": {"secretName": "creds"}}, {"name": "scratch", "emptyDir": {}}]
    apply(cluster, namespace, job("env", container, EXEC, volumes))
    wait_for(lambda: job_condition(cluster, namespace, "env") is not None, 60, "Job finished")
    [pod] = pods(cluster, namespace, "job-name=env")
    assert job_condition(cluster, namespace, "env") == "Complete", pod["status"]["containerStatuses"]


def test_executor_reports_the_real_exit_code(cluster, namespace, executor_only):
    container = {"name": "main", "image": "example/none", "command": ["sh", "-c", "echo going down >&2; exit 3"]}
    apply(cluster, namespace, job("fails", container, EXEC))
    wait_for(lambda: job_condition(cluster, namespace, "fails") is not None, 60, "Job finished")
    assert job_condition(cluster, namespace, "fails") == "Failed"
    [pod] = pods(cluster, namespace, "job-name=fails")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert "going down" in terminated["message"]


def test_executor_serves_ready_pods_and_stops_them_on_delete(cluster, namespace, executor_only):
    container = {
        "name": "main",
        "image": "example/none",
        "command": ["python3", "-m", "http.server", "8080", "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    apply(cluster, namespace, deployment("srv", 1, EXEC, container))
    wait_for(lambda: any(ready(p) for p in pods(cluster, namespace, "app=srv")), 60, "Ready pod")
    [pod] = pods(cluster, namespace, "app=srv")
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("127.")
    with urllib.request.urlopen(f"http://{pod_ip}:8080/", timeout=5) as response:
        assert response.status == 200
    cluster.kubectl(["scale", "deployment/srv", "--replicas=0", "-n", namespace])
    wait_for(lambda: not pods(cluster, namespace, "app=srv"), 60, "pod gone")
    # A kubelet removes the pod only after its process stopped: the port must be closed now —
    # refused, not merely slow to answer (a timeout on a busy machine would pass for closed).
    with pytest.raises(urllib.error.URLError) as closed:
        urllib.request.urlopen(f"http://{pod_ip}:8080/", timeout=30)
    assert isinstance(closed.value.reason, ConnectionRefusedError), closed.value


def test_executor_keeps_a_pod_pending_while_its_secret_is_missing(cluster, namespace, executor_only):
    container = {
        "name": "main",
        "image": "example/none",
        "command": ["true"],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "x"}}}],
    }
    apply(cluster, namespace, job("waits", container, EXEC))

    def waiting_reason():
        found = pods(cluster, namespace, "job-name=waits")
        statuses = found[0].get("status", {}).get("containerStatuses", []) if found else []
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    wait_for(lambda: waiting_reason() == "CreateContainerConfigError", 60, "CreateContainerConfigError")
    cluster.kubectl(["create", "secret", "generic", "later", "-n", namespace, "--from-literal=x=1"])
    wait_for(
        lambda: job_condition(cluster, namespace, "waits") == "Complete", 60, "Job Complete once the Secret exists"
    )
