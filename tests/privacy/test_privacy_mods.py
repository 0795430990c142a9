"""Client mods: client-side clipping and local DP, called the way a ClientApp calls them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glade import (
    ArrayRecord,
    ClientApp,
    ConfigError,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
    keys,
)
from glade.privacy import LDP_DELTA, LDP_EPSILON, LocalDpMod, dp_clipping_mod, gaussian_sigma
from glade.privacy.clipping import CLIPPING_NORM, NORM_BIT, REPORT_NORM_BIT, l2_norm

SENT = ArrayRecord({"w": np.full((50, 400), 0.5, np.float32), "b": np.zeros(10, np.float32)})


def app_with(mod, update_norm: float, seed: int = 0) -> ClientApp:
    """A ClientApp whose train handler moves the arrays by a random update of that norm."""
    app = ClientApp(mods=[mod])

    @app.train()
    def train(msg: Message, context: Context) -> RecordDict:
        rng = np.random.default_rng(seed)
        sent = msg.content[keys.ARRAYS]
        update = {k: rng.standard_normal(a.shape) for k, a in sent.items()}
        scale = update_norm / l2_norm(list(update.values()))
        arrays = {k: (a.numpy() + scale * update[k]).astype(np.float32) for k, a in sent.items()}
        metrics = MetricRecord({keys.NUM_EXAMPLES: 5, "loss": 0.1})
        return RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: metrics})

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> RecordDict:
        return RecordDict({keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5})})

    return app


def send(app: ClientApp, config: dict, message_type: str = "train") -> Message:
    content = RecordDict({keys.ARRAYS: SENT, keys.CONFIG: ConfigRecord(config)})
    reply = app(
        Message(content, dst_node_id=1, message_type=message_type), Context(run_id=1, node_id=1)
    )
    assert reply.error is None, reply.error
    return reply


def update_in(reply: Message) -> np.ndarray:
    arrays = reply.content[keys.ARRAYS]
    return np.concatenate(
        [arrays[k].numpy().astype(np.float64).ravel() - SENT[k].numpy().ravel() for k in SENT]
    )


@pytest.mark.parametrize(("norm", "fits"), [(3.0, 0), (0.5, 1)])
def test_clipping_mod_clips_to_the_norm_the_server_sent(norm, fits):
    reply = send(app_with(dp_clipping_mod, norm), {CLIPPING_NORM: 1.0, REPORT_NORM_BIT: True})
    assert np.linalg.norm(update_in(reply)) == pytest.approx(min(norm, 1.0), rel=1e-5)
    metrics = reply.content[keys.METRICS]
    assert metrics[CLIPPING_NORM] == 1.0 and metrics[NORM_BIT] == fits
    assert metrics["loss"] == 0.1  # the app's own metrics stay
    assert reply.content[keys.ARRAYS]["w"].dtype == "float32"


def test_clipping_mod_leaves_other_messages_alone():
    plain = send(app_with(dp_clipping_mod, 3.0), {})
    assert np.linalg.norm(update_in(plain)) == pytest.approx(3.0, rel=1e-5)
    assert CLIPPING_NORM not in plain.content[keys.METRICS]
    no_bit = send(app_with(dp_clipping_mod, 3.0), {CLIPPING_NORM: 1.0})
    assert NORM_BIT not in no_bit.content[keys.METRICS]  # only adaptive clipping asks
    evaluation = send(app_with(dp_clipping_mod, 3.0), {CLIPPING_NORM: 1.0}, "evaluate")
    assert CLIPPING_NORM not in evaluation.content[keys.METRICS]


def test_local_dp_clips_then_adds_calibrated_gaussian_noise():
    mod = LocalDpMod(clipping_norm=0.5, epsilon=2.0, delta=1e-5, seed=3)
    expected_std = gaussian_sigma(epsilon=2.0, delta=1e-5, sensitivity=1.0)  # 2 x clipping
    assert mod.noise_std == pytest.approx(expected_std)
    app = app_with(mod, update_norm=40.0)
    reply = send(app, {})
    noisy = update_in(reply)
    clean = update_in(send(app_with(dp_clipping_mod, 40.0), {CLIPPING_NORM: 0.5}))
    residual = noisy - clean  # the clipped update is the same draw (same seed)
    # 20,010 values: the sample std is within 2% (4 standard errors), float32 aside.
    assert residual.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(residual.mean()) < 4 * expected_std / math.sqrt(residual.size)
    metrics = reply.content[keys.METRICS]
    assert metrics[LDP_EPSILON] == 2.0 and metrics[LDP_DELTA] == 1e-5
    # Fresh noise every round.
    assert not np.array_equal(update_in(send(app, {})), noisy)


def test_local_dp_validates():
    with pytest.raises(ConfigError):
        LocalDpMod(clipping_norm=0.0, epsilon=1.0, delta=1e-5)
    with pytest.raises(ConfigError):
        LocalDpMod(clipping_norm=1.0, epsilon=-1.0, delta=1e-5)
    assert "noise_std" in repr(LocalDpMod(clipping_norm=1.0, epsilon=1.0, delta=1e-5))
