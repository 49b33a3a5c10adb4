"""The restore's Run: the typed request, its status and what one pass resolved once (the source).

Steps and the restore's services (source, target, db-info secrets, the go signal) take a
`RestoreRun`; nothing in restore/ reads a status key by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from walwarden.api import RestoreRequestSpec, RestoreRequestStatus, SecretBackend, Topology
from walwarden.workflow.engine import Run
from walwarden.workflow.steps import topology_of

if TYPE_CHECKING:
    from walwarden.restore.source import Source


@dataclass
class RestoreRun(Run[RestoreRequestSpec, RestoreRequestStatus]):
    resolved_source: Source | None = None  # looked up once per pass (restore.source.source_of)

    def job_identity(self) -> dict[str, Any]:
        """Who a runner Job of this request belongs to: the keyword arguments every builder of
        restore/job.py takes first."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "owner": self.owner,
            "config": self.settings,
        }

    @property
    def topology(self) -> Topology:
        return topology_of(self)

    @property
    def secret_backend(self) -> SecretBackend:
        redirect = self.spec.redirect
        return (redirect.secret_backend if redirect else None) or self.settings.default_secret_backend
