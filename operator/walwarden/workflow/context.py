"""What every handler needs, created once at start-up and kept in kopf's memo."""

from __future__ import annotations

from dataclasses import dataclass

from walwarden.settings import OperatorConfig
from walwarden.kube.api import Kube


@dataclass(frozen=True)
class OperatorContext:
    kube: Kube
    config: OperatorConfig
