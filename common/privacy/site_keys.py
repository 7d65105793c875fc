"""A site's key pair for SuperNode authentication: ECDSA P-384 in OpenSSH format (what Flower expects)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cxr_fedsynth.common.atomic import write_atomic


def write_secret_or_public(path: Path, data: bytes, *, private: bool = False) -> None:
    """Atomically write key or certificate bytes; private material is made readable by the owner only."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    if private:
        path.chmod(0o600)


def create_site_key(private_path: Path) -> Path:
    """An ECDSA (P-384) key pair in OpenSSH format for SuperNode authentication; returns the public key path."""
    key = ec.generate_private_key(ec.SECP384R1())
    write_secret_or_public(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
        private=True,
    )
    public_path = private_path.with_name(private_path.name + ".pub")
    write_secret_or_public(
        public_path, key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return public_path
