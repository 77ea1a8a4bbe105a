from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from featurekube._platform import pki

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_a_client_certificate_names_the_user_and_groups_and_is_signed_by_its_ca() -> None:
    ca = pki.new_authority("client-ca", NOW)

    pair = pki.issue_certificate(ca, "admin", NOW, organizations=("system:masters", "team-a"))

    cert = _load(pair.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    groups = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert groups == ["system:masters", "team-a"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_key = _load(ca.pair.cert_pem).public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(_load(ca.pair.cert_pem))


def test_a_serving_certificate_has_ip_and_dns_sans() -> None:
    ca = pki.new_authority("serving-ca", NOW)

    pair = pki.issue_certificate(
        ca, "kube-apiserver", NOW, hosts=("127.0.0.1", "localhost"), server=True
    )

    sans = (
        _load(pair.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]


def test_certificates_are_valid_now_and_for_a_long_while() -> None:
    ca = pki.new_authority("ca", NOW)
    cert = _load(pki.issue_certificate(ca, "u", NOW).cert_pem)

    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW >= dt.timedelta(days=300)


def test_the_service_account_key_is_rsa_with_a_matching_public_half() -> None:
    from cryptography.hazmat.primitives import serialization

    pair = pki.new_rsa_key()

    private = serialization.load_pem_private_key(pair.key_pem, password=None)
    public = serialization.load_pem_public_key(pair.cert_pem)
    assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
