"""The vault's services as Deployments or StatefulSets: find them, scale them, count their pods.

A service scaled down carries its original replica count in an annotation, written in the same
patch as the scale: if the operator dies right after, the world still says what to restore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from walwarden.kube.api import Kube, call

if TYPE_CHECKING:
    from kubernetes.client import V1Deployment, V1StatefulSet

ORIGINAL_REPLICAS = "walwarden.io/original-replicas"
KINDS = ("Deployment", "StatefulSet")
# Our field manager: managedFields then tell our scale from anyone else's.
FIELD_MANAGER = "walwarden"
# How Argo CD marks what an Application manages: the annotation (tracking method annotation, the
# default since v3: "<app>:<group>/<kind>:<namespace>/<name>") or the legacy label.
ARGOCD_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGOCD_TRACKING_LABEL = "app.kubernetes.io/instance"


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    replicas: int
    ready_replicas: int
    selector: dict[str, str]
    original_replicas: int | None  # from our annotation: set while we hold it scaled down
    replicas_set_by: str | None = None  # the field manager that last set spec.replicas (managedFields)
    argocd_application: str | None = None  # the Argo CD Application that tracks it, if one does

    @property
    def label_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))


def _read(kube: Kube, kind: str, namespace: str, name: str) -> V1Deployment | V1StatefulSet | None:
    if kind == "Deployment":
        return call(kube.apps.read_namespaced_deployment, name, namespace)
    return call(kube.apps.read_namespaced_stateful_set, name, namespace)


def find_workload(kube: Kube, namespace: str, name: str) -> Workload | None:
    """The service `name` as a Deployment, else as a StatefulSet; None when it is neither."""
    for kind in KINDS:
        found = _read(kube, kind, namespace, name)
        if found is not None:
            assert found.spec is not None  # the API server always returns a workload's spec
            annotations = (found.metadata.annotations if found.metadata else None) or {}
            annotation = annotations.get(ORIGINAL_REPLICAS)
            return Workload(
                kind=kind,
                namespace=namespace,
                name=name,
                replicas=found.spec.replicas if found.spec.replicas is not None else 1,
                ready_replicas=(found.status.ready_replicas or 0) if found.status else 0,
                selector=dict(found.spec.selector.match_labels or {}),
                original_replicas=int(annotation) if annotation is not None else None,
                replicas_set_by=_replicas_manager(found),
                argocd_application=_argocd_application(found),
            )
    return None


def _replicas_manager(found: Any) -> str | None:
    """Who last wrote spec.replicas, from managedFields (the newest entry that owns the field)."""
    owners = [
        entry
        for entry in (getattr(found.metadata, "managed_fields", None) or [])
        if "f:replicas" in ((entry.fields_v1 or {}).get("f:spec") or {})
    ]
    if not owners:
        return None
    newest = max(owners, key=lambda entry: str(entry.time or ""))
    via = f" ({newest.subresource} subresource)" if getattr(newest, "subresource", None) else ""
    return f"{newest.manager}{via}"


def _argocd_application(found: Any) -> str | None:
    metadata = found.metadata
    tracking = ((metadata.annotations if metadata else None) or {}).get(ARGOCD_TRACKING_ANNOTATION)
    if tracking:
        return tracking.split(":", 1)[0]
    return ((metadata.labels if metadata else None) or {}).get(ARGOCD_TRACKING_LABEL)


def _patch(kube: Kube, workload: Workload, body: dict[str, Any]) -> None:
    patcher = (
        kube.apps.patch_namespaced_deployment
        if workload.kind == "Deployment"
        else kube.apps.patch_namespaced_stateful_set
    )
    patcher(workload.name, workload.namespace, body, field_manager=FIELD_MANAGER)


def scale_to_zero(kube: Kube, workload: Workload) -> int:
    """Scale down, remembering the original count (once: a second call keeps the first record)."""
    original = workload.original_replicas if workload.original_replicas is not None else workload.replicas
    _patch(kube, workload, {"metadata": {"annotations": {ORIGINAL_REPLICAS: str(original)}}, "spec": {"replicas": 0}})
    return original


def scale_to(kube: Kube, workload: Workload, replicas: int) -> None:
    _patch(kube, workload, {"spec": {"replicas": replicas}})


def forget_original_replicas(kube: Kube, workload: Workload) -> None:
    """Remove our record of the original count (once the service runs again): a null in a merge patch."""
    _patch(kube, workload, {"metadata": {"annotations": {ORIGINAL_REPLICAS: None}}})


def restart(kube: Kube, workload: Workload, at: str) -> None:
    """A rolling restart, as `kubectl rollout restart` does it."""
    _patch(
        kube, workload, {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}}
    )


def pods_of(kube: Kube, workload: Workload) -> list[str]:
    """Names of the pods that still exist (terminating ones included: they may hold sessions)."""
    pods = kube.core.list_namespaced_pod(workload.namespace, label_selector=workload.label_selector).items
    return [str(pod.metadata.name) for pod in pods if pod.metadata]


def unready_pods(kube: Kube, workload: Workload) -> list[str]:
    """Why its pods are not Ready, one line each, from their last state as the kubelet reports it:
    waiting reasons (CrashLoopBackOff), the last exit, restarts. Reasons and exit codes only: a
    termination message is a log tail, and a log may hold anything."""
    pods = kube.core.list_namespaced_pod(workload.namespace, label_selector=workload.label_selector).items
    lines = []
    for pod in pods:
        containers = (pod.status.container_statuses if pod.status else None) or []
        if containers and all(c.ready for c in containers):
            continue
        name = pod.metadata.name if pod.metadata else "?"
        lines.append(f"pod {name}: " + (", ".join(_container_state(c) for c in containers) or "no container started"))
    return lines


def _container_state(container: Any) -> str:
    parts = [f"{container.name} not Ready"]
    state, last = container.state, container.last_state
    if state is not None and state.waiting is not None:
        parts.append(f"waiting ({state.waiting.reason or 'no reason given'})")
    if state is not None and state.terminated is not None:
        parts.append(f"exited {state.terminated.exit_code} ({state.terminated.reason or 'no reason given'})")
    if last is not None and last.terminated is not None:
        parts.append(f"last exit {last.terminated.exit_code} ({last.terminated.reason or 'no reason given'})")
    if container.restart_count:
        parts.append(f"restarted {container.restart_count} time(s)")
    if state is not None and state.running is not None and len(parts) == 1:
        parts.append("running, its readiness probe failing")
    return " ".join(parts[:1]) + (": " + "; ".join(parts[1:]) if parts[1:] else "")
