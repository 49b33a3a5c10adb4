"""Runner Jobs: create once, then read their outcome, including the runner's reason on failure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from walwarden.kube.api import Conflict, Kube, call

# The runner's last line on failure, which the pod's termination message carries
# (terminationMessagePolicy FallbackToLogsOnError): "walwarden-error: <Reason>: <message>".
# The operator side reads the runner's contract only, never the runner itself.
from walwarden.runner.contract import parse_error_line


class JobState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobOutcome:
    state: JobState
    reason: str = ""  # the runner's reason when it said one, else a Kubernetes reason
    message: str = ""


def job_exists(kube: Kube, namespace: str, name: str) -> bool:
    return call(kube.batch.read_namespaced_job, name, namespace) is not None


def ensure_job(kube: Kube, namespace: str, manifest: dict) -> None:
    """Create the Job unless it exists: a step run twice never starts a second runner."""
    if job_exists(kube, namespace, manifest["metadata"]["name"]):
        return
    try:
        call(kube.batch.create_namespaced_job, namespace, manifest)
    except Conflict:  # created meanwhile by an earlier pass whose status patch was lost
        pass


def delete_job(kube: Kube, namespace: str, name: str) -> None:
    """Delete the Job and, before it is gone, its pods (foreground): its runner stops."""
    call(kube.batch.delete_namespaced_job, name, namespace, propagation_policy="Foreground")


def job_outcome(kube: Kube, namespace: str, name: str, owner_uid: str) -> JobOutcome | None:
    """The Job's outcome, or None when there is none. A Job under the name that `owner_uid` (the
    request) does not own failed as far as the request is concerned: its names are predictable,
    and a Job someone else made first is never taken for the request's own."""
    job = call(kube.batch.read_namespaced_job, name, namespace)
    if job is None:
        return None
    references = (job.metadata.owner_references or []) if job.metadata else []
    if not any(reference.uid == owner_uid for reference in references):
        return JobOutcome(
            JobState.FAILED,
            "JobNotOurs",
            f"a Job named {name} exists that this request did not create; it is not used. Delete it if it is not "
            "yours to keep, and create a new request",
        )
    for condition in (job.status.conditions or []) if job.status else []:
        if condition.status != "True":
            continue
        if condition.type == "Complete":
            return JobOutcome(JobState.SUCCEEDED)
        if condition.type == "Failed":
            reason, message = runner_failure(kube, namespace, name)
            return JobOutcome(
                JobState.FAILED,
                reason or condition.reason or "JobFailed",
                message or condition.message or "the runner Job failed",
            )
    if _runner_pod_succeeded(kube, namespace, name):
        # Our Jobs run one pod, once: its exit 0 is the Job's success. The Job controller marks
        # the Job Complete a moment later; while the vault is down, that moment is downtime.
        return JobOutcome(JobState.SUCCEEDED)
    return JobOutcome(JobState.RUNNING)


def _job_pods(kube: Kube, namespace: str, job_name: str) -> list:
    """The Job's own pods: a label anyone who may create pods can set is not enough, the pod must
    name this Job (its uid) as its controller."""
    job = call(kube.batch.read_namespaced_job, job_name, namespace)
    uid = job.metadata.uid if job is not None and job.metadata is not None else None
    if uid is None:
        return []
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
    return [pod for pod in pods if _controlled_by(pod, uid)]


def _controlled_by(pod: Any, uid: str) -> bool:
    references = (pod.metadata.owner_references or []) if pod.metadata else []
    return any(reference.controller and reference.uid == uid for reference in references)


def _runner_pod_succeeded(kube: Kube, namespace: str, job_name: str) -> bool:
    return any(pod.status and pod.status.phase == "Succeeded" for pod in _job_pods(kube, namespace, job_name))


def runner_failure(kube: Kube, namespace: str, job_name: str) -> tuple[str, str]:
    """The runner's own account of why it failed, from its pod's termination message."""
    pods = _job_pods(kube, namespace, job_name)
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        for status in (pod.status.container_statuses or []) if pod.status else []:
            terminated = status.state.terminated if status.state else None
            if terminated and terminated.message:
                return parse_runner_error(terminated.message)
    return "", ""


def parse_runner_error(text: str) -> tuple[str, str]:
    """(reason, message) of the last error line in `text`; without one (a crash before the runner
    could say why), no reason and the last line as the message."""
    lines = text.strip().splitlines()
    for line in reversed(lines):
        if (parsed := parse_error_line(line)) is not None:
            return parsed
    return "", lines[-1] if lines else ""
