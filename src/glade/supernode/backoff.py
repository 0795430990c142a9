"""`Backoff`: exponential delays with jitter between attempts to reach the SuperLink."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, each drawn from its upper half.

    The jitter (a delay is uniform in ``[d/2, d]``) spreads the reconnects of many nodes
    after an outage instead of letting them hit the SuperLink in step.

    >>> backoff = Backoff(initial=1.0, maximum=4.0, rng=random.Random(0))
    >>> [round(backoff.next(), 2) for _ in range(4)]
    [0.92, 1.76, 2.84, 2.52]
    >>> backoff.reset(); backoff.attempts
    0
    """

    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial <= maximum or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self._initial = initial
        self._maximum = maximum
        self._factor = factor
        self._rng = rng or random.Random()
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt (seconds); each call counts one failure."""
        ceiling = min(self._maximum, self._initial * self._factor**self.attempts)
        self.attempts += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        """An attempt succeeded: start from the shortest delay again."""
        self.attempts = 0
