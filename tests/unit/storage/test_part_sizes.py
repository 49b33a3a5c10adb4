"""Part sizes: small for small dumps, and never more than 10,000 parts, even past the expected size."""

from __future__ import annotations

import pytest

from walwarden.storage.s3 import (
    DEFAULT_PART_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    GiB,
    MiB,
    base_part_size,
    capacity,
    part_size,
)


@pytest.mark.parametrize("expected", [None, 0, 1, 100 * MiB, GiB, 39 * GiB])
def test_small_and_unknown_sizes_use_the_default_part_size(expected):
    assert base_part_size(expected) == DEFAULT_PART_SIZE >= MIN_PART_SIZE


@pytest.mark.parametrize("expected", [41 * GiB, 100 * GiB, 1024 * GiB, 5 * 1024 * GiB])
def test_large_sizes_fit_in_half_the_parts_in_whole_mebibytes(expected):
    base = base_part_size(expected)
    assert base % MiB == 0
    assert base * MAX_PARTS // 2 >= expected
    assert base - MiB < expected / (MAX_PARTS // 2)  # no bigger than needed: memory is parts in flight


@pytest.mark.parametrize("expected", [GiB, 100 * GiB, 1024 * GiB])
def test_a_dump_much_bigger_than_expected_still_fits_in_10000_parts(expected):
    base = base_part_size(expected)
    assert capacity(base) >= 10 * expected
    assert part_size(1, base) == part_size(5_000, base) == base
    assert part_size(5_001, base) == 2 * base
    assert part_size(MAX_PARTS, base) == min(base << 5, MAX_PART_SIZE)


def test_parts_never_exceed_the_s3_maximum():
    base = base_part_size(50 * 1024 * GiB)  # 50 TiB, S3's largest object is 5 TiB
    assert base == MAX_PART_SIZE
    assert all(part_size(n, base) == MAX_PART_SIZE for n in (1, 5_001, MAX_PARTS))
