"""Certificates and keys for the local API server and its users; pure, no I/O.

The layout follows controller-runtime's envtest: one CA signs the API server's serving
certificate, a second CA signs client certificates (the API server trusts it with
``--client-ca-file``), and an RSA key pair signs service-account tokens. Users are
identified the way Kubernetes' x509 authenticator reads them: CN is the user name and
each O is a group.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "KeyPair", "issue_certificate", "new_authority", "new_rsa_key"]

# Long enough that a platform left running over a holiday still works.
_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A PEM-encoded certificate (or public key) and its private key."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA able to issue certificates."""

    pair: KeyPair
    _cert: x509.Certificate
    _key: ec.EllipticCurvePrivateKey


def _new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name(attrs)


def new_authority(common_name: str, now: dt.datetime) -> CertificateAuthority:
    """Make a self-signed CA valid from ``now``."""
    key = _new_ec_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
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
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
    return CertificateAuthority(pair, cert, key)


def issue_certificate(
    ca: CertificateAuthority,
    common_name: str,
    now: dt.datetime,
    *,
    organizations: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    server: bool = False,
    rsa_pkcs1: bool = False,
) -> KeyPair:
    """Issue a client (default) or serving certificate signed by ``ca``.

    ``hosts`` become subject alternative names: IP addresses as IP SANs (Python's ssl
    checks those, not DNS names, when connecting to 127.0.0.1), the rest as DNS names.
    With ``rsa_pkcs1`` the key is RSA in PKCS#1 PEM, for servers that read no other
    (the Spark Operator's webhook).
    """
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if rsa_pkcs1
        else _new_ec_key()
    )
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca._cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca._key, hashes.SHA256())
    key_pem = (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        if rsa_pkcs1
        else _key_pem(key)
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def new_rsa_key() -> KeyPair:
    """An RSA key pair for signing service-account tokens (public key in ``cert_pem``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(public, _key_pem(key))
