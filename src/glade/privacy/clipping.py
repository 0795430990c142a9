"""The math of central and local DP on model updates: pure NumPy, no I/O.

An *update* is what a node changed: its returned arrays minus the global arrays it was
sent, as a list of float64 arrays (one per named array). Norms are L2 norms over all the
arrays together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from glade.errors import ConfigError, RecordError
from glade.records import ArrayRecord

__all__ = [
    "CLIPPING_NORM",
    "NORM_BIT",
    "REPORT_NORM_BIT",
    "AdaptiveClipping",
    "ClippingPolicy",
    "FixedClipping",
    "add_gaussian_noise",
    "apply_update",
    "clip_update",
    "l2_norm",
    "mean_update",
    "next_clipping_norm",
    "update_noise_multiplier",
    "update_of",
]

NDArray = np.ndarray[Any, Any]

CLIPPING_NORM = "dp-clipping-norm"
"""Config (server -> node): clip the update to this L2 norm. Metric (node -> server): the
norm the node clipped to (proves the clipping mod ran). Metric of the train stage: the
clipping norm used in the round."""
REPORT_NORM_BIT = "dp-report-norm-bit"
"""Config (bool): the node must report :data:`NORM_BIT` (adaptive clipping)."""
NORM_BIT = "dp-norm-bit"
"""Metric (node -> server): 1 if the unclipped update norm was <= the clipping norm, else 0."""


def update_of(arrays: ArrayRecord, reference: ArrayRecord) -> list[NDArray]:
    """``arrays - reference`` per array, in ``reference``'s order, as float64."""
    if set(arrays) != set(reference):
        raise RecordError(
            f"the update's arrays {sorted(arrays)} differ from the global arrays "
            f"{sorted(reference)}"
        )
    parts = []
    for name, ref in reference.items():
        mine = arrays[name]
        if mine.shape != ref.shape:
            raise RecordError(f"array {name!r} has shape {mine.shape}, expected {ref.shape}")
        parts.append(mine.numpy().astype(np.float64) - ref.numpy().astype(np.float64))
    return parts


def apply_update(reference: ArrayRecord, update: Sequence[NDArray]) -> ArrayRecord:
    """``reference + update`` as a new record, each array in ``reference``'s dtype."""
    out = {}
    for (name, ref), delta in zip(reference.items(), update, strict=True):
        values = ref.numpy().astype(np.float64) + delta
        out[name] = values.astype(ref.numpy().dtype, copy=False)
    return ArrayRecord(out)


def l2_norm(update: Sequence[NDArray]) -> float:
    """The L2 norm of all the arrays of ``update`` taken together."""
    return math.sqrt(math.fsum(float(np.vdot(x, x)) for x in update))


def clip_update(update: Sequence[NDArray], clipping_norm: float) -> tuple[list[NDArray], float]:
    """``(update scaled to norm <= clipping_norm, its norm before clipping)``."""
    norm = l2_norm(update)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    return [x * scale for x in update], norm


def mean_update(updates: Sequence[Sequence[NDArray]]) -> list[NDArray]:
    """The unweighted mean of several updates (the quantity central DP protects)."""
    if not updates:
        raise ValueError("mean_update needs at least one update")
    total = [np.array(x, dtype=np.float64, copy=True) for x in updates[0]]
    for update in updates[1:]:
        for acc, x in zip(total, update, strict=True):
            acc += x
    return [acc / len(updates) for acc in total]


def add_gaussian_noise(
    update: Sequence[NDArray], std: float, rng: np.random.Generator
) -> list[NDArray]:
    """``update + N(0, std^2)`` elementwise (new arrays)."""
    if std == 0:
        return [np.array(x, copy=True) for x in update]
    return [x + rng.normal(0.0, std, size=np.shape(x)) for x in update]


def update_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
    """The noise multiplier left for the update when the clipped count is noised too.

    Adaptive clipping releases a noisy count of unclipped updates besides the noisy mean;
    with ``z_update = (z^-2 - (2 sigma_b)^-2)^-1/2`` the pair is as private as one Gaussian
    mechanism of multiplier ``z`` (Andrew et al., 2021, "Differentially private learning
    with adaptive clipping", Theorem 1).
    """
    if noise_multiplier == 0:
        return 0.0
    rest = noise_multiplier**-2 - (2.0 * clipped_count_stddev) ** -2
    if rest <= 0:
        raise ConfigError(
            f"clipped_count_stddev={clipped_count_stddev} is too small for "
            f"noise_multiplier={noise_multiplier}: it must exceed noise_multiplier / 2 "
            "(raise it, or lower the noise multiplier)"
        )
    return float(rest**-0.5)


