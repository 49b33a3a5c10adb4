"""Pieces shared by both kinds: model bases, references, storage, topology, conditions.

The pydantic models in this package are the single source of truth of the API: the CRDs in
crds/ and in the Helm chart are generated from them by `python -m walwarden.api.crdgen`. So
every field carries a description (it is what `kubectl explain` shows), every string and list
in a spec is bounded (the API server's CEL cost estimator needs bounds to accept the
`self == oldSelf` rule), and cross-field rules are declared once as `CelRule`s that both the
API server (as `x-kubernetes-validations`) and pydantic (in a model validator) enforce.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "walwarden.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORIES = ("walwarden",)


# --- timestamps ---------------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, to the second, as Kubernetes writes its own timestamps."""
    if moment.tzinfo is None:
        raise ValueError("format_timestamp needs a timezone-aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """The inverse of `format_timestamp` (accepts any RFC 3339 offset), timezone-aware."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def short_uid(uid: str) -> str:
    """The first 8 hex digits of a uid: enough to tell one request's objects from another's."""
    return uid.replace("-", "")[:8]


# --- model bases --------------------------------------------------------------------------

_BASE_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python."""

    model_config = _BASE_CONFIG

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes expects it: camelCase keys, no nulls, JSON types only."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SpecModel(ApiModel):
    """Base of spec models: unknown keys are errors (a typo must not be silently ignored), and
    a parsed spec is frozen, like the object it came from (specs are immutable, DESIGN §2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusModel(ApiModel):
    """Base of status models: unknown keys are ignored, so a status written by an older or
    newer operator never breaks parsing."""

    model_config = ConfigDict(extra="ignore")


class ResourceModel(ApiModel):
    """Base of the top-level kinds, so a handler can `RestoreRequest.model_validate(body)`."""

    model_config = ConfigDict(extra="ignore")
    crd: ClassVar[CrdInfo]  # each kind's names and printer columns

    api_version: str = Field(API_VERSION, description="APIVersion of the object.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Object metadata.")

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def generation(self) -> int | None:
        return self.metadata.get("generation")


# --- CRD declarations that live beside the models ------------------------------------------


class CelRule(NamedTuple):
    """A cross-field rule, enforced by the API server (CEL) and by pydantic (Python).

    The CEL text and the Python check are two spellings of one rule; the message is shared so
    `kubectl apply` and a handler parsing the body report the same actionable sentence.
    """

    rule: str
    message: str
    field_path: str | None = None  # where the API server reports the error, e.g. ".redirect"
    reason: str | None = None  # FieldValueRequired, FieldValueForbidden, ... (default Invalid)

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out

    def require(self, holds: bool) -> None:
        """The Python side of the rule: raise the shared message when it does not hold."""
        if not holds:
            raise ValueError(self.message)


def cel_validations(*rules: CelRule) -> dict[str, Any]:
    """The `json_schema_extra` that puts `rules` on a model's schema node."""
    return {"x-kubernetes-validations": [rule.to_schema() for rule in rules]}


# Both kinds are one-shot (DESIGN §2). A transition rule: the API server checks it on updates
# only, so there is nothing for pydantic to check on a single object.
IMMUTABLE_SPEC = CelRule("self == oldSelf", "spec is immutable: a request is one-shot; create a new request instead")


@dataclass(frozen=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry of a CRD."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str | None = None

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.format:
            out["format"] = self.format
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class CrdInfo:
    """The names and columns of a kind; its schema comes from the model that carries this."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = field(default=CATEGORIES)


# --- constrained types --------------------------------------------------------------------
# Regexes are kept to the subset that Python, pydantic-core (Rust) and the API server
# (ECMA-262/RE2) read the same way.

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
ServiceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
# PostgreSQL identifiers are at most 63 bytes; we accept the unquoted-safe characters plus `-`
# and `$`, which appear in real database names and are quoted by the runner.
PgIdentifier = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_$-]*$")]
HttpUrlStr = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://\S+$")]
# Status timestamps: RFC 3339 strings (see format_timestamp), never datetime objects, so a
# status dumps straight into a patch.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


# --- references ---------------------------------------------------------------------------


class SecretRef(SpecModel):
    """A Secret in the namespace of the request."""

    name: ObjectName = Field(description="Name of the Secret, in the namespace of the request.")


class SecretKeyRef(SecretRef):
    """One key of a Secret in the namespace of the request."""

    key: SecretKey = Field(description="Key in the Secret's data.")


class EncryptorSecretRef(SecretRef):
    """An Encryptor Master Password (EMP) Secret. Only a salted, slow fingerprint of the value
    is ever recorded; the value itself never leaves the Secret."""

    key: SecretKey = Field("password", description="Key in the Secret's data that holds the EMP.")


class OriginSigningKeyRef(SecretRef):
    """The Secret holding the Ed25519 private key that signs manifests' origin (DESIGN §4)."""

    key: SecretKey = Field(
        "privateKey",
        description=(
            "Key in the Secret's data that holds the private key, PEM (PKCS#8), as `walwarden keys generate` "
            "writes it. Read by the operator only: it never reaches a Job, a log, status or S3."
        ),
    )


class TrustedKeysKind(StrEnum):
    CONFIG_MAP = "ConfigMap"
    SECRET = "Secret"


class TrustedKeysRef(SpecModel):
    """A ConfigMap (or Secret) whose every entry is a trusted Ed25519 public key, PEM."""

    kind: TrustedKeysKind = Field(
        TrustedKeysKind.CONFIG_MAP, description="ConfigMap (public keys are no secret) or Secret."
    )
    name: ObjectName = Field(description="Its name, in the namespace of the request.")

    def describe(self, namespace: str) -> str:
        return f"{self.kind} {namespace}/{self.name}"


# The keys of an admin connection Secret (DatabaseConnection, RestoreTarget); sslmode is optional.
ADMIN_SECRET_KEYS = ("host", "port", "user", "password")


class DatabaseConnection(SpecModel):
    """The admin connection of a PostgreSQL server and the databases to work on."""

    secret_ref: SecretRef = Field(
        description=(
            "Secret with the admin connection: keys host, port, user, password, and optional "
            "sslmode (disable, require, verify-ca, verify-full). Its values are never logged "
            "nor copied into status, events or Job arguments."
        )
    )
    databases: list[PgIdentifier] = Field(
        min_length=1, max_length=64, description="Names of the databases to dump, at least one."
    )


# --- storage ------------------------------------------------------------------------------


class ObjectLockMode(StrEnum):
    """S3 Object Lock retention modes (S3's own names, upper case on the wire to S3)."""

    GOVERNANCE = "Governance"  # a user with s3:BypassGovernanceRetention can still delete early
    COMPLIANCE = "Compliance"  # nobody can delete or shorten it before the date, not even the root user


class ObjectLock(SpecModel):
    """Write the dump and the manifest with S3 Object Lock retention, so that no credential (the
    operator's, the backup Job's, a stolen one) can delete or overwrite them before the date."""

    mode: ObjectLockMode = Field(
        ObjectLockMode.GOVERNANCE, description="Governance (bypassable with a special right) or Compliance."
    )
    retain_days: int = Field(ge=1, le=36500, description="Days from the backup's creation that the objects are locked.")

    def until(self, created_at: datetime) -> datetime:
        return created_at + timedelta(days=self.retain_days)


class S3Storage(SpecModel):
    """An S3 bucket (AWS or any S3-compatible server) holding artifacts and their manifests."""

    bucket: str = Field(
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
        description="Bucket name (3-63 lowercase letters, digits, dots and hyphens).",
    )
    prefix: str = Field(
        "", max_length=1024, description="Key prefix under which artifacts are written, e.g. prod/vault."
    )
    region: str = Field(
        "us-east-1", min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$", description="Region of the bucket."
    )
    endpoint: HttpUrlStr | None = Field(
        None,
        description="Endpoint URL of an S3-compatible server (MinIO, Ceph, ...); unset for AWS S3.",
    )
    credentials_secret_ref: SecretRef | None = Field(
        None,
        description=(
            "Secret with keys accessKeyId and secretAccessKey (and optional sessionToken). "
            "Unset: the operator's ambient identity (e.g. IRSA or an instance profile)."
        ),
    )
    force_path_style: bool = Field(
        False,
        description=("Address the bucket in the path (endpoint/bucket/key), as most S3-compatible servers need."),
    )
    object_lock: ObjectLock | None = Field(
        None,
        description=(
            "Write backups with S3 Object Lock retention (the bucket must have been created with Object Lock "
            "enabled). Unset: no lock."
        ),
    )


class Storage(SpecModel):
    """Where artifacts live."""

    s3: S3Storage = Field(description="S3 bucket holding the artifacts and their manifests.")


# --- topology (DESIGN §1) -----------------------------------------------------------------

# Services in one inner list stop (and start) together; tiers stop first to last.
DEFAULT_STOP_TIERS = [["wallet"], ["policy-node0", "policy-node1", "policy-node2"], ["nats"]]
DEFAULT_DATABASE_SERVICES = ["orchestrator", "policy-node0", "policy-node1", "policy-node2", "wallet"]
DEFAULT_SECRET_NAME_TEMPLATE = "{environment}.{namespace}.{service}.db-info"

# Only the three known placeholders, and {service} at least once (else every service would
# share one secret name). A regex, so the API server and pydantic enforce the same thing.
_PLACEHOLDER = r"\{(environment|namespace|service)\}"
SECRET_NAME_TEMPLATE_PATTERN = rf"^[^{{}}]*({_PLACEHOLDER}[^{{}}]*)*\{{service\}}[^{{}}]*({_PLACEHOLDER}[^{{}}]*)*$"

ServiceTier = Annotated[list[ServiceName], Field(min_length=1, max_length=16)]

# In a secret store outside Kubernetes (AWS Secrets Manager, Azure Key Vault), which the operator
# reads with its own identity, the namespace boundary is the name: a rendered name must hold the
# request's own namespace as a whole dot-separated part, so `prod.victim-ns.{service}.db-info` and
# `prod.victim-{namespace}.{service}.db-info` reach no other tenant's secret.
_NAMESPACE_PART = re.compile(r"(^|\.)\{namespace\}(\.|$)")


class Topology(SpecModel):
    """Which workloads make up the vault, in which order they stop and start, and how their
    db-info secrets are named. The defaults are the built-in Institutional Vault profile."""

    stop_tiers: list[ServiceTier] = Field(
        default=DEFAULT_STOP_TIERS,
        min_length=1,
        max_length=16,
        description=(
            "Deployments or StatefulSets to stop, tier by tier, first tier first; the services "
            "of one tier stop in parallel. Start order is the reverse."
        ),
    )
    database_services: list[ServiceName] = Field(
        default=DEFAULT_DATABASE_SERVICES,
        max_length=64,
        description="Services that use the database, each with a db-info secret.",
    )
    secret_name_template: str = Field(
        default=DEFAULT_SECRET_NAME_TEMPLATE,
        max_length=253,
        pattern=SECRET_NAME_TEMPLATE_PATTERN,
        description=(
            "Name of each service's db-info secret, with the placeholders {environment}, "
            "{namespace} and {service} (required)."
        ),
    )
    restart_after_reconfigure: list[ServiceName] = Field(
        default=["orchestrator"],
        max_length=64,
        description=(
            "Services that keep running during a restore and are restarted after their db-info secret changed."
        ),
    )

    def names_keep_their_namespace(self) -> bool:
        """Whether every name the template renders holds its namespace as a whole dot-separated part."""
        return bool(_NAMESPACE_PART.search(self.secret_name_template))

    def start_tiers(self) -> list[list[str]]:
        """Tiers in start order: the reverse of the stop order."""
        return [list(tier) for tier in reversed(self.stop_tiers)]

    def kept_running(self) -> list[str]:
        """The services restarted after their db-info changed that a restore does not stop."""
        stopped = {name for tier in self.stop_tiers for name in tier}
        return [name for name in self.restart_after_reconfigure if name not in stopped]

    def db_info_secret_name(self, environment: str, namespace: str, service: str) -> str:
        return self.secret_name_template.format(environment=environment, namespace=namespace, service=service)


DEFAULT_TOPOLOGY = Topology()


# --- conditions ---------------------------------------------------------------------------


class ConditionType(StrEnum):
    READY = "Ready"
    FAILED = "Failed"
    PROGRESSING = "Progressing"
    WAITING = "Waiting"  # for the namespace lock held by another request
    # The vault was NOT put back after a failure (Rollback failed): services may be stopped, the
    # database half-restored, db-info secrets repointed. Someone has to act.
    VAULT_NOT_RESTORED = "VaultNotRestored"
    # Services started again are still not Ready long after (WALWARDEN_STOP_TIMEOUT_SECONDS): the
    # step keeps waiting, and this says loudly that the vault is not back yet.
    SERVICES_NOT_READY = "ServicesNotReady"
    # A BackupSchedule's newest restore drill failed: its backups are not proven to restore.
    DRILL_FAILED = "DrillFailed"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


CONDITION_MESSAGE_MAX = 32768


class Condition(StatusModel):
    """A standard Kubernetes condition (the shape of metav1.Condition)."""

    type: str = Field(
        max_length=316,
        # metav1.Condition's pattern: an optional DNS-subdomain prefix, then a qualified name.
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Type of the condition: Ready, Failed, Progressing or Waiting.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation of the request the condition was set for."
    )
    last_transition_time: Timestamp = Field(description="When the status last changed (RFC 3339).")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase reason of the last transition.",
    )
    message: str = Field("", max_length=CONDITION_MESSAGE_MAX, description="Human-readable details.")


class StepState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


DONE_STEP_STATES = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED})


