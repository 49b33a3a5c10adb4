"""The Azure Key Vault backend's refusals when its vault URL leads to no vault: the real Azure SDK
client, over real sockets on 127.0.0.1, to a closed port and to an HTTPS server that is not a Key
Vault (a wrong URL that happens to reach some web server).

No Key Vault-compatible server could be had for these tests (Lowkey Vault's app is not served by
the package registries this project reaches), so the backend's reads and writes of secrets are not
tested against a server here; only these two answers of "not a vault" are.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading

import pytest

from devstack.pki import make_serving_certificate
from walwarden.secretstores import AzureKeyVault, DbInfoError, ServicePrincipal, make_azure_client

NAME = "test.vault.wallet.db-info"
CLIENT_SECRET = "never-shown-" + "s" * 16
PRINCIPAL = ServicePrincipal("00000000-0000-0000-0000-000000000001", "app", CLIENT_SECRET)


class NotFound(http.server.BaseHTTPRequestHandler):
    """Any web server that is not a Key Vault: 404 with an HTML page, no bearer challenge."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_GET  # noqa: N815

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_a_vault(tmp_path, monkeypatch):
    """The URL of an HTTPS server on 127.0.0.1 that is no Key Vault, its CA trusted by the SDK."""
    files = make_serving_certificate(tmp_path / "tls", ["127.0.0.1"], "not-a-vault")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # The SDK's transport (requests) trusts this bundle, as an operator would with a private CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(files.ca_cert))
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_vault_url_where_nothing_listens_is_a_wait_that_names_the_url():
    url = f"https://127.0.0.1:{closed_port()}"
    backend = AzureKeyVault(make_azure_client(url, PRINCIPAL))
    with pytest.raises(DbInfoError) as waiting:
        backend.read(NAME)
    assert waiting.value.reason == "Unreachable" and waiting.value.retryable
    assert url in waiting.value.message and "vaultUrl" in waiting.value.message
    assert "test-vault-wallet-db-info" in waiting.value.message
    assert CLIENT_SECRET not in str(waiting.value)


@pytest.mark.parametrize("verb", ["read", "update"])
def test_a_vault_url_that_reaches_another_server_is_refused_not_read_as_a_missing_secret(not_a_vault, verb):
    backend = AzureKeyVault(make_azure_client(not_a_vault, PRINCIPAL))
    with pytest.raises(DbInfoError) as refused:
        if verb == "read":
            backend.read(NAME)
        else:
            backend.update(NAME, {"DB_HOST": "new-db.vault.internal"})
    assert refused.value.reason == "NotAKeyVault" and not refused.value.retryable
    assert "vaultUrl" in refused.value.message and not_a_vault in refused.value.message
    assert CLIENT_SECRET not in str(refused.value)
