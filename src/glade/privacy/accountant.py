"""Privacy accounting: how much (epsilon, delta) a run of noisy rounds has spent.

:class:`PrivacyAccountant` composes one (subsampled) Gaussian mechanism per round with the
Renyi-DP accountant of Google's ``dp-accounting`` package (an optional extra:
``pip install 'glade[privacy]'``). :func:`gaussian_sigma` calibrates the noise of a single
Gaussian mechanism exactly (Balle & Wang, 2018), with no extra dependency.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from glade.errors import ConfigError

__all__ = ["PrivacyAccountant", "compute_epsilon", "gaussian_delta", "gaussian_sigma"]

INSTALL_HINT = (
    "privacy accounting needs the 'dp-accounting' package: "
    "pip install 'glade[privacy]'  (or: pip install dp-accounting)"
)


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return dp_accounting


class _DropUnconvergedOrders(logging.Filter):
    """dp-accounting logs a warning for each fractional RDP order it cannot evaluate and then
    leaves that order out by itself; the warning says nothing a Glade user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in record.getMessage()


@contextmanager
def _quiet_orders() -> Iterator[None]:
    absl_logger, quiet = logging.getLogger("absl"), _DropUnconvergedOrders()
    absl_logger.addFilter(quiet)
    try:
        yield
    finally:
        absl_logger.removeFilter(quiet)


def _check_probability(name: str, value: float, *, low_open: bool = True) -> float:
    value = float(value)
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ConfigError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")
    return value


class PrivacyAccountant:
    """Tracks the (epsilon, delta) spent by repeated Gaussian-mechanism rounds (Renyi DP).

    Each :meth:`step` adds one round in which a fraction ``sampling_rate`` of the nodes
    took part and the aggregate got Gaussian noise of ``noise_multiplier`` times its
    sensitivity. Sampling is accounted as Poisson sampling at that rate (the usual
    approximation for sampling a fixed number of nodes); a rate of 1 is the plain
    Gaussian mechanism. :attr:`epsilon` converts the composed RDP curve to
    (epsilon, ``delta``)-DP.

    >>> accountant = PrivacyAccountant(noise_multiplier=1.0, delta=1e-5)  # doctest: +SKIP
    >>> accountant.step(sampling_rate=0.1)  # doctest: +SKIP
    >>> round(accountant.epsilon, 2)  # doctest: +SKIP
    2.13
    """

    def __init__(self, *, noise_multiplier: float, delta: float) -> None:
        dpa = _dp_accounting()
        if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
            raise ConfigError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        self.noise_multiplier = float(noise_multiplier)
        self.delta = _check_probability("delta", delta)
        if self.delta >= 1:
            raise ConfigError(f"delta must be < 1, got {delta}")
        self.rounds = 0
        self._dpa = dpa
        self._orders: Any = None
        self._rdp: Any = None  # the composed RDP curve, one value per order
        self._per_round: dict[float, Any] = {}  # sampling rate -> RDP curve of one round

    def step(self, *, sampling_rate: float, rounds: int = 1) -> None:
        """Account for ``rounds`` more rounds at ``sampling_rate`` (fraction of nodes sampled)."""
        rate = _check_probability("sampling_rate", sampling_rate, low_open=False)
        if rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {rounds}")
        if rounds == 0 or rate == 0:
            return
        self.rounds += rounds
        if self.noise_multiplier == 0:
            return
        curve = self._curve(rate)
        self._rdp = rounds * curve if self._rdp is None else self._rdp + rounds * curve

    def _curve(self, rate: float) -> Any:
        """The RDP curve of one round at ``rate`` (computed once per rate: it is costly)."""
        if rate not in self._per_round:
            event = self._dpa.GaussianDpEvent(self.noise_multiplier)
            if rate < 1:
                event = self._dpa.PoissonSampledDpEvent(rate, event)
            accountant = self._dpa.rdp.RdpAccountant()
            with _quiet_orders():
                accountant.compose(event)
            self._orders = accountant.orders
            self._per_round[rate] = accountant.rdp
        return self._per_round[rate]

    @property
    def epsilon(self) -> float:
        """The epsilon spent so far at :attr:`delta` (``inf`` without noise, 0 before any round)."""
        if self.rounds == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        eps, _ = self._dpa.rdp.compute_epsilon(self._orders, self._rdp, self.delta)
        return float(eps)

    def __repr__(self) -> str:
        return (
            f"PrivacyAccountant(noise_multiplier={self.noise_multiplier}, delta={self.delta}, "
            f"rounds={self.rounds})"
        )


def compute_epsilon(
    *, noise_multiplier: float, sampling_rate: float, rounds: int, delta: float
) -> float:
    """The epsilon of ``rounds`` rounds at a fixed sampling rate: for planning a run.

    >>> compute_epsilon(noise_multiplier=1.0, sampling_rate=0.1, rounds=100,
    ...                 delta=1e-5)  # doctest: +SKIP
    7.9...
    """
    accountant = PrivacyAccountant(noise_multiplier=noise_multiplier, delta=delta)
    accountant.step(sampling_rate=sampling_rate, rounds=rounds)
    return accountant.epsilon


def _phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gaussian_delta(*, sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The smallest delta for which ``f(x) + N(0, sigma^2)`` is (epsilon, delta)-DP.

    Exact for a function of L2 ``sensitivity`` (Balle & Wang 2018, Theorem 8):
    ``delta = Phi(D/(2s) - e*s/D) - exp(e) * Phi(-D/(2s) - e*s/D)``.
    """
    if sigma <= 0:
        return 1.0
    a, b = sensitivity / (2.0 * sigma), epsilon * sigma / sensitivity
    tail = _phi(-a - b)
    second = 0.0 if tail == 0.0 else math.exp(epsilon + math.log(tail))
    return max(0.0, _phi(a - b) - second)


def gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest noise std that makes one Gaussian mechanism (epsilon, delta)-DP.

    Inverts :func:`gaussian_delta` by bisection (relative precision 1e-9).

    >>> round(gaussian_sigma(epsilon=1.0, delta=1e-5), 3)
    3.731
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a finite number > 0, got {epsilon}")
    _check_probability("delta", delta)
    if delta >= 1:
        raise ConfigError(f"delta must be < 1, got {delta}")
    if not sensitivity > 0:
        raise ConfigError(f"sensitivity must be > 0, got {sensitivity}")
    low, high = 0.0, sensitivity
    while gaussian_delta(sigma=high, epsilon=epsilon, sensitivity=sensitivity) > delta:
        low, high = high, 2.0 * high
    while high - low > 1e-9 * high:
        mid = 0.5 * (low + high)
        if gaussian_delta(sigma=mid, epsilon=epsilon, sensitivity=sensitivity) > delta:
            low = mid
        else:
            high = mid
    return high
