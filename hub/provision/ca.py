"""The site certificate authority: a CA, server and client certificates, and the CRL.

EC P-256 keys (a certificate takes milliseconds to make, and a Pi Zero's TLS
handshake stays fast). Validity is long on purpose: an expired device
certificate silences a panic button, so certificates last
:data:`CERT_DAYS` and ``haven provision list`` shows each expiry. The CRL's
next update is set to the CA's own expiry: OpenSSL refuses *every* client
once a CRL is past its next update, which would be a site-wide outage.

Pure functions over PEM bytes; nothing here touches the disk.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Lifetime of the site CA, in days (~20 years).
CA_DAYS = 7300
#: Lifetime of a server or client certificate, in days (~10 years).
CERT_DAYS = 3650
#: Allowed clock skew for a fresh certificate: valid from this long ago, in seconds.
BACKDATE_S = 3600


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key (PEM), with its serial and expiry."""

    cert_pem: bytes
    key_pem: bytes
    serial: int
    not_after: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Haven"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def create_ca(site_name: str) -> Issued:
    """A self-signed CA for one site; only it may sign Haven certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    name = _name(f"Haven CA: {site_name}"[:64])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=BACKDATE_S))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key),
                  cert.serial_number, cert.not_valid_after_utc)


def _load_ca(ca_cert_pem: bytes, ca_key_pem: bytes):
    cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    return cert, key


def issue(ca_cert_pem: bytes, ca_key_pem: bytes, cn: str, *, server_names: tuple[str, ...] = (),
          days: int = CERT_DAYS) -> Issued:
    """A certificate with common name ``cn`` signed by the CA.

    With ``server_names`` (host names and IP addresses) it is a TLS server
    certificate for the broker, with those as subjectAltNames; without, a
    client certificate whose CN is the MQTT identity (device id or hub name).
    """
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(seconds=BACKDATE_S))
               .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_san(name) for name in server_names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key),
                  cert.serial_number, cert.not_valid_after_utc)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def crl(ca_cert_pem: bytes, ca_key_pem: bytes, revoked: dict[int, dt.datetime]) -> bytes:
    """The CRL (PEM) listing ``revoked`` serials (serial -> when revoked).

    Its next update is the CA's expiry, so it never goes stale on its own.
    """
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(seconds=BACKDATE_S))
               .next_update(ca_cert.not_valid_after_utc))
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def check_ca(ca_cert_pem: bytes, ca_key_pem: bytes) -> str | None:
    """``None`` when the key belongs to the certificate and it is a CA; else the problem."""
    try:
        cert, key = _load_ca(ca_cert_pem, ca_key_pem)
    except ValueError as exc:
        return f"cannot be read ({exc})"
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        return "ca.key does not belong to ca.crt"
    if cert.not_valid_after_utc <= _now():
        return f"the CA expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    return None
