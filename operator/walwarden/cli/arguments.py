"""Argument types and parser pieces the command groups share."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from walwarden.api.common import PgIdentifier

_DATABASE_NAME: TypeAdapter[str] = TypeAdapter(PgIdentifier)


def command_group(subparsers: Any, name: str, actions: tuple[str, ...], help: str, description: str) -> Any:
    """`walwarden <name> <action>`: adds the group's parser; returns the subparsers its actions
    (one of which is required) are added to."""
    group = subparsers.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="{" + ",".join(actions) + "}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def database_name(text: str) -> str:
    """A PostgreSQL database name as the API accepts it (api.common.PgIdentifier): never a
    connection string, whoever wrote the Job's arguments."""
    try:
        return _DATABASE_NAME.validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"expected a database name (letters, digits, _ $ -, at most 63), got {text!r}"
        ) from None


def timestamp(text: str) -> datetime:
    """An RFC 3339 time with its offset (2026-12-01T02:30:00Z)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected an RFC 3339 time such as 2026-12-01T02:30:00Z, got {text!r}")
    return moment
