"""TLS for Glade's gRPC APIs: development certificates and gRPC credentials.

:func:`create_dev_certificates` makes a private certificate authority and, signed by it, a
server certificate (for the SuperLink) and a client certificate (for SuperNodes under mutual
TLS). It is meant for development and closed test deployments; production deployments use
certificates from their organisation's CA. :func:`server_credentials` and
:func:`channel_credentials` read PEM files into gRPC credentials.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     certs = create_dev_certificates(Path(out), hostnames=["superlink.example"])
...     sorted(p.name for p in Path(out).iterdir())
['ca.key', 'ca.pem', 'client.key', 'client.pem', 'server.key', 'server.pem']
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from glade.errors import ConfigError

__all__ = [
    "DEFAULT_HOSTNAMES",
    "DevCertificates",
    "certificate_covers",
    "channel_credentials",
    "create_dev_certificates",
    "is_loopback",
    "server_credentials",
]

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
"""Names every development server certificate is valid for, next to the given ones."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DevCertificates:
    """Paths of the PEM files written by :func:`create_dev_certificates`."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    hostnames: tuple[str, ...]


def create_dev_certificates(
    out_dir: Path,
    *,
    hostnames: Sequence[str] = (),
    valid_days: int = 365,
    overwrite: bool = False,
) -> DevCertificates:
    """Write a development CA, a server and a client certificate (PEM) into ``out_dir``.

    The server certificate is valid for ``hostnames`` (DNS names or IP addresses) and
    :data:`DEFAULT_HOSTNAMES`. Private keys are written with 0600 permissions. Raises
    :class:`~glade.errors.ConfigError` if a file exists (unless ``overwrite``).
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    if valid_days <= 0:
        raise ConfigError(f"valid_days must be positive, got {valid_days}")
    names = tuple(dict.fromkeys([*hostnames, *DEFAULT_HOSTNAMES]))
    out = Path(out_dir)
    paths = {n: out / n for n in _FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"certificate files exist already: {', '.join(existing)}")
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(
        subject=f"Glade development CA {os.urandom(4).hex()}",
        key=ca_key,
        issuer=None,
        days=valid_days,
        ca=True,
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate(
        subject=names[0], key=server_key, issuer=(ca_cert, ca_key), days=valid_days, sans=names
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate(
        subject="Glade SuperNode", key=client_key, issuer=(ca_cert, ca_key), days=valid_days
    )
    for name, obj in (("ca", (ca_cert, ca_key)), ("server", (server_cert, server_key))):
        _write_pair(paths, name, *obj)
    _write_pair(paths, "client", client_cert, client_key)
    return DevCertificates(
        ca_cert=paths["ca.pem"],
        ca_key=paths["ca.key"],
        server_cert=paths["server.pem"],
        server_key=paths["server.key"],
        client_cert=paths["client.pem"],
        client_key=paths["client.key"],
        hostnames=names,
    )


_FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


def _certificate(
    *,
    subject: str,
    key: object,
    issuer: tuple[object, object] | None,
    days: int,
    ca: bool = False,
    sans: Sequence[str] = (),
) -> object:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, signing_key = issuer if issuer is not None else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name)  # type: ignore[attr-defined]
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    elif sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(sans)), critical=False)
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(eku, critical=False)
    else:
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        builder = builder.add_extension(eku, critical=False)
    return builder.sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]


def _sans(names: Sequence[str]) -> list[Any]:
    from cryptography import x509

    result: list[Any] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _write_pair(paths: dict[str, Path], name: str, cert: object, key: object) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]
    paths[f"{name}.pem"].write_bytes(pem)
    key_pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = paths[f"{name}.key"]
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    os.chmod(key_path, 0o600)


def _read(path: Path | str, what: str) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"the {what} {path} is not a PEM file")
    return data


def server_credentials(
    *, certfile: Path | str, keyfile: Path | str, ca_certfile: Path | str | None = None
) -> grpc.ServerCredentials:
    """Server TLS credentials; with ``ca_certfile``, clients must show a certificate it signed."""
    pair = (_read(keyfile, "TLS private key"), _read(certfile, "TLS certificate"))
    if ca_certfile is None:
        return grpc.ssl_server_credentials([pair])
    roots = _read(ca_certfile, "CA certificate")
    return grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=True)


def channel_credentials(
    *,
    root_certificates: Path | str,
    certfile: Path | str | None = None,
    keyfile: Path | str | None = None,
) -> grpc.ChannelCredentials:
    """Client TLS credentials trusting ``root_certificates``; a client certificate is optional."""
    if (certfile is None) != (keyfile is None):
        raise ConfigError("a client certificate needs both its certificate and its key file")
    roots = _read(root_certificates, "root certificates")
    if certfile is None or keyfile is None:
        return grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_read(keyfile, "TLS private key"),
        certificate_chain=_read(certfile, "TLS certificate"),
    )


def certificate_covers(certfile: Path | str, host: str) -> bool:
    """Whether the (first) certificate in ``certfile`` is valid for ``host`` (name or IP).

    Checks the subject alternative names (a ``*.`` wildcard covers one label), or the
    common name of a certificate without them. Raises :class:`~glade.errors.ConfigError`
    if the file is not a readable PEM certificate.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    data = _read(certfile, "TLS certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"the TLS certificate {certfile} cannot be read ({exc})") from None
    try:
        ip: Any = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        return host.lower() in (n.lower() for n in names)
    if ip is not None:
        return ip in sans.get_values_for_type(x509.IPAddress)
    return any(_name_matches(name, host) for name in sans.get_values_for_type(x509.DNSName))


def _name_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def is_loopback(address: str) -> bool:
    """True if ``address`` ("host:port") only listens on / reaches this machine."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
