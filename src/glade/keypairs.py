"""Ed25519 key pairs: SuperNode identities and app-bundle publisher keys.

One format everywhere, readable by people and by OpenSSH tooling:

- the private key is a PKCS#8 PEM file written with permissions 0600 (``NAME.key``);
- the public key is one OpenSSH line ``ssh-ed25519 AAAA... comment`` (``NAME.pub``), the
  string an administrator pastes into ``glade node add`` or a trusted-publishers file.

>>> key = PrivateKey.generate()
>>> public = PublicKey.parse(key.public_key.to_openssh("hospital-a"))
>>> public == key.public_key and public.verify(key.sign(b"hello"), b"hello")
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from glade.errors import ConfigError
from glade.files import write_atomic

__all__ = ["PrivateKey", "PublicKey", "create_key_pair", "read_public_keys"]

_OPENSSH_TYPE = "ssh-ed25519"
_RAW_SIZE = 32


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key (its 32 raw bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != _RAW_SIZE:
            raise ConfigError(f"an Ed25519 public key has {_RAW_SIZE} bytes, got {self.raw!r}")

    @classmethod
    def parse(cls, text: str | bytes) -> PublicKey:
        """From an OpenSSH line, a PEM block or base64 of the 32 raw bytes."""
        value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        value = value.strip()
        try:
            if value.startswith("-----BEGIN"):
                loaded = serialization.load_pem_public_key(value.encode())
                if not isinstance(loaded, Ed25519PublicKey):
                    raise ValueError("not an Ed25519 key")
                return cls(loaded.public_bytes_raw())
            if value.startswith(_OPENSSH_TYPE):
                return cls(_openssh_raw(value.split()[1]))
            return cls(base64.b64decode(value, validate=True))
        except (ValueError, IndexError, binascii.Error, ConfigError) as exc:
            shown = value if len(value) < 80 else value[:77] + "..."
            raise ConfigError(
                f"not an Ed25519 public key: {shown!r} ({exc}); give the line of a .pub file "
                "made by 'glade keys create' (ssh-ed25519 AAAA...)"
            ) from None

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> PublicKey:
        """The (first) public key in a file."""
        keys = read_public_keys(path)
        if not keys:
            raise ConfigError(f"{path}: no public key in the file")
        return keys[0]

    def to_openssh(self, comment: str = "") -> str:
        """``ssh-ed25519 AAAA... comment`` (no newline)."""
        blob = _pack(_OPENSSH_TYPE.encode()) + _pack(self.raw)
        line = f"{_OPENSSH_TYPE} {base64.b64encode(blob).decode()}"
        return f"{line} {comment}".rstrip()

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as OpenSSH prints it (``ssh-keygen -lf``)."""
        blob = _pack(_OPENSSH_TYPE.encode()) + _pack(self.raw)
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True


class PrivateKey:
    """An Ed25519 private key: signs; :attr:`public_key` verifies."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> PrivateKey:
        """Load a PEM private key file (as written by :func:`create_key_pair`)."""
        file = Path(path)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the private key {file}: {exc.strerror or exc}; "
                "make one with 'glade keys create --out DIR'"
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{file} is not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{file} holds a {type(key).__name__}, Glade needs an Ed25519 key")
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the PEM file with permissions 0600 (atomically)."""
        target = write_atomic(path, self.to_pem())
        os.chmod(target, 0o600)
        return target


def create_key_pair(
    out_dir: str | os.PathLike[str], name: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0600) and ``NAME.pub`` into ``out_dir``; returns both paths."""
    folder = Path(out_dir)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{', '.join(existing)} exist(s): keep the old key (a node's identity) or pass "
            "--overwrite to replace it"
        )
    key = PrivateKey.generate()
    key.write(private)
    write_atomic(public, (key.public_key.to_openssh(name) + "\n").encode())
    return private, public


def read_public_keys(path: str | os.PathLike[str]) -> list[PublicKey]:
    """The public keys in a file: one per line; blank lines and ``#`` comments are skipped."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read public keys from {file}: {exc}") from None
    if "-----BEGIN" in text:
        return [PublicKey.parse(text)]
    lines = (line.strip() for line in text.splitlines())
    return [PublicKey.parse(line) for line in lines if line and not line.startswith("#")]


def _pack(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _openssh_raw(b64: str) -> bytes:
    blob = base64.b64decode(b64, validate=True)
    (n,) = struct.unpack(">I", blob[:4])
    kind, rest = blob[4 : 4 + n], blob[4 + n :]
    if kind != _OPENSSH_TYPE.encode():
        raise ValueError(f"key type {kind.decode(errors='replace')!r}, not ssh-ed25519")
    (m,) = struct.unpack(">I", rest[:4])
    raw = rest[4 : 4 + m]
    if m != _RAW_SIZE or len(raw) != _RAW_SIZE:
        raise ValueError("truncated ssh-ed25519 key")
    return raw
