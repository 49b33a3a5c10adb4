"""What every handler needs, created once at start-up and kept in kopf's memo."""

from __future__ import annotations

from dataclasses import dataclass

from walwarden.kube.api import Kube
from walwarden.settings import OperatorConfig


@dataclass(frozen=True)
class OperatorContext:
    kube: Kube
    config: OperatorConfig
