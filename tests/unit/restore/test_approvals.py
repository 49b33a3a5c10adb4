"""The record of used approval tokens (ConfigMap walwarden-approvals): expired entries are pruned."""

from __future__ import annotations

from walwarden.restore.approvals import prune_expired_tokens


def test_only_entries_of_expired_tokens_are_pruned():
    used = {
        "t-old": "RestoreRequest/r1/uid-1 expires 1000",
        "t-now": "RestoreRequest/r2/uid-2 expires 2000",
        "t-later": "RestoreRequest/r3/uid-3 expires 3000",
        "t-odd": "written by hand",  # not ours to judge: kept
    }
    assert prune_expired_tokens(used, now=2000) == {
        "t-now": "RestoreRequest/r2/uid-2 expires 2000",  # still good at 2000 (refused only from 2000 on, kept)
        "t-later": "RestoreRequest/r3/uid-3 expires 3000",
        "t-odd": "written by hand",
    }


def test_nothing_to_prune_leaves_the_record_as_it_is():
    used = {"t": "RestoreRequest/r/uid expires 5000"}
    assert prune_expired_tokens(used, now=10) == used
