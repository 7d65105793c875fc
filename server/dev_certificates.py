"""Development certificates for a secured federation on a test network or loopback.

``ca.crt`` (a local certificate authority) and ``server.pem`` / ``server.key`` (the SuperLink's TLS certificate
for the given host names and IPs). For production, use certificates from your organisation's CA; these are for
trying the product and for tests.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cxr_fedsynth.common.privacy.site_keys import write_secret_or_public

VALID_DAYS = 365


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cxr-fedsynth development"),
        ]
    )


def create_dev_certificates(out_dir: Path, *, hosts: list[str]) -> dict[str, Path]:
    """A CA and a server certificate valid for ``hosts`` (DNS names or IP addresses)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("cxr-fedsynth dev CA"))
        .issuer_name(_name("cxr-fedsynth dev CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        "ca": out_dir / "ca.crt",
        "cert": out_dir / "server.pem",
        "key": out_dir / "server.key",
    }
    write_secret_or_public(paths["ca"], ca_cert.public_bytes(serialization.Encoding.PEM))
    write_secret_or_public(paths["cert"], server_cert.public_bytes(serialization.Encoding.PEM))
    write_secret_or_public(
        paths["key"],
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private=True,
    )
    return paths
