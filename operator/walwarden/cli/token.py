"""`walwarden token issue` and `walwarden token inspect`: the command-line side of approval tokens.

`issue` prints only the token on stdout (so `$(walwarden token issue ...)` works) and a one-line
summary on stderr. The key comes from a file, an environment variable or a Kubernetes Secret
(through the current kubeconfig) and never appears in output. Each command exits 0 on success,
1 on a refused request, with the reason on stderr as one sentence.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from walwarden.api.backup import PLURAL as BACKUP_PLURAL
from walwarden.api.backup import BackupPhase, BackupRequestStatus
from walwarden.api.common import GROUP, VERSION
from walwarden.api.restore import RestoreRequestSpec
from walwarden.cli.arguments import command_group
from walwarden.security.tokens import (
    MAX_TTL_SECONDS,
    Approval,
    TokenError,
    issue_token,
    normalize_sha256,
    parse_unverified,
    rfc3339,
)

if TYPE_CHECKING:
    from walwarden.kube.api import Kube

DEFAULT_TTL = "15m"
DEFAULT_SECRET_KEY = "key"
_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TokenCliError(Exception):
    """A request the command cannot carry out; the message says what to do instead."""


def parse_duration(text: str) -> int:
    """'90s', '15m', '2h', '7d' or plain seconds ('600') -> seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h or d, e.g. 15m)")
    return int(match[1]) * _UNIT_SECONDS[match[2].lower()]


def _duration_argument(text: str) -> int:
    # argparse reports a ValueError from a type as "invalid value"; this keeps our message.
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: Any) -> None:
    """Add `token issue` and `token inspect` to the `walwarden` command's subparsers."""
    actions = command_group(
        subparsers,
        "token",
        ("issue", "inspect"),
        help="issue or inspect approval tokens for RestoreRequests",
        description="Approval tokens are short-lived, single-use HMAC tokens that approve one restore "
        "(DESIGN §4). Put the issued token in the RestoreRequest's spec.approvalToken.",
    )

    issue = actions.add_parser(
        "issue",
        help="issue a token that approves one restore",
        description="Print a new approval token (only the token) on stdout.",
    )
    issue.add_argument(
        "--request",
        "-f",
        required=True,
        type=Path,
        metavar="FILE",
        help="the RestoreRequest to approve, as it will be applied (YAML or JSON; - for stdin): the token binds "
        "its name, namespace and whole spec (spec.approvalToken aside), its backup and mode",
    )
    issue.add_argument(
        "--sha256",
        metavar="HEX",
        help="the artifact's sha256 (default: status.artifact.sha256 of the BackupRequest the request restores; "
        "required for an s3:// artifact: the sha256 in the manifest beside it)",
    )
    issue.add_argument(
        "--namespace", "-n", help="namespace of the RestoreRequest (default: its metadata.namespace; one is needed)"
    )
    issue.add_argument(
        "--ttl",
        type=_duration_argument,
        default=DEFAULT_TTL,
        metavar="DURATION",
        help=f"lifetime, e.g. 90s, 15m, 2h, 7d (default {DEFAULT_TTL}, at most {MAX_TTL_SECONDS // 86400}d)",
    )
    key = issue.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-file", type=Path, metavar="PATH", help="read the HMAC key from this file")
    key.add_argument("--key-env", metavar="VAR", help="read the HMAC key from this environment variable")
    key.add_argument(
        "--key-secret",
        metavar="NAMESPACE/NAME[:KEY]",
        help=f"read the HMAC key from this Kubernetes Secret (key {DEFAULT_SECRET_KEY!r} "
        "unless given), through the current kubeconfig",
    )
    issue.add_argument(
        "--kubeconfig",
        help="kubeconfig for --key-secret and the BackupRequest lookup (default: $KUBECONFIG or ~/.kube/config)",
    )
    issue.set_defaults(handler=issue_command)

    inspect = actions.add_parser(
        "inspect",
        help="print a token's claims as JSON, WITHOUT verifying it",
        description="Decode a token and print its claims. The signature is not "
        "checked (that needs the key): only the operator verifies.",
    )
    inspect.add_argument("token")
    inspect.set_defaults(handler=inspect_command)


