"""Client mods for differential privacy: clipping for central DP, clip-and-noise for local DP.

Both act on ``train`` replies only: the update is the reply's arrays minus the arrays the
instruction carried. Put them after (inside) :func:`~glade.privacy.secaggplus_mod` in the
``mods`` list, so that the update is clipped before it is masked.
"""

from __future__ import annotations

import math

import numpy as np

from glade.client.app import CallNext
from glade.context import Context
from glade.errors import ConfigError, RecordError
from glade.keys import ARRAYS, CONFIG, METRICS
from glade.message import Message, MessageType
from glade.privacy.accountant import gaussian_sigma
from glade.privacy.clipping import (
    CLIPPING_NORM,
    NORM_BIT,
    REPORT_NORM_BIT,
    add_gaussian_noise,
    apply_update,
    clip_update,
    update_of,
)
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

__all__ = ["LDP_DELTA", "LDP_EPSILON", "LocalDpMod", "dp_clipping_mod"]

LDP_EPSILON = "ldp-epsilon"
"""Train metric (node -> server): the epsilon of this round's local-DP release."""
LDP_DELTA = "ldp-delta"
"""Train metric (node -> server): the delta of this round's local-DP release."""


def _train_parts(msg: Message, reply: Message) -> tuple[ArrayRecord, ArrayRecord] | None:
    """``(sent arrays, returned arrays)`` of a successful train exchange, else ``None``."""
    if msg.message_type != MessageType.TRAIN or reply.content is None or msg.content is None:
        return None
    sent, returned = msg.content.get(ARRAYS), reply.content.get(ARRAYS)
    if not isinstance(sent, ArrayRecord) or not isinstance(returned, ArrayRecord):
        return None
    return sent, returned


def _rebuilt(reply: Message, arrays: ArrayRecord, extra_metrics: dict[str, float]) -> Message:
    assert reply.content is not None
    content: RecordDict = reply.content.copy()
    content[ARRAYS] = arrays
    metrics = content.get(METRICS)
    content[METRICS] = MetricRecord({**(metrics or {}), **extra_metrics})
    return Message(content, metadata=reply.metadata)


def dp_clipping_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Clip the train update to the norm the server sent (client-side clipping).

    Used with :class:`~glade.privacy.CentralDp` and ``clip_on="client"``: the server sends
    ``dp-clipping-norm`` in the train config; this mod clips the update to it and reports
    the norm it used (and, for adaptive clipping, whether the update fitted). Messages
    without that config pass through unchanged.
    """
    reply = call_next(msg, context)
    config = msg.content.get(CONFIG) if msg.content is not None else None
    if not isinstance(config, ConfigRecord) or CLIPPING_NORM not in config:
        return reply
    parts = _train_parts(msg, reply)
    if parts is None:
        return reply
    sent, returned = parts
    norm_value = config[CLIPPING_NORM]
    if not isinstance(norm_value, int | float) or not norm_value > 0:
        raise RecordError(f"config {CLIPPING_NORM!r} must be a number > 0, got {norm_value!r}")
    clipping_norm = float(norm_value)
    clipped, norm = clip_update(update_of(returned, sent), clipping_norm)
    extra = {CLIPPING_NORM: clipping_norm}
    if config.get(REPORT_NORM_BIT):
        extra[NORM_BIT] = 1 if norm <= clipping_norm else 0
    return _rebuilt(reply, apply_update(sent, clipped), extra)


class LocalDpMod:
    """Local DP: clip the train update and add Gaussian noise on the node itself.

    Each train reply is (``epsilon``, ``delta``)-DP with respect to *everything* the node
    contributes: the update is clipped to ``clipping_norm``, so two possible updates differ
    by at most ``2 * clipping_norm``, and the noise std is calibrated to that sensitivity
    exactly (analytic Gaussian mechanism, :func:`~glade.privacy.gaussian_sigma`). The
    server learns nothing it could not learn from that noisy update; the price is noise
    ``sqrt(n)`` times larger in the mean of ``n`` nodes than with central DP. The reply
    metrics carry ``ldp-epsilon`` and ``ldp-delta`` per round (rounds compose: a node that
    trains in ``T`` rounds spends more than ``epsilon`` in total).

    >>> from glade import ClientApp
    >>> app = ClientApp(mods=[LocalDpMod(clipping_norm=1.0, epsilon=8.0, delta=1e-5)])
    """

    def __init__(
        self, *, clipping_norm: float, epsilon: float, delta: float, seed: int | None = None
    ) -> None:
        if not (clipping_norm > 0 and math.isfinite(clipping_norm)):
            raise ConfigError(f"clipping_norm must be a finite number > 0, got {clipping_norm}")
        self.clipping_norm = float(clipping_norm)
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.noise_std = gaussian_sigma(
            epsilon=epsilon, delta=delta, sensitivity=2.0 * self.clipping_norm
        )
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (
            f"LocalDpMod(clipping_norm={self.clipping_norm}, epsilon={self.epsilon}, "
            f"delta={self.delta}, noise_std={self.noise_std:.4g})"
        )

    def __call__(self, msg: Message, context: Context, call_next: CallNext) -> Message:
        reply = call_next(msg, context)
        parts = _train_parts(msg, reply)
        if parts is None:
            return reply
        sent, returned = parts
        clipped, _ = clip_update(update_of(returned, sent), self.clipping_norm)
        noised = add_gaussian_noise(clipped, self.noise_std, self._rng)
        extra = {LDP_EPSILON: self.epsilon, LDP_DELTA: self.delta}
        return _rebuilt(reply, apply_update(sent, noised), extra)
