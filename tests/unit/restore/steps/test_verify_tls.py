"""Where Verify's auth header may go: the accounts URL is the requester's, so the header reaches a
server only over TLS with a certificate the operator verifies, and never follows a redirect (which
urllib would follow to any URL, http:// too, header and all). Real servers on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from walwarden.restore.steps.verify import _get

TOKEN = "Bearer the-wallet-api-token"


class Listener:
    """A server on loopback that records the Authorization header of every request it gets."""

    def __init__(self, answer: int = 200, location: str = "") -> None:
        self.received: list[str | None] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.received.append(self.headers.get("Authorization"))
                self.send_response(answer)
                if location:
                    self.send_header("Location", location)
                body = b"[1]"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def serve(self) -> Listener:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop()


def start(listeners: list[Listener], listener: Listener) -> Listener:
    listeners.append(listener.serve())
    return listener


def test_a_redirect_is_not_followed_with_the_header(listeners):
    stealer = start(listeners, Listener())
    redirecting = start(listeners, Listener(302, f"http://127.0.0.1:{stealer.port}/stolen"))
    status, _ = _get(f"http://127.0.0.1:{redirecting.port}/accounts", {"Authorization": TOKEN})
    assert status == 302 and stealer.received == []


def test_a_redirect_is_still_followed_without_a_header(listeners):
    target = start(listeners, Listener())
    redirecting = start(listeners, Listener(302, f"http://127.0.0.1:{target.port}/health"))
    assert _get(f"http://127.0.0.1:{redirecting.port}/health", {}) == (200, b"[1]")
    assert target.received == [None]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system CA signed: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "listener")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "listener.crt", directory / "listener.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_listener(listeners, tmp_path) -> tuple[Listener, Path]:
    """An https listener on loopback with a self-signed certificate, and that certificate."""
    cert_path, key_path = self_signed_certificate(tmp_path)
    listener = Listener()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener.httpd.socket = context.wrap_socket(listener.httpd.socket, server_side=True)
    return start(listeners, listener), cert_path


def test_a_certificate_no_trusted_ca_signed_gets_no_header(tls_listener, monkeypatch):
    listener, _ = tls_listener
    # Even when something in the process turned urllib's default verification off.
    monkeypatch.setattr(ssl, "_create_default_https_context", ssl._create_unverified_context)
    status, said = _get(f"https://127.0.0.1:{listener.port}/accounts", {"Authorization": TOKEN})
    assert status == 0 and said == b"URLError"
    assert listener.received == []


def test_the_same_listener_trusted_gets_the_header(tls_listener, monkeypatch):
    """The control: only the certificate's verification kept the header from it above."""
    listener, cert_path = tls_listener
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the operator's trusted CAs (OpenSSL's variable)
    assert _get(f"https://127.0.0.1:{listener.port}/accounts", {"Authorization": TOKEN}) == (200, b"[1]")
    assert listener.received == [TOKEN]
