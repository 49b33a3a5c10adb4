"""Argument types and parser pieces the command groups share."""

from __future__ import annotations

import argparse
from typing import Any


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
