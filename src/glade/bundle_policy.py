"""What an app bundle may hold and who must have signed it: `BundlePolicy`, `BundleSignature`.

A SuperLink and each SuperNode check every bundle against their own policy (flags
``--max-bundle-size``, ``--bundle-file-types`` and, on SuperNodes, ``--trusted-publishers``);
``glade build`` and ``glade run`` check the project against the defaults first, so that a
bundle a server would refuse fails early, naming the file.

File types are entries such as ``.py`` (a name ending so: the suffix, or a whole dot-file
name such as ``.gitignore``) or ``LICENSE`` (that exact file name); matching ignores case.
``None`` (``--bundle-file-types '*'``) allows any type.

>>> policy = BundlePolicy()
>>> policy.allows("my_app/task.py"), policy.allows("weights.bin")
(True, False)
>>> format_size(parse_size("100MiB"))
'100 MiB'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from glade.errors import AccessDeniedError, ConfigError, LimitExceededError, SerdeError
from glade.keypairs import PrivateKey, PublicKey

__all__ = [
    "ANY_FILE_TYPE",
    "DEFAULT_FILE_TYPES",
    "DEFAULT_MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_BYTES",
    "SIGNATURE_NAME",
    "BundlePolicy",
    "BundleSignature",
    "format_size",
    "parse_file_types",
    "parse_size",
]

MAX_BUNDLE_BYTES = 1 << 30
"""Hard ceiling of a bundle's files (uncompressed): no policy allows more."""
DEFAULT_MAX_BUNDLE_BYTES = 100 << 20
"""Default cap of a bundle's files (uncompressed): code and configuration, not data."""
DEFAULT_FILE_TYPES = (
    ".py",
    ".pyi",
    ".toml",
    ".md",
    ".rst",
    ".txt",
    ".json",
    ".yaml",
    ".yml",
    ".cfg",
    ".ini",
    ".gitignore",
    "py.typed",
    "LICENSE",
)
"""File types a bundle may hold by default: source, configuration and documentation."""
ANY_FILE_TYPE = "*"

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
_SIGNED_CONTEXT = b"glade app bundle manifest v1\n"  # what is signed: this + the manifest
SIGNATURE_NAME = "glade-signature.json"
"""The bundle member holding the publisher's :class:`BundleSignature` (outside the manifest)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BundlePolicy:
    """Size cap, allowed file types and trusted publishers (None: signatures optional).

    A present signature is always checked; with ``trusted_publishers`` a bundle must also
    be signed by one of those keys.
    """

    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    file_types: tuple[str, ...] | None = DEFAULT_FILE_TYPES
    trusted_publishers: tuple[PublicKey, ...] | None = None

    def __post_init__(self) -> None:
        ok = isinstance(self.max_bytes, int) and not isinstance(self.max_bytes, bool)
        if not ok or not 0 < self.max_bytes <= MAX_BUNDLE_BYTES:
            raise ConfigError(
                f"the bundle size cap must be between 1 byte and {format_size(MAX_BUNDLE_BYTES)}"
                f", got {self.max_bytes!r}"
            )
        if self.file_types is not None:
            types = tuple(dict.fromkeys(_file_type(t) for t in self.file_types))
            if not types:
                raise ConfigError("the list of allowed bundle file types is empty")
            object.__setattr__(self, "file_types", types)
        if self.trusted_publishers is not None:
            keys = tuple(self.trusted_publishers)
            if not keys or not all(isinstance(k, PublicKey) for k in keys):
                raise ConfigError("trusted publishers must be one or more Ed25519 public keys")
            object.__setattr__(self, "trusted_publishers", keys)

    @classmethod
    def unrestricted(cls) -> BundlePolicy:
        """Only the hard limits: any file type, :data:`MAX_BUNDLE_BYTES`, no signature needed."""
        return cls(max_bytes=MAX_BUNDLE_BYTES, file_types=None)

    @classmethod
    def for_project(cls, pyproject: Mapping[str, Any], *, where: str) -> BundlePolicy:
        """What ``glade build``/``glade run`` check a project against before sending it.

        The defaults, widened by the project's ``[tool.glade.bundle]`` table:
        ``extra-file-types = [".onnx"]``, ``max-size = "200MB"`` (for SuperLinks and
        SuperNodes configured to accept them). ``where`` names the pyproject in errors.
        """
        table = pyproject.get("tool", {}).get("glade", {}).get("bundle", {})
        where = f"[tool.glade.bundle] in {where}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(table) - {"extra-file-types", "max-size"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; use extra-file-types, max-size")
        types = DEFAULT_FILE_TYPES
        extra = table.get("extra-file-types", [])
        if not isinstance(extra, list) or not all(isinstance(e, str) for e in extra):
            raise ConfigError(f'{where}: extra-file-types must be a list such as [".onnx"]')
        added = parse_file_types(extra) if extra else ()
        size = table.get("max-size", DEFAULT_MAX_BUNDLE_BYTES)
        if not isinstance(size, str | int) or isinstance(size, bool):
            raise ConfigError(f'{where}: max-size must be bytes or a size such as "200MB"')
        try:
            return cls(
                max_bytes=parse_size(size),
                file_types=None if added is None else (*types, *added),
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def allows(self, name: str) -> bool:
        """Whether the bundle member ``name`` (a posix path) has an allowed file type."""
        if self.file_types is None:
            return True
        base = PurePosixPath(name).name.lower()
        return any(base.endswith(t) if t.startswith(".") else base == t for t in self.file_types)

    def first_disallowed(self, names: Iterable[str]) -> str | None:
        """The first of ``names`` whose type is not allowed (None: all are)."""
        return next((name for name in names if not self.allows(name)), None)

    def describe_types(self) -> str:
        """The allowed types for messages: ``.py, .toml, ...`` or ``any``."""
        return "any" if self.file_types is None else ", ".join(self.file_types)

    def check_members(self, sizes: Mapping[str, int]) -> None:
        """Check a bundle's file types and (declared) sizes: ``{name: bytes}``.

        Raises :class:`~glade.errors.SerdeError` naming a file of a type not allowed, or
        :class:`~glade.errors.LimitExceededError` if the files are too large together.
        """
        bad = self.first_disallowed(sizes)
        if bad is not None:
            raise SerdeError(
                f"app bundle refused: {bad!r} is not an allowed file type "
                f"(--bundle-file-types: {self.describe_types()})"
            )
        total = sum(sizes.values())
        if total > self.max_bytes:
            largest = max(sizes, key=lambda name: sizes[name])
            raise LimitExceededError(
                f"app bundle refused: its files hold {format_size(total)}, more than the "
                f"{format_size(self.max_bytes)} allowed by --max-bundle-size (the largest is "
                f"{largest!r}, {format_size(sizes[largest])})"
            )

    def check_signer(self, signer: PublicKey | None) -> None:
        """With trusted publishers, a bundle signed by another key (or by none) is refused.

        ``signer`` is the key whose signature of the manifest was verified (None: unsigned).
        Raises :class:`~glade.errors.AccessDeniedError`.
        """
        if self.trusted_publishers is None:
            return
        if signer is None:
            raise AccessDeniedError(
                "app bundle refused: it is not signed, and this node only runs bundles signed "
                "by a key in its --trusted-publishers; sign it with 'glade run --sign-key KEY' "
                "(or 'glade build --sign-key KEY')"
            )
        if signer not in self.trusted_publishers:
            raise AccessDeniedError(
                f"app bundle refused: it is signed by {signer.fingerprint}, which is not in "
                "this node's --trusted-publishers"
            )

    @property
    def cache_key(self) -> str:
        """A short digest of the policy: bundles checked under another policy are rechecked."""
        document = {
            "max_bytes": self.max_bytes,
            "file_types": self.file_types,
            "trusted": sorted(k.to_openssh() for k in self.trusted_publishers or ()),
        }
        raw = json.dumps(document, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class BundleSignature:
    """A publisher's Ed25519 signature of a manifest's bytes, with the publisher's key.

    >>> key = PrivateKey.generate()
    >>> signature = BundleSignature.sign(key, b"manifest")
    >>> signature.verify(b"manifest"), signature.verify(b"other")
    (True, False)
    """

    public_key: PublicKey
    signature: bytes

    @classmethod
    def sign(cls, key: PrivateKey, manifest: bytes) -> BundleSignature:
        return cls(key.public_key, key.sign(_SIGNED_CONTEXT + manifest))

    def verify(self, manifest: bytes) -> bool:
        """Whether this is the signature of ``manifest`` by :attr:`public_key`."""
        return self.public_key.verify(self.signature, _SIGNED_CONTEXT + manifest)

    def to_json(self) -> bytes:
        document = {
            "format": 1,
            "algorithm": "ed25519",
            "public_key": self.public_key.to_openssh(),
            "signature": base64.b64encode(self.signature).decode(),
        }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> BundleSignature:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("algorithm") != "ed25519":
                raise ValueError("expected an ed25519 signature object")
            key = PublicKey.parse(str(doc["public_key"]))
            raw = base64.b64decode(str(doc["signature"]), validate=True)
        except (ValueError, KeyError, UnicodeDecodeError, binascii.Error, ConfigError) as exc:
            raise SerdeError(f"bad app bundle: {SIGNATURE_NAME} cannot be read ({exc})") from None
        return cls(key, raw)


def _file_type(entry: object) -> str:
    if not isinstance(entry, str) or not entry.strip() or "/" in entry:
        raise ConfigError(
            f"bad bundle file type {entry!r}: give suffixes such as .py or whole file names "
            "such as LICENSE"
        )
    return entry.strip().lower()


def parse_file_types(text: str | Iterable[str]) -> tuple[str, ...] | None:
    """``".py,.toml LICENSE"`` -> ``('.py', '.toml', 'LICENSE')``; ``"*"`` -> None (any)."""
    items = re.split(r"[,\s]+", text) if isinstance(text, str) else list(text)
    entries = [i.strip() for i in items if i and i.strip()]
    if entries == [ANY_FILE_TYPE]:
        return None
    if ANY_FILE_TYPE in entries:
        raise ConfigError("'*' (any file type) cannot be combined with other file types")
    if not entries:
        raise ConfigError("give at least one bundle file type (e.g. '.py,.toml'), or '*'")
    return tuple(entries)


def parse_size(text: str | int) -> int:
    """``"100MB"`` -> 100000000, ``"1GiB"`` -> 1073741824, ``"2048"`` -> 2048 (bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _SIZE.fullmatch(str(text))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ConfigError(
                f"bad size {text!r}: give bytes or a number with a unit, e.g. 100MB or 1GiB"
            )
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"a size must be positive, got {text!r}")
    return value


def format_size(n: int) -> str:
    """``104857600`` -> ``'100 MiB'``; ``1500`` -> ``'1.5 KiB'``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
