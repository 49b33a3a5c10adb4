"""The sizes kubectl shows: binary units, short."""

from __future__ import annotations

import pytest

from walwarden.api.common import human_size


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (295 * 2**20, "295 MiB"),
        (int(2.3 * 2**30), "2.3 GiB"),
        (5 * 2**50, "5.0 PiB"),
        (2**62, "4096 PiB"),
    ],
)
def test_human_size(size, shown):
    assert human_size(size) == shown
