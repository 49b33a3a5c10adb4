"""The operator's own settings, read once at start-up from `walwarden run` flags and environment
variables (WALWARDEN_*), e.g. as the Helm chart sets them.

    settings = Settings.from_environment(namespaces=("vault",))   # flags win over the environment

Each field is read from WALWARDEN_<FIELD NAME>, e.g. poll_seconds from WALWARDEN_POLL_SECONDS; an
empty variable counts as unset. A bad value stops the operator at start-up with `InvalidSettings`,
naming the variable, rather than mid-restore.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from walwarden.api import DEFAULT_TOPOLOGY, S3Storage, SecretBackend, Topology
from walwarden.api.common import DNS_SUBDOMAIN_PATTERN

ENV_PREFIX = "WALWARDEN_"
OPTIONAL_NAME_PATTERN = f"^$|{DNS_SUBDOMAIN_PATTERN}"
# The key of the operator's origin signing key Secret (WALWARDEN_ORIGIN_SIGNING_KEY_SECRET).
ORIGIN_SIGNING_KEY_SECRET_KEY = "privateKey"


# libpq's sslmode values, weakest first.
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
VERIFYING_SSL_MODES = ("verify-ca", "verify-full")
SYSTEM_ROOT_CERTS = "system"


class StorageLocation(BaseModel):
    """Where a namespace's requests may read and write artifacts: a bucket on an S3 endpoint (unset:
    AWS itself), under a key prefix. Bucket and endpoint are shell-style patterns ("vault-*",
    "https://minio.internal:*"; "*" alone: any, AWS too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(min_length=1, max_length=63)
    endpoint: str | None = Field(None, max_length=2048)
    prefix: str = Field("", max_length=1024)

    def holds(self, s3: S3Storage) -> bool:
        if self.endpoint is None:
            endpoint_holds = s3.endpoint is None
        else:
            endpoint_holds = fnmatch.fnmatchcase(_endpoint(s3.endpoint), _endpoint(self.endpoint))
        return (
            fnmatch.fnmatchcase(s3.bucket, self.bucket)
            and endpoint_holds
            and s3.prefix.strip("/").startswith(self.prefix.strip("/"))
        )


def _endpoint(url: str | None) -> str:
    return url.rstrip("/").lower() if url else ""


class InvalidSettings(ValueError):
    """The environment holds a value the operator cannot run with; the message names each variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        env_ignore_empty=True,  # e.g. WALWARDEN_NAMESPACES="" (the chart's cluster-wide) is the default
        # The list and JSON values are parsed by the validators below, so that a bad one is a
        # validation error naming its variable, like any other.
        enable_decoding=False,
        str_strip_whitespace=True,
    )

    # Namespaces to watch, comma-separated; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    # Image of the backup/restore runner Jobs (the operator's own image by default).
    runner_image: str = "walwarden:latest"
    # Extra labels on runner pods (JSON object): network policies on a real cluster, or the local
    # pod executor's label on the test stack.
    runner_pod_labels: dict[str, str] = Field(default_factory=dict)
    # Refuse RestoreRequests without a valid approval token (DESIGN §4).
    approvals_required: bool = False
    # Name of the Secret (in the operator's namespace) holding the approval-token HMAC key.
    approval_key_secret: str = "walwarden-approval-key"
    # Origin signatures (DESIGN §4, docs/runbook.md): the Secret (in the operator's namespace, key
    # "privateKey") whose Ed25519 key signs the manifest of every BackupRequest without
    # spec.originSigningKey; empty: only those that name a key are signed.
    origin_signing_key_secret: str = Field("", pattern=OPTIONAL_NAME_PATTERN)
    # The ConfigMap (in the operator's namespace) of Ed25519 public keys trusted to sign artifacts
    # restored by URI without spec.source.trustedKeys; empty: their origin is not checked.
    trusted_keys_config_map: str = Field("", pattern=OPTIONAL_NAME_PATTERN)
    operator_namespace: str = "walwarden-system"
    # Namespaces whose requests may use the operator's own cloud identity (IRSA, instance profile,
    # workload identity) for S3 when they name no credentials Secret, comma-separated; "*": every
    # namespace. Empty (the default): none, so no request reads or writes a bucket with the
    # operator's rights, only with credentials its own namespace holds.
    ambient_identity_namespaces: tuple[str, ...] = ()
    # Which namespaces' signed backups each namespace may restore by artifact URI (JSON object:
    # restoring namespace, or "*", -> source namespaces, or ["*"]). A namespace always may restore
    # its own; an origin signature vouches for the namespace its manifest names, so another
    # namespace's (another tenant's) backup is refused unless listed here.
    artifact_source_namespaces: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Where each namespace's requests may keep and read artifacts (JSON object: namespace, or "*",
    # -> [{bucket, endpoint, prefix}]). Unset for a namespace: nowhere, so a request can send the
    # vault's dump only to a bucket and server the operator's admin chose (StorageNotAllowed).
    storage_locations: dict[str, tuple[StorageLocation, ...]] = Field(default_factory=dict)
    # Namespaces whose requests may name trusted keys of their own (spec.source.trustedKeys), comma-
    # separated; "*": every namespace. Empty (the default): an artifact's origin is trusted only by
    # the operator's own trusted keys (trusted_keys_config_map), never by the request alone.
    request_trusted_keys_namespaces: tuple[str, ...] = ()
    # Prometheus metrics (/metrics) and liveness (/healthz) endpoints; 0 disables each.
    metrics_port: int = Field(0, ge=0, le=65535)
    health_port: int = Field(0, ge=0, le=65535)
    listen_address: str = "0.0.0.0"
    # Logs as JSON lines (for log pipelines) or plain text; see log_json.
    log_format: Literal["json", "text"] = "text"
    # How often a waiting step looks at the world again (seconds).
    poll_seconds: float = Field(5.0, gt=0)
    # How long one pass keeps looking (every 0.1–0.5 s) at a step that is already waiting, before it
    # hands back to the poll interval: stops, starts and Job ends are noticed at once (downtime).
    settle_seconds: float = Field(5.0, ge=0)
    # ScaleDown (and a backup's Quiesce) fails after waiting this long for a tier's pods to go,
    # rather than keep the vault half-stopped for ever; the services are then started again.
    # Starting that takes this long raises the condition ServicesNotReady (and keeps waiting).
    stop_timeout_seconds: float = Field(600.0, gt=0)
    # Threads that run handler passes (kopf's executor). A pass is short (a step waits by a retry,
    # not a sleep), but a drill's SQL checks hold one for their time budget: enough threads that a
    # namespace's drills never delay another namespace's restore, few enough to bound the memory.
    handler_workers: int = Field(16, ge=2, le=128)
    # Drills running at once in one namespace (each copies a database onto a server); more wait.
    max_drills_per_namespace: int = Field(2, ge=1, le=32)
    # Drills running at once on one database server (host:port), whatever their namespaces: each
    # restores a whole database there, often the vault's own server. Slots are Leases in the
    # operator's namespace.
    max_drills_per_server: int = Field(2, ge=1, le=32)
    # The vault's services when a request has no spec.topology (JSON of the Topology model),
    # validated like a request's spec.topology.
    default_topology: Topology = DEFAULT_TOPOLOGY
    # Where db-info secrets live when a Redirected request does not say (spec.redirect.secretBackend).
    default_secret_backend: SecretBackend = SecretBackend.KUBERNETES
    # The libpq sslmode of the logins Job of a Redirected restore, which sends every service's
    # password to the host the request names (docs/security.md). verify-full: TLS, and a
    # certificate valid for that host name, before the SCRAM exchange starts.
    redirect_login_ssl_mode: SslMode = "verify-full"
    # The CA certificates that verify it (libpq sslrootcert, with verify-ca and verify-full only):
    # "system", the runner image's trusted roots (verify-full only), or a PEM file in that image.
    redirect_login_ssl_root_cert: str = Field("system", min_length=1)

    @field_validator("namespaces", "ambient_identity_namespaces", "request_trusted_keys_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator(
        "runner_pod_labels", "default_topology", "artifact_source_namespaces", "storage_locations", mode="before"
    )
    @classmethod
    def _json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}  # Topology() is DEFAULT_TOPOLOGY
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from None

    @field_validator("approvals_required", "log_format", mode="before")
    @classmethod
    def _case_and_spaces(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value  # "True ", "JSON"

    @field_validator("redirect_login_ssl_root_cert")
    @classmethod
    def _system_roots_verify_the_host_name(cls, value: str, info: ValidationInfo) -> str:
        # libpq refuses sslrootcert=system with any sslmode but verify-full.
        if value == SYSTEM_ROOT_CERTS and info.data.get("redirect_login_ssl_mode") == "verify-ca":
            raise ValueError('"system" needs sslmode verify-full: name a CA file for verify-ca')
        return value

    @property
    def redirect_login_ssl_root_cert_in_use(self) -> str | None:
        """The sslrootcert the logins Job verifies with, None when its sslmode verifies nothing."""
        return self.redirect_login_ssl_root_cert if self.redirect_login_ssl_mode in VERIFYING_SSL_MODES else None

    def storage_allowed(self, namespace: str, s3: S3Storage) -> bool:
        """Whether `namespace`'s requests may keep or read artifacts in `s3`."""
        locations = [*self.storage_locations.get(namespace, ()), *self.storage_locations.get("*", ())]
        return any(location.holds(s3) for location in locations)

    def may_restore_from(self, namespace: str, source_namespace: str) -> bool:
        """Whether `namespace` may restore a signed backup taken in `source_namespace`."""
        if source_namespace == namespace:
            return True
        allowed = {*self.artifact_source_namespaces.get(namespace, ()), *self.artifact_source_namespaces.get("*", ())}
        return "*" in allowed or source_namespace in allowed

    def request_trusted_keys_allowed(self, namespace: str) -> bool:
        """Whether requests of `namespace` may name the keys that vouch for an artifact's origin."""
        return "*" in self.request_trusted_keys_namespaces or namespace in self.request_trusted_keys_namespaces

    def ambient_identity_allowed(self, namespace: str) -> bool:
        """Whether requests of `namespace` may use the operator's own cloud identity for S3."""
        return "*" in self.ambient_identity_namespaces or namespace in self.ambient_identity_namespaces

    @property
    def log_json(self) -> bool:
        return self.log_format == "json"

    @classmethod
    def environment_variables(cls) -> dict[str, str]:
        """Field name -> the environment variable it is read from."""
        return {name: ENV_PREFIX + name.upper() for name in cls.model_fields}

    @classmethod
    def from_environment(cls, **overrides: Any) -> Settings:
        """The environment's settings, with the given overrides (e.g. command-line flags) winning;
        an override of None is ignored. Raises InvalidSettings."""
        try:
            return cls(**{name: value for name, value in overrides.items() if value is not None})
        except ValidationError as error:
            raise InvalidSettings(_explain(error, cls.environment_variables())) from error


def _explain(error: ValidationError, variables: dict[str, str]) -> str:
    """One line per problem, named by its environment variable: 'WALWARDEN_METRICS_PORT: Input
    should be a valid integer ...', 'WALWARDEN_DEFAULT_TOPOLOGY, at stopTiers: ...'."""
    lines = []
    for problem in error.errors(include_url=False):
        field, *inner = problem["loc"] or ("",)
        where = variables.get(str(field), str(field))
        if inner:
            where += ", at " + ".".join(str(part) for part in inner)
        lines.append(f"{where}: {problem['msg'].removeprefix('Value error, ')}")
    return "invalid settings:\n" + "\n".join(f"  {line}" for line in lines)


# The name other modules still use; they move to Settings.
OperatorConfig = Settings
