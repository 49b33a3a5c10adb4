"""What every db-info secret store shares: the protocol, the error, and the pure logic of a change.

A backend (kubernetes.py, aws.py, azure.py) reads a secret as a dict of strings and changes only the keys it
is given. The helpers here decide what a change is (`changed_keys`, `merge_values`), read a secret
manager's JSON secret (`parse_secret_string`), render JSON values the way a syncer writes
them into a Kubernetes Secret (`as_strings`), and make any text a server sent safe to show
(`scrub`, `server_text`): no secret value ever reaches a `DbInfoError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

# The keys a db-info secret holds (DESIGN §1). Other keys are kept untouched.
DB_INFO_KEYS = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")

# Values shorter than this are not scrubbed out of server messages one by one (replacing every "5"
# in a message would make it unreadable); if such a value occurs in the message at all, the
# server's text is left out entirely.
_MIN_SCRUB_LENGTH = 4
_MAX_SERVER_TEXT = 300


class DbInfoError(Exception):
    """A db-info secret could not be read or changed. Never holds a secret value.

    `reason` is a short CamelCase word for status conditions (SecretNotFound, AccessDenied,
    InvalidCredentials, SecretNotJson, Throttled, Unreachable, ...); `message` says what happened
    and what to do; `retryable` is true when trying again later may succeed.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retryable = retryable


@runtime_checkable
class DbInfoBackend(Protocol):
    def read(self, name: str) -> dict[str, str] | None:
        """The secret's keys and values; None when it does not exist."""
        ...

    def update(self, name: str, values: dict[str, str]) -> None:
        """Set the given keys, keep all others. Raises DbInfoError (SecretNotFound if missing)."""
        ...


# -- what a change is ------------------------------------------------------------------------------


def changed_keys(current: Mapping[str, Any] | None, values: Mapping[str, str]) -> list[str]:
    """The keys of `values` whose value differs from `current` (as strings); all of them when None."""
    current = current or {}
    return [key for key, value in values.items() if key not in current or as_string(current[key]) != value]


def merge_values(current: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """`current` with the keys of `values` set; every other key (and its JSON type) kept as it was,
    in its original order."""
    check_values(values)
    merged = dict(current)
    merged.update(values)
    return merged


def parse_secret_string(
    name: str, text: str | None, where: str = "AWS Secrets Manager secret", field: str = "SecretString"
) -> dict[str, Any]:
    """The JSON object a secret manager's secret holds (Secrets Manager's SecretString, Key Vault's
    value), or DbInfoError(SecretNotJson). `where` and `field` name the store's secret and field."""
    expected = "a db-info secret must hold a JSON object with DB_HOST, DB_PORT, DB_USER, DB_PASSWORD and DB_NAME"
    if text is None:
        raise DbInfoError(
            "SecretNotJson", f"{where} {name} has no {field} (binary secrets are not supported): {expected}"
        )
    try:
        document = json.loads(text)
    except ValueError:
        # The decoder's message can quote the text: leave it out.
        document = None
    if not isinstance(document, dict):
        raise DbInfoError("SecretNotJson", f"the {field} of {where} {name} is not a JSON object: {expected}")
    return document


def check_values(values: Mapping[str, str]) -> None:
    """Refuse keys that are not non-empty strings and values that are not strings, without naming a value."""
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise ValueError("db-info keys must be non-empty strings")
        if not isinstance(value, str):
            # The value itself is not named: it may be a password.
            raise TypeError(f"the value of db-info key {key} must be a string, not {type(value).__name__}")


def as_strings(document: Mapping[str, Any]) -> dict[str, str]:
    """A JSON object's values as strings, as a syncer puts them into a Kubernetes Secret
    (5432 -> "5432", true -> "true", null -> "", nested values as JSON)."""
    return {str(key): as_string(value) for key, value in document.items()}


def as_string(value: Any) -> str:
    """One JSON value as `as_strings` renders it."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# -- server text without secret values -------------------------------------------------------------


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every one of `secrets` replaced by "***". If a value too short to be replaced
    safely occurs in it, the whole text is withheld instead."""
    values = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)
    for value in values:
        if value not in text:
            continue
        if len(value) < _MIN_SCRUB_LENGTH:
            return "(server message withheld: it may contain a secret value)"
        text = text.replace(value, "***")
    return text


def server_text(text: str, secrets: Iterable[str]) -> str:
    """A server's error message fit for a `DbInfoError`: on one line, scrubbed of `secrets`, bounded."""
    text = " ".join(str(text).split())
    # moto (and some proxies) answer JSON-protocol calls with an XML error document.
    inner = re.search(r"<Message>(.*?)</Message>", text)
    if inner:
        text = inner.group(1)
    text = scrub(text, secrets)
    return text if len(text) <= _MAX_SERVER_TEXT else text[:_MAX_SERVER_TEXT] + "..."