def _one_sentence(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refused request ends with exit status 1 and its reason on stderr as one sentence."""

    @functools.wraps(command)
    def handler(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (TokenCliError, TokenError, ValueError) as error:
            print(f"walwarden token {args.token_command}: {getattr(error, 'message', error)}", file=sys.stderr)
            return 1

    return handler


@_one_sentence
def issue_command(args: argparse.Namespace) -> int:
    request = read_request(args.request, args.namespace)
    cluster = Cluster(args.kubeconfig)
    key = _read_key(args, cluster)
    sha256 = args.sha256 or backup_sha256(cluster, request.namespace, request.spec.source.label)
    approval = Approval.of_request(request.namespace, request.name, request.spec, sha256)
    token = issue_token(key, approval, ttl_seconds=args.ttl)
    claims = parse_unverified(token)
    print(token)
    print(
        f"approves RestoreRequest {claims.namespace}/{claims.request} as written in {args.request} (spec sha256 "
        f"{claims.spec[:12]}…): one {claims.mode} restore of {claims.backup}, until {rfc3339(claims.expires_at)} "
        f"(token id {claims.token_id})",
        file=sys.stderr,
    )
    return 0


@dataclass(frozen=True)
class RequestToApprove:
    namespace: str
    name: str
    spec: RestoreRequestSpec


def read_request(path: Path, namespace: str | None) -> RequestToApprove:
    """The RestoreRequest in `path` (- for stdin), parsed as the operator will parse it."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        raise TokenCliError(f"cannot read {path}: {error.strerror}") from None
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TokenCliError(f"{path} is not YAML or JSON: {error}") from None
    if not isinstance(body, dict) or body.get("kind") != "RestoreRequest":
        raise TokenCliError(f"{path} must hold one RestoreRequest (kind: RestoreRequest)")
    metadata = body.get("metadata") or {}
    name, written = metadata.get("name"), metadata.get("namespace")
    if not name:
        raise TokenCliError(f"{path} has no metadata.name: a token approves one named request")
    if namespace and written and namespace != written:
        raise TokenCliError(f"{path} says namespace {written}, --namespace says {namespace}: give one")
    namespace = namespace or written
    if not namespace:
        raise TokenCliError(f"{path} has no metadata.namespace: give --namespace")
    try:
        spec = RestoreRequestSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        raise TokenCliError(f"{path} is not a valid RestoreRequest: {error.errors()[0]['msg']}") from None
    return RequestToApprove(namespace=namespace, name=name, spec=spec)


@_one_sentence
def inspect_command(args: argparse.Namespace) -> int:
    claims = parse_unverified(args.token)
    print(
        json.dumps(
            {
                "verified": False,  # said in the output itself, so nobody mistakes it for a check
                "tokenId": claims.token_id,
                "request": f"{claims.namespace}/{claims.request}",
                "spec": claims.spec,
                "backup": claims.backup,
                "sha256": claims.sha256,
                "mode": claims.mode,
                "namespace": claims.namespace,
                "issuedAt": rfc3339(claims.issued_at),
                "expiresAt": rfc3339(claims.expires_at),
                "expired": claims.expired(),
            },
            indent=2,
        )
    )
    print(
        "note: claims decoded without verifying the signature; only the operator, with the key, verifies a token",
        file=sys.stderr,
    )
    return 0


# -- the key ------------------------------------------------------------------------------------


def _read_key(args: argparse.Namespace, cluster: Cluster) -> bytes:
    if args.key_file is not None:
        try:
            key = args.key_file.read_bytes()
        except OSError as error:
            raise TokenCliError(f"cannot read the key file {args.key_file}: {error.strerror}") from None
        where = f"the key file {args.key_file}"
    elif args.key_env is not None:
        value = os.environ.get(args.key_env)
        if value is None:
            raise TokenCliError(f"the environment variable {args.key_env} is not set")
        key, where = value.encode(), f"the environment variable {args.key_env}"
    else:
        key, where = secret_key(cluster, args.key_secret), f"the Secret {args.key_secret}"
    if not key.strip():
        raise TokenCliError(f"{where} holds an empty key")
    return key


def parse_secret_ref(text: str) -> tuple[str, str, str]:
    """'NAMESPACE/NAME[:KEY]' -> (namespace, name, key); neither a namespace nor a Secret's name
    can contain '/' or ':', so the split is unambiguous."""
    match = re.fullmatch(r"([^/:\s]+)/([^/:\s]+)(?::([^/:\s]+))?", text)
    if not match:
        raise TokenCliError(f"--key-secret must look like NAMESPACE/NAME or NAMESPACE/NAME:KEY, not {text!r}")
    return match[1], match[2], match[3] or DEFAULT_SECRET_KEY


def secret_key(cluster: Cluster, ref: str) -> bytes:
    """The key stored under KEY in the Secret NAMESPACE/NAME[:KEY], as the bytes the operator signs
    with: it reads the Secret as text (kube.secrets.read_secret) and encodes it."""
    namespace, name, key = parse_secret_ref(ref)
    data = cluster.secret_data(namespace, name)
    if data is None:
        raise TokenCliError(f"there is no Secret {name} in namespace {namespace}")
    if key not in data:  # key names are not secret: listing them helps fix a typo
        raise TokenCliError(
            f"the Secret {namespace}/{name} has no key {key!r} (it has: {', '.join(sorted(data)) or 'none'})"
        )
    return data[key].encode()


# -- the BackupRequest ----------------------------------------------------------------------------


def backup_sha256(cluster: Cluster, namespace: str, backup: str) -> str:
    """status.artifact.sha256 of the Succeeded BackupRequest named `backup`."""
    if backup.startswith("s3://"):
        raise TokenCliError(
            "--sha256 is required with an s3:// artifact: take it from the sha256 field of "
            "the manifest beside the artifact"
        )
    body = cluster.backup_request(namespace, backup)
    if body is None:
        raise TokenCliError(f"there is no BackupRequest {backup} in namespace {namespace}")
    status = BackupRequestStatus.model_validate(body.get("status") or {})
    if status.phase != BackupPhase.SUCCEEDED or status.artifact is None:
        raise TokenCliError(
            f"BackupRequest {namespace}/{backup} has not succeeded (phase "
            f"{status.phase or 'unset'}): only a finished backup can be approved for restore"
        )
    return normalize_sha256(status.artifact.sha256)


class Cluster:
    """The two reads `token issue` may need, through the current kubeconfig (kube.api.Kube.connect).
    It connects on first use, so `--key-file ... --sha256 ...` works without any cluster; the
    kubernetes client is imported only then, which keeps `walwarden --help` fast."""

    def __init__(self, kubeconfig: str | None = None):
        self._kubeconfig = kubeconfig
        self._kube: Kube | None = None

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        from walwarden.kube.secrets import read_secret

        try:
            return self._read(f"the Secret {namespace}/{name}", lambda kube: read_secret(kube, namespace, name))
        except UnicodeDecodeError:
            raise TokenCliError(
                f"the Secret {namespace}/{name} holds a value that is not UTF-8 text: the operator, "
                "which reads Secrets as text, could not verify a token signed with it (use a text "
                "key, e.g. from `openssl rand -hex 32`)"
            ) from None

    def backup_request(self, namespace: str, name: str) -> dict[str, Any] | None:
        from walwarden.kube.api import call

        return self._read(
            f"the BackupRequest {namespace}/{name}",
            lambda kube: call(kube.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, BACKUP_PLURAL, name),
        )

    def _read(self, what: str, read: Callable[[Any], Any]) -> Any:
        """read(kube): None when the object does not exist, else what it read; what the cluster
        refused becomes one actionable sentence."""
        from kubernetes.client.rest import ApiException
        from kubernetes.config import ConfigException
        from urllib3.exceptions import HTTPError

        from walwarden.kube.api import Kube

        try:
            if self._kube is None:
                self._kube = Kube.connect(self._kubeconfig)
            return read(self._kube)
        except ConfigException as error:
            raise TokenCliError(f"cannot read {what}: no Kubernetes cluster configured ({error})") from None
        except ApiException as error:
            hint = " (may your kubeconfig's user read it?)" if error.status in (401, 403) else ""
            raise TokenCliError(
                f"cannot read {what}: the Kubernetes API server answered {error.status} {error.reason}{hint}"
            ) from None
        except HTTPError as error:
            raise TokenCliError(
                f"cannot read {what}: the Kubernetes API server is unreachable ({type(error).__name__})"
            ) from None
