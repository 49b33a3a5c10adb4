"""Fakes shared by the unit tests of the steps (tests/unit/restore/steps, backup, workflow);
the `vault` fixture (tests/unit/conftest.py) is a `Vault`.

A `Vault` is one small world, all in memory:

- `vault.kube`: the kubernetes client methods the operator calls (core, apps, batch, custom,
  coordination), answering as the real client does (model objects with snake_case attributes,
  ApiException 404/409), over a store of Secrets, ConfigMaps, Deployments/StatefulSets and their
  pods, Jobs, custom objects and Leases. It is no controller: pods go away or become Ready only
  when a test says so (`settle`), so every wait can be looked at.
- `vault.s3`: an S3 client (get/put/head object, presigned URLs) over a dict; the operator's
  `storage.s3.make_client` returns it.
- `vault.db`: the target PostgreSQL as walwarden.postgres answers about it (version, databases,
  sessions, row counts).
- a default vault: the default topology's services running, the admin and EMP Secrets, and a
  Succeeded BackupRequest `nightly` whose signed manifest is in S3.

`vault.restore_run(...)` and `vault.backup_run(...)` build a Run over it; `vault.next_pass(run)`
is the same request on the operator's next pass (its status through JSON, nothing resolved);
`vault.until_done(look)` looks again, the cluster catching up in between, until a step is done.
Time is arranged through the status, never a patched clock: `ago(seconds)` for its timestamps,
`running_since(run, step, seconds)` for how long the current step has run.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import io
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace as NS
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError
from kubernetes.client.rest import ApiException

from walwarden import postgres
from walwarden.api import (
    API_VERSION,
    BackupRequestSpec,
    BackupRequestStatus,
    RestoreRequestSpec,
    RestoreRequestStatus,
    format_timestamp,
    utcnow,
)
from walwarden.api import backup as backup_api
from walwarden.api.common import GROUP, VERSION
from walwarden.api.roles import DatabaseRole
from walwarden.backup.table import BACKUP_TABLE
from walwarden.postgres import databases
from walwarden.postgres import roles as postgres_roles
from walwarden.restore.run import RestoreRun
from walwarden.restore.table import table_for
from walwarden.security import fingerprints
from walwarden.settings import Settings, StorageLocation
from walwarden.storage import manifest as manifests
from walwarden.storage import s3 as storage
from walwarden.workflow.engine import Run, Wait

T = TypeVar("T")

NAMESPACE = "vault"
OPERATOR_NAMESPACE = "walwarden-system"
BUCKET = "walwarden-backups"
ADMIN_SECRET = "vault-admin"
ADMIN = {"host": "db.internal", "port": "5432", "user": "postgres", "password": "admin-password"}
EMP_SECRET = "vault-emp"
EMP = "the-encryptor-master-password"
DEFAULT_SERVICES = {"wallet": 2, "policy-node0": 1, "policy-node1": 1, "policy-node2": 1, "nats": 3, "orchestrator": 1}
BACKUP_TAKEN_AGO = timedelta(hours=2)


def not_found() -> ApiException:
    return ApiException(status=404, reason="Not Found")


def conflict() -> ApiException:
    return ApiException(status=409, reason="Conflict")


def ago(seconds: float) -> str:
    """A status timestamp `seconds` in the past."""
    return format_timestamp(utcnow() - timedelta(seconds=seconds))


def running_since(run: Run, step: str, seconds: float) -> None:
    """`step` is the step running now, started `seconds` ago (what stuck/loud thresholds read)."""
    run.status.step_record(str(step)).start(now=utcnow() - timedelta(seconds=seconds))
    run.status.current_step = str(step)


# --- the cluster -------------------------------------------------------------------------------


@dataclass
class FakeWorkload:
    kind: str
    namespace: str
    name: str
    replicas: int
    ready: int
    selector: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    template_annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    replicas_manager: str | None = None  # who set spec.replicas last (managedFields)


@dataclass
class FakePod:
    namespace: str
    name: str
    labels: dict[str, str]
    phase: str = "Running"
    terminated_message: str | None = None
    created: datetime = field(default_factory=utcnow)
    ready: bool = True
    waiting_reason: str | None = None  # e.g. CrashLoopBackOff
    last_exit_code: int | None = None
    restarts: int = 0
    made_by_its_job: bool = True  # False: a pod someone else created with a job-name label


def job_uid(name: str) -> str:
    return f"uid-of-job-{name}"


def _job_owner(pod: FakePod) -> list[NS] | None:
    job = pod.labels.get("job-name")
    if job is None or not pod.made_by_its_job:
        return None
    return [NS(kind="Job", name=job, uid=job_uid(job), controller=True)]


@dataclass
class FakeJob:
    manifest: dict[str, Any]
    conditions: list[dict[str, str]] = field(default_factory=list)


class Cluster:
    """What the fake API servers share, and what tests arrange and look at."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}  # value: {"data", "metadata"}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}  # value: {"data", "rv"}
        self.workloads: dict[tuple[str, str], FakeWorkload] = {}
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.jobs: dict[tuple[str, str], FakeJob] = {}
        self.custom_objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (namespace, plural, name)
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name), in order
        self._versions = itertools.count(1)

    def version(self) -> str:
        return str(next(self._versions))

    # -- arranging the world --

    def add_secret(
        self, name: str, data: dict[str, str], namespace: str = NAMESPACE, labels: dict[str, str] | None = None
    ) -> None:
        self.secrets[(namespace, name)] = {"data": dict(data), "metadata": {"name": name, "labels": labels}}

    def secret(self, name: str, namespace: str = NAMESPACE) -> dict[str, str] | None:
        found = self.secrets.get((namespace, name))
        return None if found is None else dict(found["data"])

    def add_workload(
        self,
        name: str,
        replicas: int = 1,
        kind: str = "Deployment",
        ready: int | None = None,
        pods: int | None = None,
        original: int | None = None,
        namespace: str = NAMESPACE,
    ) -> FakeWorkload:
        workload = FakeWorkload(kind, namespace, name, replicas, replicas if ready is None else ready, {"app": name})
        if original is not None:
            workload.annotations["walwarden.io/original-replicas"] = str(original)
        self.workloads[(namespace, name)] = workload
        for index in range(replicas if pods is None else pods):
            self.add_pod(f"{name}-{index}", {"app": name}, namespace)
        return workload

    def workload(self, name: str, namespace: str = NAMESPACE) -> FakeWorkload:
        return self.workloads[(namespace, name)]

    def replicas(self) -> dict[str, int]:
        return {w.name: w.replicas for w in self.workloads.values()}

    def add_pod(self, name: str, labels: dict[str, str], namespace: str = NAMESPACE, **fields: Any) -> FakePod:
        pod = FakePod(namespace, name, dict(labels), **fields)
        self.pods[(namespace, name)] = pod
        return pod

    def pods_of(self, name: str, namespace: str = NAMESPACE) -> list[str]:
        selector = self.workload(name, namespace).selector
        return sorted(
            p.name for p in self.pods.values() if p.namespace == namespace and selector.items() <= p.labels.items()
        )

    def stop_all(self) -> dict[str, int]:
        """As ScaleDown leaves them: every workload at 0 replicas, their pods gone. Returns the
        replica counts they had."""
        before = {workload.name: workload.replicas for workload in self.workloads.values()}
        for workload in self.workloads.values():
            workload.replicas = workload.ready = 0
        self.settle()
        return before

    def start_all(self, replicas: dict[str, int]) -> None:
        """As ScaleUp leaves them: these replica counts, all pods Ready."""
        for workload in self.workloads.values():
            workload.replicas = replicas.get(workload.name, workload.replicas)
        self.settle()

    def settle(self, *names: str) -> None:
        """The controllers catch up for these workloads (all when none named): as many pods as
        replicas, all Ready."""
        for workload in list(self.workloads.values()):
            if names and workload.name not in names:
                continue
            existing = self.pods_of(workload.name, workload.namespace)
            for pod in existing[workload.replicas :]:
                del self.pods[(workload.namespace, pod)]
            for index in range(len(existing), workload.replicas):
                self.add_pod(f"{workload.name}-{index}", workload.selector, workload.namespace)
            workload.ready = workload.replicas

    def job(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        found = self.jobs.get((namespace, name))
        return None if found is None else found.manifest

    def finish_job(self, name: str, namespace: str = NAMESPACE) -> None:
        self.jobs[(namespace, name)].conditions = [{"type": "Complete", "status": "True"}]

    def fail_job(self, name: str, reason: str | None = None, message: str = "", namespace: str = NAMESPACE) -> None:
        """The Job failed; with `reason`, its runner said why in its termination message."""
        self.jobs[(namespace, name)].conditions = [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
        text = f"some log line\nwalwarden-error: {reason}: {message}\n" if reason else None
        self.add_pod(f"{name}-pod", {"job-name": name}, namespace, phase="Failed", terminated_message=text)

    def add_custom(self, plural: str, body: dict[str, Any], namespace: str = NAMESPACE) -> None:
        body = copy.deepcopy(body)
        body.setdefault("metadata", {}).setdefault("uid", f"uid-{body['metadata']['name']}")
        body["metadata"]["namespace"] = namespace
        self.custom_objects[(namespace, plural, body["metadata"]["name"])] = body

    def custom_object(self, plural: str, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        return self.custom_objects.get((namespace, plural, name))

    def lease_holder(self, name: str = "walwarden-lock", namespace: str = NAMESPACE) -> str | None:
        lease = self.leases.get((namespace, name))
        return None if lease is None else lease["holder"]


class FakeCore:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # Secrets
    def read_namespaced_secret(self, name: str, namespace: str) -> NS:
        found = self.cluster.secrets.get((namespace, name))
        if found is None:
            raise not_found()
        return NS(
            data={k: base64.b64encode(str(v).encode()).decode() for k, v in found["data"].items()},
            metadata=NS(
                name=name,
                labels=found["metadata"].get("labels"),
                owner_references=[NS(**ref) for ref in found["metadata"].get("ownerReferences") or []] or None,
            ),
        )

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if (namespace, name) in self.cluster.secrets:
            raise conflict()
        data = dict(body.get("stringData") or {})
        data.update({k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()})
        self.cluster.secrets[(namespace, name)] = {"data": data, "metadata": copy.deepcopy(body["metadata"])}
        self.cluster.writes.append(("create", "Secret", name))

    def delete_namespaced_secret(self, name: str, namespace: str) -> None:
        if self.cluster.secrets.pop((namespace, name), None) is None:
            raise not_found()
        self.cluster.writes.append(("delete", "Secret", name))

    def patch_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        found = self.cluster.secrets.get((namespace, name))
        if found is None:
            raise not_found()
        found["data"].update(body.get("stringData") or {})
        self.cluster.writes.append(("patch", "Secret", name))

    # ConfigMaps
    def read_namespaced_config_map(self, name: str, namespace: str) -> NS:
        found = self.cluster.config_maps.get((namespace, name))
        if found is None:
            raise not_found()
        return NS(data=dict(found["data"]), metadata=NS(name=name, resource_version=found["rv"]))

    def create_namespaced_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if (namespace, name) in self.cluster.config_maps:
            raise conflict()
        self.cluster.config_maps[(namespace, name)] = {
            "data": dict(body.get("data") or {}),
            "rv": self.cluster.version(),
        }
        self.cluster.writes.append(("create", "ConfigMap", name))

    def replace_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        found = self.cluster.config_maps.get((namespace, name))
        if found is None:
            raise not_found()
        if body["metadata"].get("resourceVersion") != found["rv"]:
            raise conflict()
        found.update(data=dict(body.get("data") or {}), rv=self.cluster.version())
        self.cluster.writes.append(("replace", "ConfigMap", name))

    # Pods
    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> NS:
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        pods = [
            pod
            for pod in self.cluster.pods.values()
            if pod.namespace == namespace and wanted.items() <= pod.labels.items()
        ]
        return NS(
            items=[
                NS(
                    metadata=NS(
                        name=pod.name,
                        creation_timestamp=pod.created,
                        labels=dict(pod.labels),
                        owner_references=_job_owner(pod),
                    ),
                    status=NS(
                        phase=pod.phase,
                        container_statuses=[
                            NS(
                                name="main",
                                ready=pod.ready and pod.phase == "Running",
                                restart_count=pod.restarts,
                                state=NS(
                                    terminated=NS(message=pod.terminated_message, exit_code=1, reason="Error")
                                    if pod.terminated_message
                                    else None,
                                    waiting=NS(reason=pod.waiting_reason) if pod.waiting_reason else None,
                                    running=None if pod.waiting_reason or pod.terminated_message else NS(),
                                ),
                                last_state=NS(
                                    terminated=NS(exit_code=pod.last_exit_code, reason="Error")
                                    if pod.last_exit_code is not None
                                    else None
                                ),
                            )
                        ],
                    ),
                )
                for pod in pods
            ]
        )


class FakeApps:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _read(self, kind: str, name: str, namespace: str) -> NS:
        workload = self.cluster.workloads.get((namespace, name))
        if workload is None or workload.kind != kind:
            raise not_found()
        managed = (
            [
                NS(
                    manager=workload.replicas_manager,
                    time="2026-12-01T00:00:00Z",
                    subresource=None,
                    fields_v1={"f:spec": {"f:replicas": {}}},
                )
            ]
            if workload.replicas_manager
            else None
        )
        return NS(
            metadata=NS(
                name=name,
                annotations=dict(workload.annotations) or None,
                labels=dict(workload.labels) or None,
                managed_fields=managed,
            ),
            spec=NS(replicas=workload.replicas, selector=NS(match_labels=dict(workload.selector))),
            status=NS(ready_replicas=workload.ready or None),
        )

    def _patch(self, kind: str, name: str, namespace: str, body: dict[str, Any], field_manager: str = "") -> None:
        workload = self.cluster.workloads.get((namespace, name))
        if workload is None or workload.kind != kind:
            raise not_found()
        for key, value in ((body.get("metadata") or {}).get("annotations") or {}).items():
            if value is None:
                workload.annotations.pop(key, None)
            else:
                workload.annotations[key] = value
        spec = body.get("spec") or {}
        if "replicas" in spec:
            workload.replicas = spec["replicas"]
            workload.ready = min(workload.ready, workload.replicas)
            workload.replicas_manager = field_manager or None
        template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
        workload.template_annotations.update(template)
        self.cluster.writes.append(("patch", kind, name))

    def read_namespaced_deployment(self, name: str, namespace: str) -> NS:
        return self._read("Deployment", name, namespace)

    def read_namespaced_stateful_set(self, name: str, namespace: str) -> NS:
        return self._read("StatefulSet", name, namespace)

    def patch_namespaced_deployment(self, name: str, namespace: str, body: dict[str, Any], **options: Any) -> None:
        self._patch("Deployment", name, namespace, body, **options)

    def patch_namespaced_stateful_set(self, name: str, namespace: str, body: dict[str, Any], **options: Any) -> None:
        self._patch("StatefulSet", name, namespace, body, **options)


class FakeBatch:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str = "") -> None:
        if self.cluster.jobs.pop((namespace, name), None) is None:
            raise not_found()
        self.cluster.writes.append(("delete", "Job", name))

    def read_namespaced_job(self, name: str, namespace: str) -> NS:
        job = self.cluster.jobs.get((namespace, name))
        if job is None:
            raise not_found()
        owners = job.manifest.get("metadata", {}).get("ownerReferences") or []
        return NS(
            metadata=NS(name=name, uid=job_uid(name), owner_references=[NS(**owner) for owner in owners] or None),
            status=NS(
                conditions=[
                    NS(type=c["type"], status=c["status"], reason=c.get("reason"), message=c.get("message"))
                    for c in job.conditions
                ]
                or None
            ),
        )

    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if (namespace, name) in self.cluster.jobs:
            raise conflict()
        self.cluster.jobs[(namespace, name)] = FakeJob(copy.deepcopy(body))
        self.cluster.writes.append(("create", "Job", name))


class FakeCustom:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        assert (group, version) in ((GROUP, VERSION), ("argoproj.io", "v1alpha1"))
        found = self.cluster.custom_objects.get((namespace, plural, name))
        if found is None:
            raise not_found()
        return copy.deepcopy(found)

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        assert (group, version) == (GROUP, VERSION)
        name = body["metadata"]["name"]
        if (namespace, plural, name) in self.cluster.custom_objects:
            raise conflict()
        self.cluster.add_custom(plural, body, namespace)
        self.cluster.writes.append(("create", plural, name))
        return copy.deepcopy(self.cluster.custom_objects[(namespace, plural, name)])

    def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, label_selector: str = ""
    ) -> dict[str, Any]:
        assert (group, version) == (GROUP, VERSION)
        wanted = dict(term.split("=", 1) for term in label_selector.split(",") if term)
        items = [
            copy.deepcopy(body)
            for (ns, kind, _), body in sorted(self.cluster.custom_objects.items())
            if ns == namespace and kind == plural and wanted.items() <= (body["metadata"].get("labels") or {}).items()
        ]
        return {"items": items}

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> None:
        assert (group, version) == (GROUP, VERSION)
        if self.cluster.custom_objects.pop((namespace, plural, name), None) is None:
            raise not_found()
        self.cluster.writes.append(("delete", plural, name))


class FakeCoordination:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def read_namespaced_lease(self, name: str, namespace: str) -> NS:
        lease = self.cluster.leases.get((namespace, name))
        if lease is None:
            raise not_found()
        return NS(
            spec=NS(holder_identity=lease["holder"]),
            metadata=NS(name=name, resource_version=lease["rv"], labels=dict(lease["labels"])),
        )

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if (namespace, name) in self.cluster.leases:
            raise conflict()
        self.cluster.leases[(namespace, name)] = {
            "holder": body["spec"]["holderIdentity"],
            "rv": self.cluster.version(),
            "labels": dict(body["metadata"].get("labels") or {}),
        }
        self.cluster.writes.append(("create", "Lease", name))

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        lease = self.cluster.leases.get((namespace, name))
        if lease is None:
            raise not_found()
        if body["metadata"].get("resourceVersion") != lease["rv"]:
            raise conflict()
        lease.update(holder=body["spec"]["holderIdentity"], rv=self.cluster.version())
        self.cluster.writes.append(("replace", "Lease", name))

    def delete_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any] | None = None) -> None:
        lease = self.cluster.leases.get((namespace, name))
        if lease is None:
            raise not_found()
        wanted = ((body or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted is not None and wanted != lease["rv"]:
            raise conflict()
        del self.cluster.leases[(namespace, name)]
        self.cluster.writes.append(("delete", "Lease", name))


class FakeKube(Cluster):
    """Stands in for walwarden.kube.api.Kube: the same five attributes, over one Cluster."""

    def __init__(self) -> None:
        super().__init__()
        self.core, self.apps, self.batch = FakeCore(self), FakeApps(self), FakeBatch(self)
        self.custom, self.coordination = FakeCustom(self), FakeCoordination(self)


# --- S3 ----------------------------------------------------------------------------------------


def _etag(body: bytes | None) -> str:
    """As S3 shows a single-part object's ETag: its MD5, in quotes."""
    return '"' + hashlib.md5(body or b"").hexdigest() + '"'


class FakeS3:
    """The S3 client methods the operator calls, over a dict of objects."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.puts: list[tuple[str, str]] = []  # (bucket, key) of every put, in order
        self.fail_puts: Exception | None = None

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[(bucket, key)] = body

    def get(self, bucket: str, key: str) -> bytes | None:
        return self.objects.get((bucket, key))

    def put_object(
        self, Bucket: str, Key: str, Body: bytes, IfMatch: str | None = None, IfNoneMatch: str | None = None, **_: Any
    ) -> dict[str, Any]:
        if self.fail_puts is not None:
            raise self.fail_puts
        current = self.objects.get((Bucket, Key))
        if IfMatch is not None and current is None:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "not found"}}, "PutObject")
        if (IfMatch is not None and IfMatch != _etag(current)) or (IfNoneMatch == "*" and current is not None):
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "changed"}}, "PutObject")
        self.objects[(Bucket, Key)] = bytes(Body)
        self.puts.append((Bucket, Key))
        return {"ETag": _etag(bytes(Body))}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "not found"}}, "GetObject")
        body = self.objects[(Bucket, Key)]
        return {"Body": io.BytesIO(body), "ContentLength": len(body), "ETag": _etag(body)}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return {"ContentLength": len(self.objects[(Bucket, Key)])}

    def generate_presigned_url(self, operation: str, Params: dict[str, str], ExpiresIn: int) -> str:
        assert operation == "get_object"
        return f"https://s3.test/{Params['Bucket']}/{Params['Key']}?X-Amz-Expires={ExpiresIn}"


# --- PostgreSQL --------------------------------------------------------------------------------


class FakePostgres:
    """The target server as walwarden.postgres (and postgres.databases) reports it. `databases` are
    the names that exist; `refusing` those of them that refuse connections (ALLOW_CONNECTIONS false)."""

    def __init__(self) -> None:
        self.version = "16.4 (Debian 16.4-1.pgdg120+1)"
        self.databases = {"vault"}
        self.refusing: set[str] = set()
        self.objects: dict[str, list[str]] = {}  # tables already in a database
        self.missing_privileges: list[str] = []
        self.statements: list[str] = []  # database-level statements run, in order
        self.in_use_once: set[str] = set()  # a rename of these meets a session once (DatabaseInUse)
        self.sessions: list[postgres.Session] = []
        self.reconnecting = False  # terminated clients come back at once
        self.terminated: list[int] = []
        self.rows: dict[str, int] = {}
        self.error: postgres.DatabaseError | None = None
        self.roles = {"postgres", "vault"}  # the roles that exist
        self.role_comments: dict[str, str] = {}  # COMMENT ON ROLE (the marker of roles a restore created)
        self.role_passwords: dict[str, str | None] = {}  # created role -> the password it was given
        self.members: set[tuple[str, str]] = set()  # (member, role) granted
        self.role_problems: list[str] = []  # what the restore user lacks to create roles
        self.role_dependents: dict[str, str] = {}  # roles a DROP ROLE refuses, and the server's words

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def server_version(self, secret: dict[str, str], dbname: str = "postgres") -> str:
        self._check()
        return self.version

    def database_exists(self, secret: dict[str, str], dbname: str) -> bool:
        self._check()
        return dbname in self.databases

    def application_sessions(self, secret: dict[str, str], dbname: str) -> list[postgres.Session]:
        self._check()
        return list(self.sessions)

    def terminate_sessions(self, secret: dict[str, str], sessions: list[postgres.Session]) -> None:
        self._check()
        self.terminated += [s.pid for s in sessions]
        if not self.reconnecting:
            self.sessions = [s for s in self.sessions if s.pid not in {t.pid for t in sessions}]

    def row_counts(self, secret: dict[str, str], dbname: str, tables: list[str]) -> dict[str, int | None]:
        self._check()
        if dbname in self.refusing:
            raise postgres.DatabaseError("DatabaseUnreachable", f"database {dbname!r} refuses connections")
        return {table: self.rows.get(table) for table in tables}

    # -- postgres.databases --

    def states(self, secret: dict[str, str], names: list[str]) -> dict[str, databases.DatabaseState]:
        self._check()
        return {
            name: databases.DatabaseState(name, name in self.databases, name not in self.refusing) for name in names
        }

    def read_properties(self, secret: dict[str, str], dbname: str) -> databases.DatabaseProperties:
        self._check()
        return databases.DatabaseProperties(owner="vault", encoding="UTF8", collate="C.UTF-8", ctype="C.UTF-8")

    def create_like(self, secret: dict[str, str], name: str, properties: databases.DatabaseProperties) -> None:
        self._check()
        if name not in self.databases:
            self.databases.add(name)
            self.statements.append(f"create {name} owned by {properties.owner}")

    def allow_connections(self, secret: dict[str, str], name: str, allowed: bool) -> None:
        self._check()
        (self.refusing.discard if allowed else self.refusing.add)(name)
        self.statements.append(f"{'allow' if allowed else 'refuse'} {name}")

    def terminate_all_sessions(self, secret: dict[str, str], names: list[str]) -> int:
        self._check()
        return 0

    def rename(self, secret: dict[str, str], old: str, new: str) -> None:
        self._check()
        if old in self.in_use_once:
            self.in_use_once.discard(old)
            raise databases.DatabaseInUse("DatabaseInUse", f"renaming {old!r}: a session is still on it")
        assert old in self.databases and new not in self.databases, (old, new, self.databases)
        self.databases.remove(old)
        self.databases.add(new)
        if old in self.refusing:
            self.refusing.remove(old)
            self.refusing.add(new)
        self.statements.append(f"rename {old} to {new}")

    def drop(self, secret: dict[str, str], name: str) -> None:
        self._check()
        self.databases.discard(name)
        self.refusing.discard(name)
        self.statements.append(f"drop {name}")

    def size_bytes(self, secret: dict[str, str], name: str) -> int | None:
        self._check()
        return 12_345_678 if name in self.databases else None

    def has_objects(self, secret: dict[str, str], name: str) -> list[str]:
        self._check()
        return list(self.objects.get(name, []))

    def missing_switch_privileges(self, secret: dict[str, str], name: str) -> list[str]:
        self._check()
        return list(self.missing_privileges)

    # -- postgres.roles --

    def existing_roles(self, secret: dict[str, str], names: list[str]) -> set[str]:
        self._check()
        return {name for name in names if name in self.roles}

    def creation_problems(self, secret: dict[str, str], missing: list[DatabaseRole]) -> list[str]:
        self._check()
        return list(self.role_problems)

    def marked_roles(self, secret: dict[str, str], marker: str) -> list[str]:
        self._check()
        return sorted(name for name in self.roles if self.role_comments.get(name) == marker)

    def create_roles(
        self, secret: dict[str, str], roles: list[DatabaseRole], passwords: dict[str, str], marker: str
    ) -> list[str]:
        self._check()
        for role in roles:
            if role.name not in self.roles:
                self.roles.add(role.name)
                self.role_comments[role.name] = marker
                self.role_passwords[role.name] = passwords.get(role.name) if role.login else None
                self.statements.append(f"create role {role.name}")
        marked = self.marked_roles(secret, marker)
        self.members |= {(role.name, m.role) for role in roles if role.name in marked for m in role.member_of}
        return marked

    def drop_marked_roles(
        self, secret: dict[str, str], names: list[str], marker: str
    ) -> tuple[list[str], dict[str, str]]:
        self._check()
        ours = [name for name in names if self.role_comments.get(name) == marker and name in self.roles]
        left = {name: self.role_dependents[name] for name in ours if name in self.role_dependents}
        dropped = [name for name in ours if name not in left]
        self.roles -= set(dropped)
        self.statements += [f"drop role {name}" for name in dropped]
        return dropped, left


ROLE_OPERATIONS = ("existing_roles", "creation_problems", "marked_roles", "create_roles", "drop_marked_roles")

DATABASE_OPERATIONS = (
    "states",
    "read_properties",
    "create_like",
    "allow_connections",
    "terminate_all_sessions",
    "rename",
    "drop",
    "size_bytes",
    "has_objects",
    "missing_switch_privileges",
)


def session(pid: int, application: str = "wallet") -> postgres.Session:
    return postgres.Session(pid=pid, user="wallet", application=application, client="10.0.0.7")


# --- the world ---------------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in; a change of None removes the key."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


REDIRECTED = {
    "mode": "Redirected",
    "target": {"secretRef": {"name": "restore-admin"}, "database": "vault_restored"},
    "redirect": {"dbHost": "new-db.internal", "environment": "prod"},
}


@dataclass
class PublishedBackup:
    name: str
    uid: str
    prefix: str
    manifest: manifests.Manifest
    signing_key: str


@functools.cache
def _emp_fingerprint() -> fingerprints.EncryptorFingerprint:
    """EMP's fingerprint at scrypt's smallest accepted cost, made once: it takes a few tens of ms."""
    return fingerprints.fingerprint(EMP, n=fingerprints.MIN_N)


class Vault:
    namespace = NAMESPACE
    bucket = BUCKET

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kube, self.s3, self.db = FakeKube(), FakeS3(), FakePostgres()
        monkeypatch.setattr(storage, "make_client", lambda **_: self.s3)
        for name in ("server_version", "database_exists", "application_sessions", "terminate_sessions", "row_counts"):
            monkeypatch.setattr(postgres, name, getattr(self.db, name))
        for name in DATABASE_OPERATIONS:
            monkeypatch.setattr(databases, name, getattr(self.db, name))
        for name in ROLE_OPERATIONS:
            monkeypatch.setattr(postgres_roles, name, getattr(self.db, name))
        self.settings = Settings(
            poll_seconds=1,
            settle_seconds=0,
            stop_timeout_seconds=600,
            approvals_required=False,
            runner_image="walwarden:test",
            operator_namespace=OPERATOR_NAMESPACE,
            ambient_identity_namespaces=("*",),  # the fakes' requests name no S3 credentials
            storage_locations={"*": (StorageLocation(bucket="*", endpoint="*"),)},
            request_trusted_keys_namespaces=("*",),
        )
        for name, replicas in DEFAULT_SERVICES.items():
            self.kube.add_workload(name, replicas)
        self.kube.add_secret(ADMIN_SECRET, ADMIN)
        self.kube.add_secret("restore-admin", {**ADMIN, "host": "new-db.internal"})
        self.kube.add_secret(EMP_SECRET, {"password": EMP})
        self.emp_fingerprint = _emp_fingerprint()
        self.backup = self.add_backup("nightly")

    # -- backups --

    def make_manifest(
        self,
        prefix: str,
        databases: list[str],
        *,
        row_counts: dict[str, int] | None = None,
        server_version: str = "16.4",
        emps: dict[str, fingerprints.EncryptorFingerprint] | None = None,
        created_at: str | None = None,
        write_dumps: bool = True,
        roles: list[DatabaseRole] | None = None,
    ) -> manifests.Manifest:
        dumps = []
        for database in databases:
            content = f"dump of {database}".encode()
            key = f"{prefix}/{database}.dump"
            if write_dumps:
                self.s3.put(BUCKET, key, content)
            dumps.append(
                manifests.DatabaseDump(
                    name=database,
                    key=key,
                    uri=storage.s3_uri(BUCKET, key),
                    sha256=hashlib.sha256(content).hexdigest(),
                    size_bytes=len(content),
                    row_counts=row_counts or {},
                )
            )
        fingerprints_ = {f"{EMP_SECRET}/password": self.emp_fingerprint} if emps is None else emps
        taken = created_at or format_timestamp(utcnow() - BACKUP_TAKEN_AGO)
        return manifests.Manifest(
            created_at=taken,
            completed_at=taken,
            backup=manifests.BackupIdentity(namespace=NAMESPACE),
            pg_dump_version="16.4",
            pg_server_version=server_version,
            databases=dumps,
            encryptor_fingerprints=[
                manifests.EncryptorEntry(secret=secret, **fp.model_dump()) for secret, fp in fingerprints_.items()
            ],
            roles=roles,
        )

    def write_manifest(self, prefix: str, manifest: manifests.Manifest, key: str | None) -> None:
        """Put `manifest` at `prefix` (signed with `key`, unless None), as a backup Job writes it."""
        signed = manifests.sign_manifest(manifest, key.encode()) if key else manifest
        self.s3.put(BUCKET, manifests.manifest_key(prefix), json.dumps(signed.to_json()).encode())

    def add_backup(
        self,
        name: str,
        *,
        phase: str = "Succeeded",
        databases: tuple[str, ...] = ("vault",),
        storage_prefix: str = "prod",
        **manifest_options: Any,
    ) -> PublishedBackup:
        """A BackupRequest of the namespace; Succeeded: its signed manifest and dumps in S3."""
        uid = f"{name}-0000-4000-8000-000000000000"
        prefix = backup_api.artifact_prefix(storage_prefix, NAMESPACE, name, uid)
        manifest = self.make_manifest(prefix, list(databases), **manifest_options)
        key = f"signing-key-of-{name}"
        body: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "BackupRequest",
            "metadata": {"name": name, "uid": uid},
            "spec": {
                "database": {"secretRef": {"name": ADMIN_SECRET}, "databases": list(databases)},
                "storage": {"s3": {"bucket": BUCKET, "prefix": storage_prefix}},
            },
            "status": {"phase": phase},
        }
        if phase == "Succeeded":
            self.write_manifest(prefix, manifest, key)
            self.kube.add_secret(backup_api.signing_key_secret_name(name, uid), {"key": key})
            first = manifest.databases[0]
            body["status"]["artifact"] = {
                "uri": first.uri,
                "manifestUri": storage.s3_uri(BUCKET, manifests.manifest_key(prefix)),
                "sha256": first.sha256,
                "sizeBytes": sum(d.size_bytes for d in manifest.databases),
                "files": [
                    {"database": d.name, "uri": d.uri, "sha256": d.sha256, "sizeBytes": d.size_bytes}
                    for d in manifest.databases
                ],
            }
        self.kube.add_custom(backup_api.PLURAL, body)
        return PublishedBackup(name, uid, prefix, manifest, key)

    def set_backup_status(self, name: str, status: dict[str, Any]) -> None:
        self.kube.custom_object(backup_api.PLURAL, name)["status"] = status

    def add_db_info_secrets(self, environment: str = "prod", **values: str) -> dict[str, str]:
        """The default topology's db-info secrets; returns name -> service."""
        names = {}
        for service in ("orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet"):
            name = f"{environment}.{NAMESPACE}.{service}.db-info"
            self.kube.add_secret(
                name,
                {
                    "DB_HOST": "old-db.internal",
                    "DB_PORT": "5432",
                    "DB_NAME": "vault",
                    "DB_USER": service,
                    "DB_PASSWORD": f"{service}-password",
                    **values,
                },
            )
            names[name] = service
        return names

    # -- runs --

    def restore_spec(self, **changes: Any) -> dict[str, Any]:
        """An InPlace restore with strategy Overwrite unless `changes` say otherwise (`strategy=None`:
        the default, Switch); Redirected ones have no strategy."""
        spec = {
            "source": {"backupRef": {"name": "nightly"}},
            "mode": "InPlace",
            "strategy": "Overwrite",
            "encryptorSecrets": [{"name": EMP_SECRET}],
        }
        merged = deep_merge(spec, changes)
        if merged.get("mode") != "InPlace" or merged.get("strategy") is None:
            merged.pop("strategy", None)
        return merged

    def restore_run(
        self,
        spec: dict[str, Any] | None = None,
        *,
        status: RestoreRequestStatus | None = None,
        name: str = "restore-1",
        uid: str = "5e5f0e3c-1111-4222-8333-444455556666",
        settings: Settings | None = None,
        controller: dict[str, Any] | None = None,
    ) -> RestoreRun:
        parsed = RestoreRequestSpec.model_validate(spec if spec is not None else self.restore_spec())
        return RestoreRun(
            kind="RestoreRequest",
            namespace=NAMESPACE,
            name=name,
            uid=uid,
            generation=1,
            owner=_owner("RestoreRequest", name, uid),
            spec=parsed,
            status=status or RestoreRequestStatus(),
            kube=self.kube,
            settings=settings or self.settings,
            controller=controller,
            dry_run=parsed.dry_run,
            step_names=tuple(table_for(parsed).planned()),
        )

    def backup_spec(self, **changes: Any) -> dict[str, Any]:
        spec = {
            "database": {"secretRef": {"name": ADMIN_SECRET}, "databases": ["vault"]},
            "storage": {"s3": {"bucket": BUCKET, "prefix": "prod"}},
            "encryptorSecrets": [{"name": EMP_SECRET}],
        }
        return deep_merge(spec, changes)

    def backup_run(
        self,
        spec: dict[str, Any] | None = None,
        *,
        status: BackupRequestStatus | None = None,
        name: str = "backup-1",
        uid: str = "b0b0b0b0-1111-4222-8333-444455556666",
        controller: dict[str, Any] | None = None,
    ) -> Run[BackupRequestSpec, BackupRequestStatus]:
        return Run(
            kind="BackupRequest",
            namespace=NAMESPACE,
            name=name,
            uid=uid,
            generation=1,
            owner=_owner("BackupRequest", name, uid),
            spec=BackupRequestSpec.model_validate(spec if spec is not None else self.backup_spec()),
            status=status or BackupRequestStatus(),
            kube=self.kube,
            settings=self.settings,
            controller=controller,
            step_names=tuple(BACKUP_TABLE.planned()),
        )

    def until_done(self, look: Callable[[], T], looks: int = 6) -> T:
        """`look()` again, the cluster catching up (settle) after each Wait, until it is done."""
        for _ in range(looks):
            try:
                return look()
            except Wait:
                self.kube.settle()
        raise AssertionError(f"still waiting after {looks} looks")

    def next_pass(self, run: Run) -> Run:
        """The same request on the operator's next pass: its status as written to the API and read
        back, nothing resolved, no events."""
        status = type(run.status).model_validate(run.status.to_dict())
        again = copy.copy(run)
        again.status, again.events = status, []
        if isinstance(again, RestoreRun):
            again.resolved_source = None
        return again


def _owner(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }
