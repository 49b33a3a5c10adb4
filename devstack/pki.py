"""The few certificates and keys a local control plane needs, made with `cryptography`.

One CA signs the API server's serving certificate and the admin client certificate
(group system:masters); a separate RSA key signs service-account tokens. A server the API server
calls (an admission webhook) gets a CA and a serving certificate of its own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    """Paths of the files written by `make_pki`."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


class _Ca:
    """A fresh CA that issues EC certificates, valid from a few minutes ago for VALIDITY."""

    def __init__(self, common_name: str = "walwarden-devstack-ca"):
        self.now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now)
            .not_valid_after(self.now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, subject: x509.Name, usage, sans: list[x509.GeneralName] | None = None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now)
            .not_valid_after(self.now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


@dataclass(frozen=True)
class ServingCertificate:
    """A server's certificate and key, and the CA certificate its clients trust it by."""

    ca_cert: Path
    cert: Path
    key: Path


def make_serving_certificate(directory: Path, ips: list[str], common_name: str) -> ServingCertificate:
    """A CA of its own and a server certificate for `ips` (e.g. a webhook the API server calls)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Ca(f"{common_name}-ca")
    key, cert = ca.issue(
        _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    )
    files = ServingCertificate(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_cert.write_bytes(_pem_cert(ca.cert))
    files.cert.write_bytes(_pem_cert(cert))
    files.key.write_bytes(_pem_key(key))
    files.key.chmod(0o600)
    return files


def make_pki(directory: Path, serving_ips: list[str], serving_names: list[str]) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Ca()
    ca_key, ca_cert, issue = ca.key, ca.cert, ca.issue

    serving_key, serving_cert = issue(
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address(ip)) for ip in serving_ips]
        + [x509.DNSName(name) for name in serving_names],
    )
    # system:masters bypasses RBAC: only the test harness and the control plane's own
    # components use it; the operator under test gets its own ServiceAccount where RBAC matters.
    admin_key, admin_cert = issue(_name("devstack-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    pki.ca_cert.write_bytes(_pem_cert(ca_cert))
    pki.ca_key.write_bytes(_pem_key(ca_key))
    pki.serving_cert.write_bytes(_pem_cert(serving_cert))
    pki.serving_key.write_bytes(_pem_key(serving_key))
    pki.admin_cert.write_bytes(_pem_cert(admin_cert))
    pki.admin_key.write_bytes(_pem_key(admin_key))
    pki.service_account_key.write_bytes(_pem_key(sa_key))
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for path in (pki.ca_key, pki.serving_key, pki.admin_key, pki.service_account_key):
        path.chmod(0o600)
    return pki
