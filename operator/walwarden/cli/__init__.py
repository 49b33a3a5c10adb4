"""The `walwarden` command."""

from __future__ import annotations

import argparse
import sys

from walwarden import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="walwarden", description="Safe backup and restore of an Institutional Vault's PostgreSQL state.")
    parser.add_argument("--version", action="version", version=f"walwarden {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    run.add_argument("--namespace", "-n", action="append", dest="namespaces",
                     help="watch only this namespace (repeatable; default: cluster-wide)")
    run.add_argument("--verbose", "-v", action="store_true")

    commands.add_parser("crds", help="print the CustomResourceDefinitions generated from the API models")

    from walwarden.cli import audit as audit_cli
    from walwarden.cli import restore as local_restore
    from walwarden.cli import runner as runner_cli
    from walwarden.cli import token as token_cli

    runner_cli.add_runner_parser(commands)
    audit_cli.add_audit_parser(commands)
    token_cli.add_token_parser(commands)
    local_restore.add_restore_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from walwarden.settings import OperatorConfig
        from walwarden.cli.operator import run_operator

        config = OperatorConfig.from_environment(
            namespaces=tuple(args.namespaces) if args.namespaces else None)
        run_operator(config, kubeconfig=args.kubeconfig, verbose=args.verbose)
        return 0
    if args.command == "runner":
        from walwarden.cli import runner as runner_cli

        return runner_cli.run(args)
    if args.command == "token":
        from walwarden.cli import token as token_cli

        return token_cli.run(args)
    if args.command == "audit":
        from walwarden.cli import audit as audit_cli

        return audit_cli.run(args)
    if args.command == "restore":
        from walwarden.cli import restore as local_restore

        return local_restore.run(args)
    if args.command == "crds":
        from walwarden.api.crdgen import build_crds, to_yaml

        sys.stdout.write("---\n".join(to_yaml(crd) for crd in build_crds()))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
