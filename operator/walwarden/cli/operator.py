"""`walwarden run`: the operator (kopf under the hood) against a kubeconfig or in-cluster, with the
settings of walwarden.settings (environment variables, the chart sets them) and its flags."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from walwarden.settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run the operator")
    parser.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        help="watch only this namespace (repeatable; default: cluster-wide)",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from walwarden.settings import InvalidSettings, Settings

    try:
        settings = Settings.from_environment(namespaces=tuple(args.namespaces) if args.namespaces else None)
    except InvalidSettings as error:
        print(f"walwarden run: {error}", file=sys.stderr)
        return 2
    run_operator(settings, kubeconfig=args.kubeconfig, verbose=args.verbose)
    return 0


class WaitsAreNotErrors(logging.Filter):
    """kopf logs every TemporaryError at ERROR level, but ours mean "a step is waiting" (for pods to
    stop, a Job to finish): that is progress, logged at INFO so error alerts stay meaningful."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def run_operator(config: Settings, kubeconfig: str | None = None, verbose: bool = False) -> None:
    import asyncio

    import kopf

    # kopf's own logging setup: plain text, or JSON lines when asked (WALWARDEN_LOG_FORMAT=json).
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if config.log_json else kopf.LogFormat.FULL)
    logging.getLogger("kopf.objects").addFilter(WaitsAreNotErrors())
    # The Azure SDK logs every HTTP request it sends (URL, headers) at INFO: only its warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)
    import walwarden.handlers  # noqa: F401  (registers the handlers)

    memo = kopf.Memo(config=config, kubeconfig=kubeconfig)  # read by the login handler
    liveness = f"http://{config.listen_address}:{config.health_port}/healthz" if config.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            memo=memo,
            standalone=True,  # one replica; no kopf peering objects to install
            liveness_endpoint=liveness,
        )
    )
