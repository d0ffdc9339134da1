"""Test certificates for TLS and key pairs for SuperNode authentication (the ``cryptography`` package).

The CA made here is for tests and local demos only: its private key sits beside the certificate
and it is valid for :data:`VALID_DAYS` days. Production deployments use certificates from the
organisation's CA (docs/deployment.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["VALID_DAYS", "make_node_key", "make_test_certificates"]

VALID_DAYS = 30


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_test_certificates(out_dir: str | os.PathLike[str], hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> Path:
    """Write ``ca.crt``, ``ca.key``, ``server.pem`` and ``server.key`` for ``hosts`` into ``out_dir``.

    The SuperLink takes ``--ssl-ca-certfile ca.crt --ssl-certfile server.pem --ssl-keyfile
    server.key``; SuperNodes and the ``flwr`` CLI take ``ca.crt`` as their root certificate.
    Refuses to overwrite existing files.
    """
    out = Path(out_dir)
    if not hosts:
        raise ValueError("hosts must name at least one host name or IP address. Found none.")
    targets = [out / name for name in ("ca.crt", "ca.key", "server.pem", "server.key")]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"certificate files already exist: {existing}. Pass an empty --out.")
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dppt test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    private = (serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (out / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    _write_private(out / "ca.key", ca_key.private_bytes(pem, *private))
    (out / "server.pem").write_bytes(server_cert.public_bytes(pem))
    _write_private(out / "server.key", server_key.private_bytes(pem, *private))
    return out


def make_node_key(private_path: str | os.PathLike[str]) -> Path:
    """Write an EC P-384 key pair in OpenSSH format: ``private_path`` (mode 600) and ``private_path.pub``.

    Register the public key with ``flwr supernode register KEY.pub <connection>``; start the
    SuperNode with ``--auth-supernode-private-key private_path``.
    """
    private = Path(private_path)
    public = private.with_name(private.name + ".pub")
    if private.exists() or public.exists():
        raise FileExistsError(f"key file already exists: {private}. Choose another name.")
    private.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return public
