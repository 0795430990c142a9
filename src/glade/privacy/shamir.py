"""Shamir secret sharing over the prime field GF(2**521 - 1).

A secret of up to 64 bytes is the constant term of a random polynomial of degree
``threshold - 1``; share ``x`` is the polynomial's value at ``x`` (``x = 1, 2, ...``). Any
``threshold`` shares give the secret back by Lagrange interpolation at 0; fewer give no
information about it (every secret is equally likely).

>>> shares = split_secret(b"a 32-byte seed..................", num_shares=5, threshold=3)
>>> combine_shares(shares[1:4], size=32)
b'a 32-byte seed..................'
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from glade.errors import RecordError

__all__ = ["PRIME", "Share", "combine_shares", "split_secret"]

PRIME = 2**521 - 1
"""The field modulus: a Mersenne prime above 2**512, so a 64-byte secret is one element."""
_Y_BYTES = (PRIME.bit_length() + 7) // 8  # 66
_X_BYTES = 2
MAX_SECRET_BYTES = 64
MAX_SHARES = 2 ** (8 * _X_BYTES) - 1


@dataclass(frozen=True, slots=True)
class Share:
    """One point ``(x, y)`` of the sharing polynomial (``1 <= x``, ``0 <= y < PRIME``)."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not 1 <= self.x <= MAX_SHARES:
            raise RecordError(f"share x must be in [1, {MAX_SHARES}], got {self.x}")
        if not 0 <= self.y < PRIME:
            raise RecordError("share y is outside the field")

    def to_bytes(self) -> bytes:
        """A fixed-size encoding (68 bytes)."""
        return self.x.to_bytes(_X_BYTES, "big") + self.y.to_bytes(_Y_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        if len(data) != _X_BYTES + _Y_BYTES:
            raise RecordError(f"a share is {_X_BYTES + _Y_BYTES} bytes, got {len(data)}")
        return cls(int.from_bytes(data[:_X_BYTES], "big"), int.from_bytes(data[_X_BYTES:], "big"))


def split_secret(secret: bytes, *, num_shares: int, threshold: int) -> list[Share]:
    """Split ``secret`` into ``num_shares`` shares, any ``threshold`` of which recover it.

    Shares are returned for ``x = 1 .. num_shares`` in that order. The coefficients come
    from the operating system's CSPRNG.
    """
    if len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret holds at most {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= num_shares <= MAX_SHARES:
        raise ValueError(
            f"need 1 <= threshold <= num_shares <= {MAX_SHARES}, "
            f"got threshold={threshold}, num_shares={num_shares}"
        )
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return [Share(x, _evaluate(coefficients, x)) for x in range(1, num_shares + 1)]


def combine_shares(shares: Sequence[Share], *, size: int) -> bytes:
    """The ``size``-byte secret interpolated from ``shares`` (at least ``threshold`` of them).

    With fewer shares than the threshold the result is a wrong secret, not an error: the
    caller must know the threshold. Duplicate ``x`` values raise :class:`RecordError`.
    """
    if not shares:
        raise RecordError("combine_shares needs at least one share")
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise RecordError(f"shares have duplicate x values: {sorted(xs)}")
    secret = 0
    for j, share in enumerate(shares):
        numerator, denominator = 1, 1
        for m, other in enumerate(xs):
            if m != j:
                numerator = numerator * other % PRIME
                denominator = denominator * (other - share.x) % PRIME
        secret = (secret + share.y * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * size):
        raise RecordError(f"the shares do not combine into a {size}-byte secret")
    return secret.to_bytes(size, "big")


def _evaluate(coefficients: list[int], x: int) -> int:
    """Horner's rule: ``sum(c_i * x**i) mod PRIME``."""
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % PRIME
    return value