def next_clipping_norm(
    clipping_norm: float,
    *,
    unclipped_fraction: float,
    target_quantile: float,
    learning_rate: float,
) -> float:
    """The geometric update ``C * exp(-lr * (b - gamma))`` of adaptive clipping.

    ``unclipped_fraction`` (b) is the (noisy) fraction of updates whose norm was at most
    ``C``; the norm shrinks when more than ``target_quantile`` (gamma) of them fit, grows
    when fewer do, and settles at the ``gamma`` quantile of the update norms.
    """
    return clipping_norm * math.exp(-learning_rate * (unclipped_fraction - target_quantile))


# -- clipping-norm policies --------------------------------------------------------------
class FixedClipping:
    """Clip every update to the same L2 norm ``norm``.

    >>> FixedClipping(0.5).norm
    0.5
    """

    reports_bits = False

    def __init__(self, norm: float) -> None:
        if not (norm > 0 and math.isfinite(norm)):
            raise ConfigError(f"the clipping norm must be a finite number > 0, got {norm}")
        self.norm = float(norm)

    def update_noise_multiplier(self, noise_multiplier: float, num_sampled: int) -> float:
        """The noise multiplier of the update (all of it: nothing else is released)."""
        return noise_multiplier

    def update(self, *, unclipped: int, count: int, rng: np.random.Generator) -> None:
        """Fixed: nothing to learn."""

    def __repr__(self) -> str:
        return f"FixedClipping({self.norm})"


class AdaptiveClipping:
    """Learn the clipping norm as the ``target_quantile`` of the update norms, privately.

    After each round the norm moves by ``C * exp(-learning_rate * (b - target_quantile))``
    where ``b`` is the fraction of updates that fitted, released with Gaussian noise of
    std ``clipped_count_stddev`` on the count (Andrew et al., 2021). The default std is
    ``n / 20`` for ``n`` sampled nodes, raised to the noise multiplier when that is larger
    (so the privacy split of :func:`update_noise_multiplier` stays valid; the update noise
    then grows by at most 16%). Holds the current norm: use one instance per run.

    >>> policy = AdaptiveClipping(initial_norm=0.1, target_quantile=0.5)
    >>> policy.norm
    0.1
    """

    reports_bits = True

    def __init__(
        self,
        *,
        initial_norm: float = 0.1,
        target_quantile: float = 0.5,
        learning_rate: float = 0.2,
        clipped_count_stddev: float | None = None,
    ) -> None:
        if not (initial_norm > 0 and math.isfinite(initial_norm)):
            raise ConfigError(f"initial_norm must be a finite number > 0, got {initial_norm}")
        if not 0 < target_quantile < 1:
            raise ConfigError(f"target_quantile must be in (0, 1), got {target_quantile}")
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {learning_rate}")
        if clipped_count_stddev is not None and not clipped_count_stddev > 0:
            raise ConfigError(f"clipped_count_stddev must be > 0, got {clipped_count_stddev}")
        self.norm = float(initial_norm)
        self.target_quantile = float(target_quantile)
        self.learning_rate = float(learning_rate)
        self.clipped_count_stddev = clipped_count_stddev
        self._stddev = 0.0

    def update_noise_multiplier(self, noise_multiplier: float, num_sampled: int) -> float:
        """Fix this round's count noise and return what is left for the update."""
        stddev = self.clipped_count_stddev
        if stddev is None:
            stddev = max(num_sampled / 20.0, noise_multiplier)
        self._stddev = stddev
        return update_noise_multiplier(noise_multiplier, stddev)

    def update(self, *, unclipped: int, count: int, rng: np.random.Generator) -> None:
        """Move the norm towards the target quantile from a noisy unclipped count."""
        if count == 0:
            return
        noisy = (unclipped + rng.normal(0.0, self._stddev)) / count
        self.norm = next_clipping_norm(
            self.norm,
            unclipped_fraction=noisy,
            target_quantile=self.target_quantile,
            learning_rate=self.learning_rate,
        )

    def __repr__(self) -> str:
        return (
            f"AdaptiveClipping(norm={self.norm:g}, target_quantile={self.target_quantile}, "
            f"learning_rate={self.learning_rate}, "
            f"clipped_count_stddev={self.clipped_count_stddev})"
        )


ClippingPolicy = FixedClipping | AdaptiveClipping
