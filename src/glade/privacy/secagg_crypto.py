"""The cryptographic primitives of SecAgg+ (all from the ``cryptography`` package).

- Key agreement: X25519, with the shared secret stretched by HKDF-SHA256 into a key.
- Authenticated encryption of shares: AES-256-GCM with a random 96-bit nonce and
  associated data naming the round, the sender and the receiver.
- Masks: a PRG (the ChaCha20 keystream of a 32-byte seed) read as uint64 words; masked
  vectors live in the ring of integers modulo 2**64, where NumPy's uint64 arithmetic wraps.
- Quantisation: floats clipped to ``[-r, r]`` and rounded to ``levels + 1`` integers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "glade.privacy needs the 'cryptography' package for SecAgg+: "
        f"pip install 'glade[privacy]'  (or: pip install cryptography) ({exc})"
    ) from exc

from glade.errors import RecordError

__all__ = [
    "KeyPair",
    "agree",
    "decrypt",
    "dequantize_mean",
    "encrypt",
    "expand_mask",
    "load_private",
    "quantize",
]

NDArray = np.ndarray[Any, Any]
KEY_BYTES = 32
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An X25519 key pair as raw bytes (32 each)."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        key = X25519PrivateKey.generate()
        return cls(key.private_bytes_raw(), key.public_key().public_bytes_raw())

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        key = X25519PrivateKey.from_private_bytes(private)
        return cls(private, key.public_key().public_bytes_raw())


def agree(private: bytes | X25519PrivateKey, peer_public: bytes, *, info: bytes) -> bytes:
    """A 32-byte key shared by the two ends: HKDF-SHA256 of the X25519 shared secret.

    ``info`` separates uses (an encryption key and a mask seed from the same pair differ).
    Pass a loaded key (:func:`load_private`) when agreeing with many peers: loading costs
    as much as the agreement itself.
    """
    try:
        key = load_private(private) if isinstance(private, bytes) else private
        shared = key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise RecordError(f"invalid X25519 key: {exc}") from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def load_private(private: bytes) -> X25519PrivateKey:
    """An X25519 private key object from its 32 raw bytes."""
    return X25519PrivateKey.from_private_bytes(private)


def encrypt(key: bytes, plaintext: bytes, *, associated_data: bytes) -> bytes:
    """AES-256-GCM: ``nonce || ciphertext || tag``."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, blob: bytes, *, associated_data: bytes) -> bytes:
    """Inverse of :func:`encrypt`; :class:`RecordError` if the blob was altered or misrouted."""
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data)
    except (InvalidTag, ValueError):
        raise RecordError("a SecAgg+ share failed authentication (altered or misrouted)") from None


def expand_mask(seed: bytes, size: int) -> NDArray:
    """``size`` pseudo-random uint64 words from a 32-byte ``seed`` (ChaCha20 keystream)."""
    if len(seed) != KEY_BYTES:
        raise ValueError(f"a mask seed is {KEY_BYTES} bytes, got {len(seed)}")
    encryptor = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * size))
    return np.frombuffer(stream, dtype="<u8")


def quantize(values: NDArray, *, clipping_range: float, levels: int) -> NDArray:
    """Map floats to integers ``0 .. levels``: clip to ``[-r, r]``, scale, round to nearest.

    The rounding error is at most ``r / levels`` per element.
    """
    clipped = np.clip(np.asarray(values, dtype=np.float64), -clipping_range, clipping_range)
    scaled = (clipped + clipping_range) * (levels / (2.0 * clipping_range))
    return np.rint(scaled).astype(np.uint64)


def dequantize_mean(
    total: NDArray, *, total_weight: int, clipping_range: float, levels: int
) -> NDArray:
    """The weighted mean of quantised vectors from their weighted sum ``total``.

    ``total = sum(w_i * quantize(v_i))`` (exact in uint64 while ``total_weight * levels <
    2**64``); returns ``sum(w_i * v_i) / total_weight`` within ``r / levels`` per element
    (for values inside ``[-r, r]``).
    """
    if total_weight <= 0:
        raise RecordError(f"the summed weight must be > 0, got {total_weight}")
    if total_weight * levels >= 2**64:
        raise RecordError(
            f"the summed weight {total_weight} times {levels} quantisation levels overflows "
            "the 2**64 ring; lower quantization_bits"
        )
    mean = total.astype(np.float64) / float(total_weight)
    result: NDArray = mean * (2.0 * clipping_range / levels) - clipping_range
    return result
