"""Whether Argo CD would scale a stopped service back up (issue 12): seen before anything stops.

A service tracked by an Argo CD Application whose automated sync self-heals, and whose
spec.replicas the Application does not ignore, is put back to its git replica count as soon as
ScaleDown sets 0: the restore would then run under live services. Preflight (and a quiesced
backup's Validate) refuse such a request, naming the Application and the ignoreDifferences entry
that makes it safe. An Application the operator cannot read is said, not refused: the stop window
is checked again before the switch or pg_restore (tiers.check_still_stopped).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException

from walwarden.api import Topology
from walwarden.kube import workloads
from walwarden.kube.api import Kube
from walwarden.workflow.engine import StepFailed

ARGOCD_GROUP, ARGOCD_VERSION, APPLICATIONS = "argoproj.io", "v1alpha1", "applications"
ARGOCD_NAMESPACE = "argocd"  # where Applications live unless their tracking id names a namespace
REPLICAS_POINTER, REPLICAS_JQ = "/spec/replicas", ".spec.replicas"


def _ignores_replicas(app: dict[str, Any], workload: workloads.Workload) -> bool:
    for entry in (app.get("spec") or {}).get("ignoreDifferences") or []:
        if entry.get("group", "") not in ("apps", "*") or entry.get("kind") not in (workload.kind, "*"):
            continue
        if entry.get("name") not in (None, "", workload.name) or entry.get("namespace") not in (
            None,
            "",
            workload.namespace,
        ):
            continue
        if REPLICAS_POINTER in (entry.get("jsonPointers") or []) or REPLICAS_JQ in (
            entry.get("jqPathExpressions") or []
        ):
            return True
    return False


def _self_heals(app: dict[str, Any]) -> bool:
    automated = ((app.get("spec") or {}).get("syncPolicy") or {}).get("automated") or {}
    return bool(automated) and automated.get("enabled", True) is not False and bool(automated.get("selfHeal"))


def _read_application(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None | str:
    """The Application, None when there is none, or why it cannot be read."""
    try:
        found: Any = kube.custom.get_namespaced_custom_object(
            ARGOCD_GROUP, ARGOCD_VERSION, namespace, APPLICATIONS, name
        )
        return dict(found)
    except ApiException as error:
        if error.status == 404:
            return None
        return f"HTTP {error.status} {error.reason}"


def check_gitops_leaves_replicas_alone(
    kube: Kube, namespace: str, topology: Topology, argocd_namespace: str = ARGOCD_NAMESPACE
) -> str:
    """Refuse when an Argo CD Application would self-heal a stopped service's replicas back."""
    fights, unread, checked = [], [], []
    for tier in topology.stop_tiers:
        for name in tier:
            workload = workloads.find_workload(kube, namespace, name)
            if workload is None or workload.argocd_application is None:
                continue
            # "<namespace>_<name>" when Applications live in any namespace, else in Argo CD's own.
            app_namespace, _, app_name = workload.argocd_application.rpartition("_")
            app = _read_application(kube, app_namespace or argocd_namespace, app_name)
            where = f"{app_namespace or argocd_namespace}/{app_name}"
            if isinstance(app, str):
                unread.append(f"{name} ({where}: {app})")
            elif app is not None and _self_heals(app) and not _ignores_replicas(app, workload):
                fights.append(f"{name} ({workload.kind}, Application {where})")
            elif app is not None:
                checked.append(name)
    if fights:
        raise StepFailed(
            "GitOpsWouldRestartServices",
            f"Argo CD self-heals {', '.join(fights)} and does not ignore their replicas: it would scale them back "
            "up as soon as the restore stops them, and the restore would run under live services. Nothing was "
            "touched: every service is still running. Add to the Application spec.ignoreDifferences "
            "[{group: apps, kind: Deployment|StatefulSet, jsonPointers: [/spec/replicas]}] and the sync option "
            "RespectIgnoreDifferences=true (docs/gitops.md), or turn selfHeal off for the restore",
        )
    said = []
    if checked:
        said.append(f"Argo CD leaves the replicas of {', '.join(checked)} alone")
    if unread:
        said.append(f"cannot read the Argo CD Application of {', '.join(unread)}: not checked")
    return "; ".join(said)
