"""The audit log's hash chain: extending it keeps it valid; editing or dropping a line breaks it."""

import pytest

from walwarden.storage.audit import GENESIS, AuditChainBroken, _line, verify_chain


def chain(records):
    previous, lines = GENESIS, []
    for record in records:
        line, previous = _line(previous, record)
        lines.append(line)
    return "\n".join(lines) + "\n", previous


def test_a_chain_verifies_to_its_last_hash():
    text, last = chain([{"reason": "A"}, {"reason": "B"}, {"reason": "C"}])
    assert verify_chain(text) == last
    assert verify_chain("") == GENESIS


def test_an_edited_line_breaks_the_chain():
    text, _ = chain([{"reason": "A"}, {"reason": "B"}, {"reason": "C"}])
    with pytest.raises(AuditChainBroken):
        verify_chain(text.replace('"reason":"A"', '"reason":"X"'))


def test_a_dropped_line_breaks_the_chain():
    text, _ = chain([{"reason": "A"}, {"reason": "B"}, {"reason": "C"}])
    lines = text.splitlines()
    with pytest.raises(AuditChainBroken):
        verify_chain("\n".join([lines[0], lines[2]]))


def test_heads_recorded_by_requests_must_still_be_in_the_log():
    first, head_a = chain([{"reason": "A"}, {"reason": "B"}])
    full, head_c = chain([{"reason": "A"}, {"reason": "B"}, {"reason": "C"}])
    assert verify_chain(full, expect_heads=[head_a, head_c]) == head_c
    # Cut short to before C: still a valid chain, but the head the last request recorded is gone.
    with pytest.raises(AuditChainBroken, match="cut short or rewritten"):
        verify_chain(first, expect_heads=[head_c])
    # Rewritten whole with other records: valid chain, none of the recorded heads.
    forged, _ = chain([{"reason": "X"}])
    with pytest.raises(AuditChainBroken):
        verify_chain(forged, expect_heads=[head_a])
