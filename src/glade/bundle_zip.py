"""Reading the members of an app bundle's zip safely: the manifest, the publisher's signature,
member names, and members hashed and counted against a size budget as they are read (used by
:mod:`glade.bundle`)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from glade import digest
from glade.bundle_policy import SIGNATURE_NAME, BundleSignature
from glade.errors import LimitExceededError, SerdeError
from glade.keypairs import PublicKey

__all__ = [
    "MANIFEST_NAME",
    "check_id",
    "check_name",
    "checked_blocks",
    "manifest_bytes",
    "open_zip",
    "signer",
]

MANIFEST_NAME = "glade-manifest.json"
READ_BLOCK = 1 << 20


def open_zip(source: bytes | str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SerdeError(f"bad app bundle: not a readable zip file ({exc})") from None


def manifest_bytes(zf: zipfile.ZipFile) -> bytes:
    try:
        return zf.read(MANIFEST_NAME)
    except KeyError:
        raise SerdeError(
            f"bad app bundle: no {MANIFEST_NAME} (build bundles with 'glade build')"
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise SerdeError(f"bad app bundle: {MANIFEST_NAME} cannot be read ({exc})") from None


def signer(zf: zipfile.ZipFile, manifest: bytes) -> PublicKey | None:
    try:
        raw = zf.read(SIGNATURE_NAME)
    except KeyError:
        return None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise SerdeError(f"bad app bundle: {SIGNATURE_NAME} cannot be read ({exc})") from None
    signature = BundleSignature.from_json(raw)
    if not signature.verify(manifest):
        raise SerdeError(
            "bad app bundle: its publisher signature does not match its manifest (the "
            f"bundle was altered after signing, or the signature is forged; key "
            f"{signature.public_key.fingerprint})"
        )
    return signature.public_key


def check_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    parts = PurePosixPath(name).parts
    if (
        not parts
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("..", ".") for p in parts)
        or parts[0].endswith(":")
        or "//" in name
    ):
        raise SerdeError(f"bad app bundle: unsafe path {name!r}")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise SerdeError(f"bad app bundle: {name!r} is a symbolic link")
    return name


def checked_blocks(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, expected: str, budget: list[int]
) -> Iterator[bytes]:
    """The member's bytes in blocks; counted against ``budget`` and hashed as they come."""
    hasher = hashlib.sha256()
    try:
        with zf.open(info) as member:
            while block := member.read(READ_BLOCK):
                budget[0] -= len(block)
                if budget[0] < 0:
                    raise LimitExceededError(
                        "app bundle refused: its files are larger than allowed (--max-bundle-size)"
                    )
                hasher.update(block)
                yield block
    except LimitExceededError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise SerdeError(f"bad app bundle: {info.filename!r} cannot be read ({exc})") from None
    if hasher.hexdigest() != expected:
        raise SerdeError(
            f"bad app bundle: {info.filename!r} does not match its sha256 in the manifest"
        )


def check_id(source: bytes | str | Path, bundle_id: str) -> None:
    hasher = digest.hasher()
    if isinstance(source, bytes):
        hasher.update(source)
    else:
        with open(source, "rb") as f:
            while block := f.read(READ_BLOCK):
                hasher.update(block)
    if hasher.hexdigest() != bundle_id:
        raise SerdeError(
            f"bad app bundle: its content id (blake3) is {hasher.hexdigest()}, not the bundle id "
            f"{bundle_id}"
        )
