"""EMP fingerprints: the same value matches, any other does not, forged parameters are refused."""

from __future__ import annotations

import base64
import time

import pytest
from pydantic import ValidationError

from walwarden.security.fingerprints import DEFAULT_N, MIN_N, EncryptorFingerprint, fingerprint, matches


def test_default_parameters_work_and_match_only_the_same_value():
    started = time.monotonic()
    fp = fingerprint("correct horse battery staple")
    assert (fp.algorithm, fp.n, fp.r, fp.p) == ("scrypt", DEFAULT_N, 8, 1)
    assert len(base64.b64decode(fp.salt)) == 16 and len(base64.b64decode(fp.hash)) == 32
    assert matches("correct horse battery staple", fp)
    assert not matches("correct horse battery stapler", fp)
    assert not matches("", fp)
    assert time.monotonic() - started < 10


def test_a_random_salt_makes_each_fingerprint_different():
    first, second = fingerprint("emp", n=MIN_N), fingerprint("emp", n=MIN_N)
    assert first.salt != second.salt and first.hash != second.hash
    assert matches("emp", first) and matches("emp", second)


def test_a_given_salt_is_deterministic():
    assert fingerprint("emp", salt=b"s" * 16, n=MIN_N) == fingerprint("emp", salt=b"s" * 16, n=MIN_N)


def test_malformed_or_forged_fingerprints_do_not_match_and_do_not_crash():
    fp = fingerprint("emp", n=MIN_N)
    assert not matches("emp", fp.model_copy(update={"salt": "not base64!"}))
    assert not matches("emp", fp.model_copy(update={"n": 3}))  # not a power of two
    assert not matches("emp", fp.model_copy(update={"n": 2**20, "r": 64}))  # 8 GiB of memory
    assert not matches("emp", fp.model_copy(update={"n": 2}))  # model_copy skips validation: still refused


def forged(**parameters: int) -> dict:
    """A manifest's fingerprint entry as an attacker may write it: the project's, with other n, r, p."""
    return {**fingerprint("emp", salt=b"s" * 16).model_dump(), **parameters}


def test_what_the_project_writes_is_accepted_as_read_from_a_manifest():
    written = fingerprint("emp")
    assert EncryptorFingerprint.model_validate_json(written.model_dump_json()) == written
    assert EncryptorFingerprint.model_validate(forged(n=MIN_N)).n == MIN_N


@pytest.mark.parametrize(
    ("parameters", "why"),
    [
        ({"n": 2}, "a fingerprint anyone can brute-force"),
        ({"n": 2**13}, "below scrypt's interactive minimum"),
        ({"n": 3 * 2**14}, "not a power of two"),
        ({"n": 2**20}, "1 GiB of memory"),
        ({"n": 2**30}, "a terabyte"),
        ({"r": 1}, "a cheap block size"),
        ({"r": 64}, "too large a block"),
        ({"p": 0}, "no work"),
        ({"p": 1000}, "minutes of CPU"),
        ({"n": 2**17, "r": 32}, "512 MiB of memory"),
    ],
)
def test_a_forged_manifests_parameters_are_refused_when_read(parameters, why):
    started = time.monotonic()
    with pytest.raises(ValidationError):
        EncryptorFingerprint.model_validate(forged(**parameters))
    assert time.monotonic() - started < 1, why  # refused before any scrypt runs


def test_a_forged_cheap_fingerprint_cannot_be_made_either():
    with pytest.raises(ValueError):
        fingerprint("emp", n=2)
