"""refresh_synced_copy (secretstores/synced.py) over any DbInfoBackend: only a copy that exists is written."""

from __future__ import annotations

import pytest

from walwarden.secretstores.base import DbInfoError
from walwarden.secretstores.synced import refresh_synced_copy


class DictBackend:
    """A DbInfoBackend over a dict; `update` can be made to fail with a given DbInfoError."""

    def __init__(self, secrets: dict[str, dict[str, str]], failure: DbInfoError | None = None) -> None:
        self.secrets = secrets
        self.failure = failure

    def read(self, name: str) -> dict[str, str] | None:
        return dict(self.secrets[name]) if name in self.secrets else None

    def update(self, name: str, values: dict[str, str]) -> None:
        if self.failure is not None:
            raise self.failure
        self.secrets[name].update(values)


def test_an_existing_copy_gets_the_values_and_keeps_its_other_keys():
    backend = DictBackend({"s": {"DB_HOST": "a", "DB_USER": "u"}})
    assert refresh_synced_copy(backend, "s", {"DB_HOST": "b"}) is True
    assert backend.secrets == {"s": {"DB_HOST": "b", "DB_USER": "u"}}


def test_no_copy_is_created():
    backend = DictBackend({})
    assert refresh_synced_copy(backend, "s", {"DB_HOST": "b"}) is False
    assert backend.secrets == {}


def test_a_copy_deleted_between_the_read_and_the_write_counts_as_none():
    backend = DictBackend({"s": {"DB_HOST": "a"}}, failure=DbInfoError("SecretNotFound", "gone"))
    assert refresh_synced_copy(backend, "s", {"DB_HOST": "b"}) is False


def test_other_errors_are_raised():
    backend = DictBackend({"s": {"DB_HOST": "a"}}, failure=DbInfoError("AccessDenied", "no", retryable=False))
    with pytest.raises(DbInfoError) as failed:
        refresh_synced_copy(backend, "s", {"DB_HOST": "b"})
    assert failed.value.reason == "AccessDenied"
