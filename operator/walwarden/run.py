"""Running the operator: `walwarden run` (kopf under the hood) against a kubeconfig or in-cluster."""

from __future__ import annotations

import asyncio
import logging

import kopf

from walwarden.config import OperatorConfig


def run_operator(config: OperatorConfig, kubeconfig: str | None = None, verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    import walwarden.handlers  # noqa: F401  (registers the handlers)

    memo = kopf.Memo(config=config, kubeconfig=kubeconfig)  # read by the login handler
    asyncio.run(kopf.operator(
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        memo=memo,
        standalone=True,  # one replica; no kopf peering objects to install
    ))
