"""EMP fingerprints: the same value matches, any other does not, forged parameters are refused."""

from __future__ import annotations

import base64
import time

from walwarden.security.fingerprints import DEFAULT_N, fingerprint, matches


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
    first, second = fingerprint("emp", n=2**10), fingerprint("emp", n=2**10)
    assert first.salt != second.salt and first.hash != second.hash
    assert matches("emp", first) and matches("emp", second)


def test_a_given_salt_is_deterministic():
    assert fingerprint("emp", salt=b"s" * 16, n=2**10) == fingerprint("emp", salt=b"s" * 16, n=2**10)


def test_malformed_or_forged_fingerprints_do_not_match_and_do_not_crash():
    fp = fingerprint("emp", n=2**10)
    assert not matches("emp", fp.model_copy(update={"salt": "not base64!"}))
    assert not matches("emp", fp.model_copy(update={"n": 3}))  # not a power of two
    assert not matches("emp", fp.model_copy(update={"n": 2**20, "r": 64}))  # 8 GiB of memory
