"""`walwarden keys generate`: a new Ed25519 origin signing key, as two manifests to apply.

    walwarden keys generate --out-dir keys/ --entry prod-eu.pub -n vault

writes keys/walwarden-origin-key.secret.yaml — the Secret with the private key ("privateKey"),
for the environment that takes the backups (name it in a BackupRequest's spec.originSigningKey,
or in the operator's WALWARDEN_ORIGIN_SIGNING_KEY_SECRET) — and
keys/walwarden-trusted-keys.configmap.yaml — the ConfigMap with the public key under `--entry`,
for every environment that restores those backups by artifact URI (spec.source.trustedKeys, or
WALWARDEN_TRUSTED_KEYS_CONFIG_MAP). The private key is written to its file only (mode 0600), never
to the terminal; stdout carries the key id. Existing files are not overwritten. Exit status 0, or
1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from walwarden.api.common import DNS_SUBDOMAIN_PATTERN
from walwarden.cli.arguments import command_group
from walwarden.settings import ORIGIN_SIGNING_KEY_SECRET_KEY

DEFAULT_SECRET = "walwarden-origin-key"
DEFAULT_CONFIG_MAP = "walwarden-trusted-keys"


def register(subparsers: Any) -> None:
    actions = command_group(
        subparsers,
        "keys",
        ("generate",),
        help="make Ed25519 origin signing keys",
        description="Origin signing keys let a restore in another environment prove which environment's "
        "backup it restores (docs/runbook.md).",
    )
    generate = actions.add_parser(
        "generate",
        help="write a new key pair as a Secret and a ConfigMap manifest",
        description="Write a new Ed25519 key pair: the private key as a Secret manifest (for the backup "
        "environment), the public key as a ConfigMap manifest (for the restoring environments).",
    )
    generate.add_argument("--out-dir", required=True, type=Path, help="directory to write the two manifests into")
    generate.add_argument("--secret", default=DEFAULT_SECRET, help=f"name of the Secret (default {DEFAULT_SECRET})")
    generate.add_argument(
        "--config-map", default=DEFAULT_CONFIG_MAP, help=f"name of the ConfigMap (default {DEFAULT_CONFIG_MAP})"
    )
    generate.add_argument(
        "--entry", help="the ConfigMap entry holding the public key, e.g. prod-eu.pub (default <key id>.pub)"
    )
    generate.add_argument("-n", "--namespace", help="namespace of both manifests (default: none, kubectl's)")
    generate.set_defaults(handler=generate_command)


def generate_command(args: argparse.Namespace) -> int:
    import re

    import yaml

    from walwarden.security import origin

    for what, name in (("--secret", args.secret), ("--config-map", args.config_map), ("-n", args.namespace)):
        if name is not None and not re.fullmatch(DNS_SUBDOMAIN_PATTERN, name):
            return _fail(f"{what} {name!r} is not a Kubernetes name (lowercase letters, digits, '-' and '.')")
    key = origin.generate_private_key()
    key_id = origin.key_id(key.public_key())
    entry = args.entry or f"{key_id.removeprefix(origin.SCHEME + ':')}.pub"
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", entry):
        return _fail(f"--entry {entry!r} is not a ConfigMap key (letters, digits, '-', '_' and '.')")
    secret_path = args.out_dir / f"{args.secret}.secret.yaml"
    config_map_path = args.out_dir / f"{args.config_map}.configmap.yaml"
    for path in (secret_path, config_map_path):
        if path.exists():
            return _fail(f"{path} exists; remove it or choose another --out-dir, --secret or --config-map")
    metadata = {"namespace": args.namespace} if args.namespace else {}
    note = f"walwarden origin signing key {key_id}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": args.secret, **metadata, "annotations": {"walwarden.io/origin-key-id": key_id}},
        "stringData": {ORIGIN_SIGNING_KEY_SECRET_KEY: origin.private_key_pem(key)},
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": args.config_map, **metadata, "annotations": {"walwarden.io/origin-key-id": key_id}},
        "data": {entry: origin.public_key_pem(key.public_key())},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    _write(secret_path, f"# {note}: the PRIVATE key, for the backup environment only\n" + _yaml(yaml, secret), 0o600)
    _write(config_map_path, f"# {note}: the public key, for restoring environments\n" + _yaml(yaml, config_map), 0o644)
    print(key_id)
    print(f"wrote {secret_path} (private key) and {config_map_path} (public key, entry {entry})", file=sys.stderr)
    return 0


def _yaml(yaml: Any, document: dict[str, Any]) -> str:
    class BlockDumper(yaml.SafeDumper):
        pass

    def strings(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    BlockDumper.add_representer(str, strings)
    return yaml.dump(document, Dumper=BlockDumper, sort_keys=False)


def _write(path: Path, text: str, mode: int) -> None:
    # Created with its mode: the private key is never readable by others, not even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _fail(message: str) -> int:
    print(f"walwarden keys: {message}", file=sys.stderr)
    return 1
