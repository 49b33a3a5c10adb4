"""The `walwarden` command: one module per command group.

- operator.py  `walwarden run`: the operator itself (kopf), with its settings (walwarden.settings)
- runner.py    `walwarden runner backup|verify|restore`: what the operator's Jobs run
- token.py     `walwarden token issue|inspect`: approval tokens for RestoreRequests
- keys.py      `walwarden keys generate`: Ed25519 origin signing keys, as a Secret and a ConfigMap
- restore.py   `walwarden restore`: a restore from S3 into a database from this machine
- audit.py     `walwarden audit verify`: checks a hash-chained audit.log beside an artifact
- crds.py      `walwarden crds`: prints the CRDs generated from the API models

Each module has `register(subparsers)`, which adds its command's parser(s) and names the function
that carries it out with `parser.set_defaults(handler=...)`: a callable taking the parsed
arguments and returning the exit status. main() parses, then calls `args.handler(args)`.
What only one command needs (kopf, the kubernetes client) is imported in its handler, so that
`walwarden --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from walwarden import __version__
from walwarden.cli import audit, crds, keys, operator, restore, runner, token


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="walwarden", description="Safe backup and restore of an Institutional Vault's PostgreSQL state."
    )
    parser.add_argument("--version", action="version", version=f"walwarden {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    operator.register(commands)
    # runner.py has no register() yet: the same convention through its two functions.
    runner.add_runner_parser(commands).set_defaults(handler=runner.run)
    token.register(commands)
    keys.register(commands)
    restore.register(commands)
    audit.register(commands)
    crds.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
