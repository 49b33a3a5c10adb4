from __future__ import annotations

import pytest

from walwarden.security.signing import canonical_json, sign, verify


def test_canonical_json_is_one_byte_string_per_value():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == b'{"a":[1,"\\u00e9"],"b":1}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_sign_and_verify():
    signature = sign(b"key", b"message")
    assert signature.startswith("hmac-sha256:") and len(signature) == len("hmac-sha256:") + 64
    assert verify(b"key", b"message", signature)
    assert not verify(b"key", b"message!", signature)
    assert not verify(b"other", b"message", signature)
    assert not verify(b"key", b"message", None) and not verify(b"", b"message", signature)


def test_an_empty_key_cannot_sign():
    with pytest.raises(ValueError):
        sign(b"", b"message")
