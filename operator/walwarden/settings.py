"""The operator's own settings, read once at start-up from `walwarden run` flags and environment
variables (WALWARDEN_*), e.g. as the Helm chart sets them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from walwarden.api import DEFAULT_TOPOLOGY, SecretBackend, Topology


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _topology(text: str | None) -> Topology:
    """WALWARDEN_DEFAULT_TOPOLOGY, validated like a request's spec.topology; a bad value stops
    the operator at start-up with the model's error rather than mid-restore."""
    return Topology.model_validate_json(text) if text and text.strip() not in ("", "{}") else DEFAULT_TOPOLOGY


@dataclass(frozen=True)
class OperatorConfig:
    # Namespaces to watch; empty means cluster-wide.
    namespaces: tuple[str, ...] = ()
    # Image of the backup/restore runner Jobs (the operator's own image by default).
    runner_image: str = "walwarden:latest"
    # Extra labels on runner pods: network policies on a real cluster, or the local pod
    # executor's label on the test stack.
    runner_pod_labels: dict[str, str] = field(default_factory=dict)
    # Refuse RestoreRequests without a valid approval token (DESIGN §4).
    approvals_required: bool = False
    # Name of the Secret (in the operator's namespace) holding the approval-token HMAC key.
    approval_key_secret: str = "walwarden-approval-key"
    operator_namespace: str = "walwarden-system"
    # Prometheus metrics (/metrics) and liveness (/healthz) endpoints; 0 disables each.
    metrics_port: int = 0
    health_port: int = 0
    listen_address: str = "0.0.0.0"
    # Logs as JSON lines (for log pipelines) instead of plain text.
    log_json: bool = False
    # How often a waiting step looks at the world again (seconds).
    poll_seconds: float = 5.0
    # How long one pass keeps looking (every 0.1–0.5 s) at a step that is already waiting, before it
    # hands back to the poll interval: stops, starts and Job ends are noticed at once (downtime).
    settle_seconds: float = 5.0
    # ScaleDown (and a backup's Quiesce) fails after waiting this long for a tier's pods to go,
    # rather than keep the vault half-stopped for ever; the services are then started again.
    # Starting that takes this long raises the condition ServicesNotReady (and keeps waiting).
    stop_timeout_seconds: float = 600.0
    # The vault's services when a request has no spec.topology (JSON of the Topology model).
    default_topology: Topology = DEFAULT_TOPOLOGY
    # Where db-info secrets live when a Redirected request does not say (spec.redirect.secretBackend).
    default_secret_backend: SecretBackend = SecretBackend.KUBERNETES

    @classmethod
    def from_environment(cls, **overrides) -> "OperatorConfig":
        namespaces = tuple(n for n in os.environ.get("WALWARDEN_NAMESPACES", "").split(",") if n)
        values = dict(
            namespaces=namespaces,
            runner_image=os.environ.get("WALWARDEN_RUNNER_IMAGE", cls.runner_image),
            runner_pod_labels=json.loads(os.environ.get("WALWARDEN_RUNNER_POD_LABELS", "{}")),
            approvals_required=_env_bool("WALWARDEN_APPROVALS_REQUIRED", cls.approvals_required),
            approval_key_secret=os.environ.get("WALWARDEN_APPROVAL_KEY_SECRET", cls.approval_key_secret),
            operator_namespace=os.environ.get("WALWARDEN_OPERATOR_NAMESPACE", cls.operator_namespace),
            metrics_port=int(os.environ.get("WALWARDEN_METRICS_PORT", "0")),
            health_port=int(os.environ.get("WALWARDEN_HEALTH_PORT", "0")),
            listen_address=os.environ.get("WALWARDEN_LISTEN_ADDRESS", cls.listen_address),
            log_json=os.environ.get("WALWARDEN_LOG_FORMAT", "").lower() == "json",
            poll_seconds=float(os.environ.get("WALWARDEN_POLL_SECONDS", cls.poll_seconds)),
            settle_seconds=float(os.environ.get("WALWARDEN_SETTLE_SECONDS", cls.settle_seconds)),
            stop_timeout_seconds=float(os.environ.get("WALWARDEN_STOP_TIMEOUT_SECONDS", cls.stop_timeout_seconds)),
            default_topology=_topology(os.environ.get("WALWARDEN_DEFAULT_TOPOLOGY")),
            default_secret_backend=SecretBackend(
                os.environ.get("WALWARDEN_DEFAULT_SECRET_BACKEND") or SecretBackend.KUBERNETES),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
