"""`walwarden audit verify`: check an audit.log in S3 — its hash chain, and that it still holds the
heads that requests recorded in their status (`status.audit.chainHead`).

    walwarden audit verify s3://bucket/backups/vault/nightly-1a2b3c4d/audit.log \\
        --expect-head "$(kubectl get restorerequest undo -o jsonpath='{.status.audit.chainHead}')"

Reads with boto3's ambient identity (environment, profile, IRSA). Exit 0: intact; 1: broken or
unreadable, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="check a hash-chained audit.log beside an artifact")
    verbs = parser.add_subparsers(dest="audit_command", required=True)
    verify = verbs.add_parser(
        "verify",
        help="check the chain and the heads requests recorded",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("uri", help="s3://bucket/key of the audit.log (status.audit.log of a request)")
    verify.add_argument(
        "--expect-head",
        action="append",
        default=[],
        metavar="SHA256",
        help="a request's status.audit.chainHead that the log must still hold (repeatable)",
    )
    verify.add_argument("--endpoint", help="URL of an S3-compatible server")
    verify.add_argument("--region", default="us-east-1")
    verify.add_argument("--force-path-style", action="store_true", help="path-style bucket addressing")
    verify.set_defaults(handler=verify_log)


def verify_log(args: argparse.Namespace) -> int:
    from walwarden.storage import audit, bounded
    from walwarden.storage import s3 as storage

    try:
        bucket, key = storage.parse_s3_uri(args.uri)
    except ValueError as error:
        print(f"walwarden audit: {error}", file=sys.stderr)
        return 2
    try:
        client = storage.make_client(region=args.region, endpoint=args.endpoint, force_path_style=args.force_path_style)
        body, _ = bounded.read_object(
            client, bucket, key, audit.MAX_AUDIT_LOG_BYTES, args.uri, too_large=audit.AuditLogTooLarge
        )
        text = body.decode()
        head = audit.verify_chain(text, [h.strip().lower() for h in args.expect_head])
    except audit.AuditChainBroken as error:
        print(f"walwarden audit: {args.uri} is NOT intact: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # a line that is not JSON (json.JSONDecodeError)
        print(f"walwarden audit: {args.uri} is not an audit log: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # unreadable: no such key, no rights, no endpoint
        print(f"walwarden audit: cannot read {args.uri}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    lines = len(text.splitlines())
    checked = f"; {len(args.expect_head)} recorded head(s) present" if args.expect_head else ""
    print(f"{args.uri}: intact, {lines} records, head {head}{checked}")
    return 0
