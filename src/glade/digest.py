"""Content addresses: every stored or transferred object is named by the BLAKE3 digest of its
bytes, written as 64 lowercase hex characters.

BLAKE3 is a cryptographic hash (256-bit, collision resistant like SHA-256) that runs about
3.5x faster than SHA-256 on one core here (4.3 vs 1.2 GB/s, with SHA extensions), so hashing a
model on the way in and out of the object store no longer dominates a large-model round.
App bundles keep SHA-256 in their manifests (a published, long-lived format).

>>> content_id(b"abc")[:16]
'6437b3ac38465133'
>>> h = hasher()
>>> _ = h.update(b"a"), h.update(b"bc")
>>> h.hexdigest() == content_id(b"abc")
True
"""

from __future__ import annotations

from typing import Protocol

import blake3

ALGORITHM = "blake3"
"""Name of the content hash, as error messages and file formats spell it."""


class Hasher(Protocol):
    """An incremental hash: ``update`` any number of times, then ``hexdigest``."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def hasher() -> Hasher:
    """A new incremental content hasher (lets go of the GIL while it hashes)."""
    return blake3.blake3()


def content_id(data: bytes | bytearray | memoryview) -> str:
    """The content address of ``data``: its BLAKE3 digest in hex."""
    return blake3.blake3(data).hexdigest()
