"""``rtproxy replay --tls``: a certificate for serving wss:// on this machine.

Some clients only speak ``wss://`` (the Node SDK, browsers, SDKs that build the
URL themselves). A replay then needs TLS with a certificate the client trusts:
:func:`self_signed` makes one for ``127.0.0.1``, ``::1`` and ``localhost``
(self-signed, no CA behind it: the certificate is its own trust anchor), which
the client is told to trust with ``NODE_EXTRA_CA_CERTS`` or ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

__all__ = ["CERT_NAME", "KEY_NAME", "self_signed", "server_context", "cert_for"]

CERT_NAME = "rtproxy-replay-cert.pem"
KEY_NAME = "rtproxy-replay-key.pem"
#: How long a generated certificate is valid (a replay is a local, short-lived thing).
VALID_DAYS = 30


def self_signed(cert_path: Path, key_path: Path, hosts: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")) -> None:
    """Write a self-signed certificate for ``hosts`` and its key (PEM; the key readable by its owner only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "rtproxy replay (localhost)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rtproxy"),
        ]
    )
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # Its own anchor: CA true lets strict verifiers (Python 3.13, OpenSSL's
        # X509_V_FLAG_X509_STRICT) accept it as a trust root; no path below it.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _usable(cert_path: Path, key_path: Path) -> bool:
    """An earlier certificate in ``--cert-dir`` that is still valid for a while and loads."""
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
        if left < datetime.timedelta(days=1):
            return False
        server_context(cert_path, key_path)
    except (ValueError, OSError, ssl.SSLError):
        return False
    return True


def cert_for(cert_dir: str | None) -> tuple[Path, Path, bool]:
    """(certificate, key, generated now) in ``cert_dir`` (reused when still good), or in a
    new temporary folder when ``cert_dir`` is None."""
    if cert_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="rtproxy-replay-tls-"))
    else:
        folder = Path(cert_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if cert_dir is not None and _usable(cert_path, key_path):
        return cert_path, key_path, False
    self_signed(cert_path, key_path)
    return cert_path, key_path, True


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A TLS server context for the replay (HTTP/1.1 only: WebSocket upgrades)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
