"""pytest fixture: the operator (`walwarden run`) watching the test's namespace."""

from __future__ import annotations

import pytest

from devstack.cluster import ClusterAccess
from devstack.operator_process import OperatorProcess


@pytest.fixture
def operator(cluster: ClusterAccess, crds, namespace: str, tmp_path) -> OperatorProcess:
    # Poll every second: tests wait on real Jobs and pods, and seconds add up.
    process = OperatorProcess(cluster, namespace, tmp_path / "operator.log", {"WALWARDEN_POLL_SECONDS": "1"}).start()
    yield process
    process.stop()