class StepStatus(StatusModel):
    """One step of a request's workflow, as recorded by the workflow."""

    name: str = Field(description="Step name, e.g. Validate, Preflight, ScaleDown, Restore, Dump.")
    state: StepState = Field(description="Pending, Running, Succeeded, Failed or Skipped.")
    started_at: Timestamp | None = Field(None, description="When the step started (RFC 3339).")
    finished_at: Timestamp | None = Field(None, description="When the step finished (RFC 3339).")
    message: str | None = Field(None, description="What the step did or why it failed.")

    @property
    def done(self) -> bool:
        """Succeeded, Failed or Skipped: the engine never runs it again."""
        return self.state in DONE_STEP_STATES

    @property
    def started(self) -> bool:
        """It ran, at least in part (Running, Succeeded or Failed): what it changed may need undoing."""
        return self.state in (StepState.RUNNING, StepState.SUCCEEDED, StepState.FAILED)

    def start(self, now: datetime | None = None) -> None:
        self.state, self.started_at, self.message = StepState.RUNNING, format_timestamp(now or utcnow()), None

    def finish(self, state: StepState, message: str | None, now: datetime | None = None) -> None:
        self.state, self.finished_at = state, format_timestamp(now or utcnow())
        if message:
            self.message = message

    def seconds_running(self, now: datetime | None = None) -> float:
        """How long the step has been running (0 before it started)."""
        if not self.started_at:
            return 0.0
        return ((now or utcnow()) - parse_timestamp(self.started_at)).total_seconds()


