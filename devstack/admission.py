"""A validating admission webhook served by the test process on loopback: the API server asks it
about each matching write before storing it, and stores the write only if it says yes.

Crash tests use it to stop a writer at an exact point: the hook sees the write that would record
something (e.g. an operator's status patch saying a step succeeded), kills the writer and refuses
the write, so the writer dies after its work and before its record of it. Nothing is mocked: the
API server, its admission chain and the writer are the real ones.

The hook only sees what its rules, namespace and object labels select, and is removed on exit.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devstack.cluster import ClusterAccess
from devstack.pki import make_serving_certificate
from devstack.processes import wait_until

# The API server gives up on a webhook after this (its maximum); a refused write is then refused
# anyway (failurePolicy Fail), so a slow answer never lets a write through unseen.
WEBHOOK_TIMEOUT_SECONDS = 30
PROBE_LABEL = "devstack.walwarden.io/admission-probe"

Decide = Callable[[dict], "str | None"]  # the AdmissionReview request -> a refusal message, or None to allow


class AdmissionHook:
    """`with AdmissionHook(cluster, workdir, namespace, rules, labels, decide):` — while inside,
    every write matching `rules` (admissionregistration rules) to an object of `namespace` whose
    labels include `labels` is shown to `decide` first. Entering returns once the API server
    really consults the hook."""

    def __init__(
        self,
        cluster: ClusterAccess,
        workdir: Path,
        namespace: str,
        rules: list[dict],
        labels: dict[str, str],
        decide: Decide,
    ):
        self.cluster, self.workdir, self.namespace = cluster, Path(workdir), namespace
        self.rules, self.labels, self.decide = rules, labels, decide
        self.name = f"devstack-hook-{secrets.token_hex(4)}"
        self.errors: list[BaseException] = []  # raised from `decide`: re-raised on exit
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> AdmissionHook:
        certificate = make_serving_certificate(self.workdir / "admission-pki", ["127.0.0.1"], self.name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certificate.cert), str(certificate.key))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True).start()
        try:
            self._register(base64.b64encode(certificate.ca_cert.read_bytes()).decode())
            self._wait_until_consulted()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cluster.kubectl(["delete", "validatingwebhookconfiguration", self.name, "--ignore-not-found"], check=False)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.errors and not exc[0]:
            raise RuntimeError(f"the admission hook's decide() failed: {self.errors[0]!r}") from self.errors[0]

    # -- the API server's side --------------------------------------------------------------------

    def _register(self, ca_bundle: str) -> None:
        port = self._server.server_address[1]
        scope = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
            "clientConfig": {"url": f"https://127.0.0.1:{port}/", "caBundle": ca_bundle},
            "failurePolicy": "Fail",
            "sideEffects": "NoneOnDryRun",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": WEBHOOK_TIMEOUT_SECONDS,
            "matchPolicy": "Equivalent",
        }
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": f"writes.{self.name}.devstack.walwarden.io",
                    "rules": self.rules,
                    "objectSelector": {"matchLabels": self.labels},
                    **scope,
                },
                # Refuses its probe ConfigMaps: how we know the API server consults the hook.
                {
                    "name": f"probe.{self.name}.devstack.walwarden.io",
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                            "scope": "Namespaced",
                        }
                    ],
                    "objectSelector": {"matchLabels": {PROBE_LABEL: self.name}},
                    **scope,
                },
            ],
        }
        self.cluster.kubectl(["apply", "-f", "-"], stdin=json.dumps(config))

    def _wait_until_consulted(self) -> None:
        """The API server loads webhook configurations asynchronously: create a probe until the hook
        refuses it (each one created before that is deleted again)."""
        probe = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{self.name}-probe", "labels": {PROBE_LABEL: self.name}},
        }

        def refused() -> bool:
            result = self.cluster.kubectl(
                ["create", "-n", self.namespace, "-f", "-"], stdin=json.dumps(probe), check=False
            )
            if result.returncode == 0:
                self.cluster.kubectl(
                    ["delete", "configmap", probe["metadata"]["name"], "-n", self.namespace], check=False
                )
                return False
            return "admission probe" in result.stderr

        wait_until(refused, 120, f"the API server to consult the admission hook {self.name}", interval=0.5)

    def review(self, request: dict) -> str | None:
        if (request.get("object") or {}).get("metadata", {}).get("labels", {}).get(PROBE_LABEL) == self.name:
            return "admission probe: the hook is consulted"
        if request.get("dryRun"):
            return None  # sideEffects NoneOnDryRun: a dry run must not trigger what decide() does
        try:
            return self.decide(request)
        except BaseException as error:  # refused, and reported on exit: a broken test must not pass
            self.errors.append(error)
            return f"the admission hook failed: {error!r}"


def _handler(hook: AdmissionHook):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = review["request"]
            refusal = hook.review(request)
            response = {"uid": request["uid"], "allowed": refusal is None}
            if refusal is not None:
                response["status"] = {"code": 403, "reason": "Forbidden", "message": refusal}
            body = json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
            ).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (ConnectionError, ssl.SSLError):
                # The API server gave up on this call: its client (a writer that decide() just
                # killed) went away, so the write is dropped without our answer.
                pass

        def log_message(self, *args) -> None:
            pass  # the API server's calls are not the test's output

    return Handler
