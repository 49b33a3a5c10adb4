"""Which server versions a dump may be restored into: the same or a newer major version."""

from __future__ import annotations

import pytest

from walwarden.restore.steps.preflight import check_target_version
from walwarden.workflow.engine import StepFailed


@pytest.mark.parametrize(
    "target, source", [("16.4", "16.1"), ("17.0", "15.18 (Debian 15.18-0+deb12u1)"), ("unknown", "16.4")]
)
def test_the_same_or_a_newer_major_version_is_accepted(target, source):
    check_target_version(target, source)


def test_an_older_major_version_is_refused_before_anything_is_touched():
    with pytest.raises(StepFailed) as refused:
        check_target_version("15.18 (Debian 15.18-0+deb12u1)", "16.4")
    assert refused.value.reason == "TargetServerTooOld"
    assert "PostgreSQL 16.4" in refused.value.message and "Nothing was touched" in refused.value.message
