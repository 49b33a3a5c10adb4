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
START_SECONDS = 120  # to list the pods and begin watching: generous, never a short wait


@dataclass(frozen=True)
class PodEvent:
    at: float  # time.monotonic() when the API server told us
    kind: str  # "deleted" or "ready"
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
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodObserver:
        # Watching must have begun before the test acts, or the first events are lost: wait for
        # it (a busy API server may take a while), unless the watch failed.
        self._thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self._started.wait(0.5):
            if not self._thread.is_alive():
                raise RuntimeError(f"the pod watch of {self.namespace} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the pod watch of {self.namespace} did not start in {START_SECONDS}s")
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._stop.set()
        self._thread.join(60)  # the watch ends within its 2 s server timeout
        if self._error is not None and exc_type is None:
            raise RuntimeError(f"the pod watch of {self.namespace} failed: events may be missing") from self._error

    def _run(self) -> None:
        try:
            self._watch()
        except BaseException as error:  # seen by __enter__/__exit__: a dead watch must not pass silently
            self._error = error

    def _watch(self) -> None:
        # One listing: the pods Ready at its resourceVersion, and the watch from there (two
        # listings would lose a pod that became Ready between them).
        listed = self.core.list_namespaced_pod(self.namespace)
        resource_version = listed.metadata.resource_version
        for pod in listed.items:
            if _is_ready(pod):
                self._ready.add(pod.metadata.name)
        self._started.set()
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.core.list_namespaced_pod, self.namespace, resource_version=resource_version, timeout_seconds=2
            )
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
