"""pytest fixture: the operator (`walwarden run`) watching the test's namespace."""

from __future__ import annotations

import pytest

from devstack.cluster import ClusterAccess
from devstack.operator_process import OperatorProcess


@pytest.fixture
def operator(cluster: ClusterAccess, crds, namespace: str, tmp_path) -> OperatorProcess:
    process = OperatorProcess(cluster, namespace, tmp_path / "operator.log", {}).start()
    yield process
    process.stop()
