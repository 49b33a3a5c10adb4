"""Operator-wide kopf settings, set once at start-up."""

from __future__ import annotations

import logging
import os

import kopf
import kubernetes

from walwarden.api.common import GROUP
from walwarden.handlers import metrics
from walwarden.kube.api import Kube
from walwarden.workflow.context import OperatorContext


@kopf.on.startup(id="settings")
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_):
    memo.context = OperatorContext(kube=Kube.connect(memo.get("kubeconfig")), config=memo.config)
    if memo.config.metrics_port:
        metrics.serve(memo.config.metrics_port, memo.config.listen_address)
    # Our own finalizer and annotation prefix, so nothing collides with other kopf operators.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Our events are posted explicitly (kopf.event) for every transition; kopf's own log lines
    # (e.g. each "failed temporarily" while a step waits) stay in the log.
    settings.posting.level = logging.CRITICAL
    # Reconnect watches regularly: a silently dead watch would stall a restore.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # No cluster-wide scans of namespaces and CRDs: least-privilege RBAC does not grant them, and
    # kopf would retry them for a minute at start-up.
    settings.scanning.disabled = True
    # Sized on purpose (kopf's default follows the CPU count): see Settings.handler_workers.
    settings.execution.max_workers = memo.config.handler_workers


@kopf.on.login(id="login")
def login(memo: kopf.Memo, logger, **kwargs):
    """In a pod: its service account. Elsewhere: the kubeconfig given to `walwarden run` (or
    $KUBECONFIG), read by the kubernetes client so exec plugins and certificates both work."""
    kubeconfig = memo.get("kubeconfig") or os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return kopf.login_with_service_account(**kwargs)
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # The client keeps a token kubeconfig's (or exec plugin's) token under "BearerToken".
    api_key = configuration.api_key or {}
    token = (api_key.get("BearerToken") or api_key.get("authorization") or "").removeprefix("Bearer ").strip() or None
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        token=token,
        default_namespace=None,
    )