class AuditAnchor(StatusModel):
    """Where this request's transitions were logged, and the log's last line after them."""

    log: str = Field(description="s3:// URI of the hash-chained audit.log beside the artifact.")
    chain_head: str = Field(
        description="sha256 of the log's last line after this request's last append; "
        "`walwarden audit verify --expect-head` checks the log still holds it."
    )


class Result(StrEnum):
    """How a finished request ended; each is also the phase it ends in."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"  # restores only: the world had been touched and was put back


# Phases after which a request is never run again (one-shot, DESIGN §2).
FINISHED_PHASES = frozenset(result.value for result in Result)


def is_finished(phase: str | None) -> bool:
    """True when a request in `phase` is done for good (Succeeded, Failed or RolledBack)."""
    return phase in FINISHED_PHASES


class RequestStatus(StatusModel):
    """What both kinds' statuses have in common, and the helpers that change it (the workflow
    never writes a phase, a condition or a step state by hand: CloudNativePG's SetAsFailed style).

    Each kind declares its own `phase` field (an enum of its phases); `_set_phase` names one."""

    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Standard conditions: Ready, Failed, Progressing, Waiting.",
    )
    message: str | None = Field(None, description="Human-readable summary of the current state and what to do next.")
    observed_generation: int | None = Field(None, description="metadata.generation the status was written for.")
    started_at: Timestamp | None = Field(None, description="When the request started running (RFC 3339).")
    completed_at: Timestamp | None = Field(
        None, description="When the request finished, whatever the outcome (RFC 3339)."
    )
    duration_seconds: float | None = Field(None, description="Seconds from start to finish.")
    current_step: str | None = Field(None, description="The step running now, or the last one run.")
    steps: list[StepStatus] = Field(
        default_factory=list, description="Every step run so far, in order: the audit trail."
    )
    original_replicas: dict[str, int] = Field(
        default_factory=dict, description="Replica count of each service before scale-down, restored after."
    )
    audit: AuditAnchor | None = Field(None, description="The audit log this request wrote to, and its head.")
    events_posted: int | None = Field(
        None,
        description=(
            "How many Events the operator posted for this request. Each Event's message starts with its "
            "number ([n]), so Events of the same second read in order in kubectl describe."
        ),
    )

    # -- phase ---------------------------------------------------------------------------------

    def _set_phase(self, phase: str) -> None:
        """Set `phase` (one of the kind's phase names); each kind converts it to its enum."""
        raise NotImplementedError

    @property
    def phase_name(self) -> str | None:
        phase = getattr(self, "phase", None)
        return None if phase is None else str(phase)

    @property
    def finished(self) -> bool:
        """Done for good: a finished request is never run again (DESIGN §2)."""
        return is_finished(self.phase_name)

    def mark_pending(self, message: str, generation: int | None) -> None:
        """First sight of a valid request: it waits to run."""
        self._set_phase("Pending")
        self.message, self.observed_generation = message, generation
        self.set_condition(ConditionType.PROGRESSING, True, "Accepted", message, generation)

    def mark_running(self, message: str, generation: int | None) -> None:
        self._set_phase("Running")
        self.set_condition(ConditionType.PROGRESSING, True, "Running", message, generation)

    def mark_invalid(self, reason: str, message: str, generation: int | None, now: datetime | None = None) -> None:
        """A request that can never run as written: Failed, with what to change."""
        self.set_condition(ConditionType.FAILED, True, reason, message, generation, now)
        self._close(Result.FAILED, message, generation, now, reason=reason)

    def mark_finished(self, result: Result, message: str, generation: int | None, now: datetime | None = None) -> None:
        """The workflow is over: phase, Ready, Progressing, completion time and duration."""
        self._close(result, message, generation, now)
        if self.started_at:
            self.duration_seconds = round(
                (parse_timestamp(self.completed_at or "") - parse_timestamp(self.started_at)).total_seconds(), 1
            )

    def _close(
        self, result: Result, message: str, generation: int | None, now: datetime | None, reason: str | None = None
    ) -> None:
        moment = now or utcnow()
        self._set_phase(result.value)
        self.message, self.observed_generation = message, generation
        self.completed_at = format_timestamp(moment)
        ready_reason = reason or ("Succeeded" if result == Result.SUCCEEDED else "Failed")
        self.set_condition(ConditionType.READY, result == Result.SUCCEEDED, ready_reason, message, generation, moment)
        self.set_condition(ConditionType.PROGRESSING, False, reason or result.value, message, generation, moment)

    # -- conditions ----------------------------------------------------------------------------

    def condition(self, type: str) -> Condition | None:
        return get_condition(self.conditions, type)

    def condition_is_true(self, type: str) -> bool:
        condition = self.condition(type)
        return condition is not None and condition.status == ConditionStatus.TRUE

    def set_condition(
        self,
        type: str,
        status: bool,
        reason: str,
        message: str = "",
        generation: int | None = None,
        now: datetime | None = None,
    ) -> None:
        self.conditions = set_condition(self.conditions, type, status, reason, message, generation, now)

    @property
    def failure(self) -> Condition | None:
        """The Failed condition when it is True: the first failure, the one the user acts on."""
        condition = self.condition(ConditionType.FAILED)
        return condition if condition is not None and condition.status == ConditionStatus.TRUE else None

    # -- steps ---------------------------------------------------------------------------------

    def step(self, name: str) -> StepStatus | None:
        return next((entry for entry in self.steps if entry.name == name), None)

    def step_record(self, name: str) -> StepStatus:
        """The step's record, added as Pending the first time it is asked for."""
        entry = self.step(name)
        if entry is None:
            entry = StepStatus(name=name, state=StepState.PENDING)
            self.steps.append(entry)
        return entry

    def step_ran(self, name: str) -> bool:
        entry = self.step(name)
        return entry is not None and entry.started


def _as_condition(item: Condition | Mapping[str, Any]) -> Condition:
    return item if isinstance(item, Condition) else Condition.model_validate(item)


def get_condition(conditions: Iterable[Condition | Mapping[str, Any]] | None, type: str) -> Condition | None:
    """The condition of `type`, or None."""
    for item in conditions or ():
        condition = _as_condition(item)
        if condition.type == type:
            return condition
    return None


def set_condition(
    conditions: Iterable[Condition | Mapping[str, Any]] | None,
    type: str,
    status: bool | str,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> list[Condition]:
    """A new list with the condition of `type` set; the input is not modified.

    lastTransitionTime moves only when the status changes (the Kubernetes convention), so a
    handler can set the same condition on every pass without faking transitions.
    """
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    status = ConditionStatus(status)
    result = [_as_condition(item) for item in conditions or ()]
    previous = next((c for c in result if c.type == type), None)
    transition_time = (
        previous.last_transition_time
        if previous is not None and previous.status == status
        else format_timestamp(now or utcnow())
    )
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message[:CONDITION_MESSAGE_MAX],
        observed_generation=observed_generation,
        last_transition_time=transition_time,
    )
    if previous is None:
        return [*result, updated]
    return [updated if c is previous else c for c in result]


def human_size(size_bytes: int) -> str:
    """A byte count as people read it, in binary units: 512 B, 1.5 KiB, 295 MiB, 2.3 GiB."""
    value, unit = float(size_bytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):  # noqa: B007 (the last unit is the one used)
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "B":
        return f"{size_bytes} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
