"""Watching what really happens to a namespace's pods, from the API server, while a test runs:
when each service's pods were deleted and when they became Ready. Tests assert order on this
record rather than on what the operator says it did."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from kubernetes import client, watch

from devstack.cluster import ClusterAccess

SERVICE_LABEL = "app.kubernetes.io/name"


@dataclass(frozen=True)
class PodEvent:
    at: float          # time.monotonic() when the API server told us
    kind: str          # "deleted" or "ready"
    service: str
    pod: str


class PodObserver:
    def __init__(self, cluster: ClusterAccess, namespace: str):
        self.core = client.CoreV1Api(cluster.api_client())
        self.namespace = namespace
        self.events: list[PodEvent] = []
        self._ready: set[str] = set()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "PodObserver":
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        resource_version = self.core.list_namespaced_pod(self.namespace).metadata.resource_version
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if _is_ready(pod):
                self._ready.add(pod.metadata.name)
        self._started.set()
        while not self._stop.is_set():
            stream = watch.Watch().stream(self.core.list_namespaced_pod, self.namespace,
                                          resource_version=resource_version, timeout_seconds=2)
            for event in stream:
                pod = event["object"]
                resource_version = pod.metadata.resource_version
                service = (pod.metadata.labels or {}).get(SERVICE_LABEL, "")
                name = pod.metadata.name
                if event["type"] == "DELETED":
                    self._ready.discard(name)
                    self.events.append(PodEvent(time.monotonic(), "deleted", service, name))
                elif _is_ready(pod) and name not in self._ready:
                    self._ready.add(name)
                    self.events.append(PodEvent(time.monotonic(), "ready", service, name))
                if self._stop.is_set():
                    return

    def times(self, kind: str, services: list[str]) -> list[float]:
        return [e.at for e in self.events if e.kind == kind and e.service in services]


def _is_ready(pod) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def assert_tiers_in_order(observer: PodObserver, kind: str, tiers: list[list[str]]) -> None:
    """Every event of a tier happened after every event of the tier before it (no overlap)."""
    previous_last, previous = None, None
    for tier in tiers:
        times = observer.times(kind, tier)
        assert times, f"no '{kind}' event observed for {tier}"
        if previous_last is not None:
            assert min(times) >= previous_last, f"{tier} {kind} before {previous} finished"
        previous_last, previous = max(times), tier
