"""Running the operator: `walwarden run` (kopf under the hood) against a kubeconfig or in-cluster."""

from __future__ import annotations

import asyncio
import logging

import kopf

from walwarden.settings import OperatorConfig


class WaitsAreNotErrors(logging.Filter):
    """kopf logs every TemporaryError at ERROR level, but ours mean "a step is waiting" (for pods to
    stop, a Job to finish): that is progress, logged at INFO so error alerts stay meaningful."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def run_operator(config: OperatorConfig, kubeconfig: str | None = None, verbose: bool = False) -> None:
    # kopf's own logging setup: plain text, or JSON lines when asked (WALWARDEN_LOG_FORMAT=json).
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if config.log_json else kopf.LogFormat.FULL)
    logging.getLogger("kopf.objects").addFilter(WaitsAreNotErrors())
    import walwarden.handlers  # noqa: F401  (registers the handlers)

    memo = kopf.Memo(config=config, kubeconfig=kubeconfig)  # read by the login handler
    liveness = f"http://{config.listen_address}:{config.health_port}/healthz" if config.health_port else None
    asyncio.run(kopf.operator(
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        memo=memo,
        standalone=True,  # one replica; no kopf peering objects to install
        liveness_endpoint=liveness,
    ))
