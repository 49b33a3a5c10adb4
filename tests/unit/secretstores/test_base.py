"""The logic every db-info store shares (secretstores/base.py): what a change is, reading a
SecretString, and scrubbing server text."""

from __future__ import annotations

import json

import pytest

from walwarden.secretstores.base import (
    DbInfoError,
    as_strings,
    changed_keys,
    merge_values,
    parse_secret_string,
    scrub,
)

PASSWORD = "s3cr3t-Pa55word!"
CURRENT = {
    "DB_HOST": "old-db.internal",
    "DB_PORT": 5432,
    "DB_USER": "wallet",
    "DB_PASSWORD": PASSWORD,
    "DB_NAME": "vault",
    "EXTRA": {"a": 1},
}


# -- what a change is ------------------------------------------------------------------------------


def test_merge_sets_the_given_keys_and_keeps_the_others_with_their_types():
    merged = merge_values(CURRENT, {"DB_HOST": "new-db.internal", "DB_NAME": "restored"})
    assert merged == {**CURRENT, "DB_HOST": "new-db.internal", "DB_NAME": "restored"}
    assert merged["DB_PORT"] == 5432 and merged["EXTRA"] == {"a": 1}
    assert list(merged) == list(CURRENT)  # order kept
    assert CURRENT["DB_HOST"] == "old-db.internal"  # the input is not changed


def test_merge_adds_a_missing_key():
    assert merge_values({"DB_HOST": "a"}, {"DB_PORT": "5433"}) == {"DB_HOST": "a", "DB_PORT": "5433"}


def test_merge_refuses_non_string_values_without_naming_them():
    with pytest.raises(TypeError) as refused:
        merge_values({}, {"DB_PASSWORD": 12345678})
    assert "12345678" not in str(refused.value) and "DB_PASSWORD" in str(refused.value)


def test_changed_keys_compares_as_strings():
    assert changed_keys(CURRENT, {"DB_PORT": "5432", "DB_HOST": "old-db.internal"}) == []
    assert changed_keys(CURRENT, {"DB_PORT": "5433", "DB_HOST": "old-db.internal"}) == ["DB_PORT"]
    assert changed_keys(CURRENT, {"NEW": "x"}) == ["NEW"]
    assert changed_keys(None, {"DB_HOST": "a"}) == ["DB_HOST"]


def test_as_strings_renders_json_values_as_a_syncer_would():
    assert as_strings({"s": "x", "i": 5432, "f": 1.5, "t": True, "n": None, "o": {"b": 2, "a": 1}}) == {
        "s": "x",
        "i": "5432",
        "f": "1.5",
        "t": "true",
        "n": "",
        "o": '{"a":1,"b":2}',
    }


# -- a secret manager's SecretString ---------------------------------------------------------------


def test_parse_secret_string():
    assert parse_secret_string("n", json.dumps(CURRENT)) == CURRENT


@pytest.mark.parametrize("text", [PASSWORD, json.dumps([PASSWORD]), json.dumps(PASSWORD), "{" + PASSWORD, None])
def test_a_secret_string_that_is_not_a_json_object_is_refused_without_quoting_it(text):
    with pytest.raises(DbInfoError) as refused:
        parse_secret_string("prod.ns.wallet.db-info", text)
    assert refused.value.reason == "SecretNotJson"
    assert "prod.ns.wallet.db-info" in str(refused.value)
    assert PASSWORD not in str(refused.value) and refused.value.__cause__ is None


# -- server text -----------------------------------------------------------------------------------


def test_scrub_replaces_values_and_withholds_text_with_short_ones():
    assert scrub(f"bad value {PASSWORD} here", [PASSWORD, "x"]) == "bad value *** here"
    assert scrub("port 54 refused", ["54"]) == "(server message withheld: it may contain a secret value)"
    assert scrub("nothing secret", ["ab", PASSWORD, ""]) == "nothing secret"
    # Longer values first, so one value inside another leaves nothing behind.
    assert scrub("abcdefgh", ["abcd", "abcdefgh"]) == "***"
