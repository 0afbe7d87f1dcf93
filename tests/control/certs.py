"""Throw-away CA, server and client certificates for the mutual-TLS tests."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str,
          server: bool) -> tuple[bytes, bytes]:
    """(key PEM, cert PEM) signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca[1].subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(ca[0], hashes.SHA256())
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


def write_set(directory: Path) -> dict[str, Path]:
    """CA, server pair, a client pair from the CA and one from a stranger CA."""
    ca = make_ca("guacr test CA")
    stranger = make_ca("someone else")
    out: dict[str, Path] = {}
    files = {
        "ca": ca[1].public_bytes(serialization.Encoding.PEM),
    }
    files["server_key"], files["server_cert"] = issue(ca, "localhost", True)
    files["client_key"], files["client_cert"] = issue(ca, "operator", False)
    files["bad_key"], files["bad_cert"] = issue(stranger, "intruder", False)
    for name, data in files.items():
        out[name] = directory / f"{name}.pem"
        out[name].write_bytes(data)
    return out
