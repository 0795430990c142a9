"""SecAgg+ rounds driven through a simulated grid: exactness, dropouts, masking, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glade import (
    ArrayRecord,
    ClientApp,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
    ServerApp,
    keys,
)
from glade.client.app import CallNext
from glade.privacy import SecAggPlus, secaggplus_mod
from glade.privacy.secagg_protocol import MASKED, SECAGG, SETUP, SHARE_KEYS, UNMASK
from glade.simulation import run_simulation
from glade.strategies import FedAvg

HERE = Path(__file__).parent
NUM_NODES = 8
INITIAL = ArrayRecord(
    {"w": np.linspace(-1, 1, 3000).astype(np.float32).reshape(30, 100), "b": np.zeros(7)}
)


def node_update(partition: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Each node's deterministic update, inside the clipping range [-1, 1]."""
    rng = np.random.default_rng([partition, len(name)])
    return rng.uniform(-0.9, 0.9, size=shape)


def weight(partition: int) -> int:
    return 3 * partition + 1


SEEN: list[tuple[int, Message, Message]] = []  # (partition, inner reply, outgoing reply)


def spy_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Outermost: records what leaves the node, i.e. what the server sees."""
    reply = call_next(msg, context)
    if msg.message_type == "train":
        SEEN.append((int(context.node_config["partition-id"]), msg, reply))
    return reply


def drop_mod(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Nodes named in the run config fail at the stage it names."""
    chosen = {int(p) for p in str(context.run_config.get("drop", "")).split(",") if p}
    if (
        msg.message_type == context.run_config.get("stage")
        and int(context.node_config["partition-id"]) in chosen
    ):
        raise ConnectionError("dropped out")
    return call_next(msg, context)


INNER: dict[int, ArrayRecord] = {}


def record_inner(msg: Message, context: Context, call_next: CallNext) -> Message:
    """Innermost: records the unmasked update the app produced (test oracle only)."""
    reply = call_next(msg, context)
    if msg.message_type == "train" and reply.content is not None:
        INNER[int(context.node_config["partition-id"])] = reply.content[keys.ARRAYS]
    return reply


client = ClientApp(mods=[spy_mod, drop_mod, secaggplus_mod, record_inner])


@client.train()
def train(msg: Message, context: Context) -> RecordDict:
    pid = int(context.node_config["partition-id"])
    sent = msg.content[keys.ARRAYS]
    arrays = {
        k: (a.numpy() + node_update(pid, a.shape, k)).astype(a.dtype) for k, a in sent.items()
    }
    metrics = MetricRecord({keys.NUM_EXAMPLES: weight(pid), "loss": float(pid)})
    return RecordDict({keys.ARRAYS: ArrayRecord(arrays), keys.METRICS: metrics})


def simulate(
    strategy_options: dict[str, Any] | None = None,
    *,
    stage: str = "",
    drop: tuple[int, ...] = (),
    nodes: int = NUM_NODES,
    secure: bool = True,
    rounds: int = 1,
):
    options = {"num_shares": 8, "reconstruction_threshold": 5} | (strategy_options or {})
    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy = FedAvg(min_available_nodes=nodes, fraction_evaluate=0.0)
        if secure:
            strategy = SecAggPlus(strategy, **options)
        return strategy.start(grid, initial_arrays=INITIAL, num_rounds=rounds)

    SEEN.clear()
    INNER.clear()
    return run_simulation(
        server,
        client,
        num_supernodes=nodes,
        backend="inline",
        seed=5,
        run_config={"stage": stage, "drop": ",".join(map(str, drop))},
    )


def expected_mean(partitions: list[int]) -> dict[str, np.ndarray]:
    weights = np.array([weight(p) for p in partitions], dtype=np.float64)
    return {
        name: a.numpy().astype(np.float64)
        + np.average([node_update(p, a.shape, name) for p in partitions], axis=0, weights=weights)
        for name, a in INITIAL.items()
    }


def assert_close_to(result, partitions: list[int], bound: float) -> None:
    assert result.status == "completed", result.reason
    arrays = result.return_value.arrays
    for name, expected in expected_mean(partitions).items():
        got = arrays[name].numpy().astype(np.float64)
        # Quantisation error, plus float32 rounding: of the result, and of the wrapped FedAvg
        # averaging replies that all carry it.
        tolerance = bound + 4 * np.abs(expected) * np.finfo(arrays[name].numpy().dtype).eps
        assert np.all(np.abs(got - expected) <= tolerance), name


def test_without_dropouts_secagg_matches_fedavg_within_the_quantisation_bound():
    options = {"quantization_bits": 12}  # coarse, so that the bound is visible
    secure = simulate(options)
    bound = SecAggPlus(FedAvg(), num_shares=8, reconstruction_threshold=5, quantization_bits=12)
    assert_close_to(secure, list(range(NUM_NODES)), bound.max_error)
    plain = simulate(secure=False)
    difference = np.abs(
        secure.return_value.arrays["w"].numpy() - plain.return_value.arrays["w"].numpy()
    )
    assert 0 < difference.max() <= bound.max_error + 1e-6
    # The wrapped strategy still aggregates the nodes' metrics.
    metrics = secure.history.metrics["train"][1]
    assert metrics[keys.NUM_EXAMPLES] == sum(weight(p) for p in range(NUM_NODES))
    assert metrics["loss"] == plain.history.metrics["train"][1]["loss"]


def test_results_are_reproducible_although_masks_are_random():
    first, second = simulate(rounds=2), simulate(rounds=2)
    assert first.return_value.arrays == second.return_value.arrays


@pytest.mark.parametrize(
    ("stage", "contributing"),
    [
        (SETUP, [0, 1, 2, 6, 7]),  # left before any secret was shared
        (SHARE_KEYS, [0, 1, 2, 6, 7]),  # got keys but shared nothing
        ("train", [0, 1, 2, 6, 7]),  # shared secrets, sent no masked input: s_sk recovered
        (UNMASK, list(range(NUM_NODES))),  # sent masked input, then left: b recovered
    ],
)
def test_dropouts_up_to_the_threshold_are_recovered(stage, contributing):
    result = simulate(stage=stage, drop=(3, 4, 5))  # 8 nodes, threshold 5: 3 may drop
    assert_close_to(result, contributing, SecAggPlus(FedAvg()).max_error)


@pytest.mark.parametrize(
    ("stage", "reason"),
    [
        (SETUP, "reconstruction threshold 5 exceeds the 4 nodes"),
        (SHARE_KEYS, "4 of 8 nodes completed the SecAgg+ key sharing"),
        ("train", "only 4 nodes sent masked input, SecAgg+ needs at least the reconstruction"),
        (UNMASK, "4 shares of its self-mask seed came back, 5 are needed"),
    ],
)
def test_dropouts_beyond_the_threshold_fail_the_round_with_the_reason(stage, reason):
    result = simulate(stage=stage, drop=(1, 3, 4, 5))  # 4 of 8 drop; 3 may
    assert result.status == "failed"
    assert "RunError: round 1: " in result.reason and reason in result.reason


def test_a_sparse_neighbour_graph_recovers_dropouts_across_neighbourhoods():
    # 30 nodes, 7 neighbours each (threshold 4): dropped nodes spread over the ring.
    result = simulate(
        {"num_shares": 7, "reconstruction_threshold": 4, "seed": 1},
        nodes=30,
        stage="train",
        drop=(2, 11, 19, 27),
    )
    contributing = [p for p in range(30) if p not in (2, 11, 19, 27)]
    assert_close_to(result, contributing, SecAggPlus(FedAvg()).max_error)


def test_the_server_only_sees_masked_values():
    simulate()
    assert len(SEEN) == NUM_NODES
    for partition, _, reply in SEEN:
        assert keys.ARRAYS not in reply.content  # no unmasked arrays leave the node
        masked = reply.content[MASKED]["vector"].numpy()
        inner = INNER[partition]
        update = np.concatenate(
            [
                inner[k].numpy().astype(np.float64).ravel() - INITIAL[k].numpy().ravel()
                for k in INITIAL
            ]
        )
        assert masked.size == update.size + 1
        masked_values = masked[:-1].astype(np.float64)
        # Not equal, and uncorrelated: |r| below 5 standard errors (1 / sqrt(n)).
        assert not np.allclose(masked_values, update)
        r = np.corrcoef(masked_values, update)[0, 1]
        assert abs(r) < 5 / np.sqrt(update.size), r
        # Spread over the whole 64-bit ring, as uniform values are (mean 2**63).
        assert abs(masked_values.mean() / 2.0**63 - 1) < 5 * 0.58 / np.sqrt(update.size)
        assert masked[-1] != weight(partition)  # the weight is masked too


def node_context(node_id: int) -> Context:
    return Context(run_id=1, node_id=node_id, node_config={"partition-id": 0})


def stage_message(stage: str, fields: dict[str, Any], node: int) -> Message:
    return Message(RecordDict({SECAGG: ConfigRecord(fields)}), dst_node_id=node, message_type=stage)


def test_a_node_never_reveals_both_secrets_of_a_peer():
    """A malicious server claiming a node both survived and dropped gets an error reply."""
    nodes = [11, 22, 33]
    contexts = {n: node_context(n) for n in nodes}
    keys_of = {}
    for n in nodes:
        reply = client(stage_message(SETUP, {"round": 1}, n), contexts[n])
        keys_of[n] = reply.content[SECAGG]
    fields = {
        "round": 1,
        "threshold": 2,
        "neighbours": nodes,
        "c-pks": [keys_of[n]["c-pk"] for n in nodes],
        "s-pks": [keys_of[n]["s-pk"] for n in nodes],
    }
    shared = {
        n: client(stage_message(SHARE_KEYS, fields, n), contexts[n]).content[SECAGG] for n in nodes
    }
    node = 11
    train_fields = {
        "round": 1,
        "clipping-range": 1.0,
        "quantization-bits": 16,
        "weighted": True,
        "weight-key": keys.NUM_EXAMPLES,
        "sources": nodes,
        "ciphertexts": [
            shared[src]["ciphertexts"][shared[src]["dst"].index(node)] for src in nodes
        ],
    }
    content = RecordDict(
        {keys.ARRAYS: INITIAL, keys.CONFIG: ConfigRecord({}), SECAGG: ConfigRecord(train_fields)}
    )
    train_msg = Message(content, dst_node_id=node, message_type="train")
    assert client(train_msg, contexts[node]).error is None
    greedy = {"round": 1, "survived": [11, 22], "dropped": [22], "num-survived": 2}
    refused = client(stage_message(UNMASK, greedy, node), contexts[node])
    assert refused.error is not None and "both survived and dropped" in refused.error.reason
    honest = {"round": 1, "survived": [11, 22], "dropped": [33], "num-survived": 2}
    answer = client(stage_message(UNMASK, honest, node), contexts[node])
    assert answer.error is None and answer.content[SECAGG]["key-ids"] == [33]
    again = client(stage_message(UNMASK, honest, node), contexts[node])
    assert again.error is not None  # reveals once per round, then forgets its secrets


def test_tampered_shares_are_rejected_by_the_node():
    nodes = [1, 2]
    contexts = {n: node_context(n) for n in nodes}
    pks = {
        n: client(stage_message(SETUP, {"round": 4}, n), contexts[n]).content[SECAGG] for n in nodes
    }
    fields = {
        "round": 4,
        "threshold": 2,
        "neighbours": nodes,
        "c-pks": [pks[n]["c-pk"] for n in nodes],
        "s-pks": [pks[n]["s-pk"] for n in nodes],
    }
    shared = {
        n: client(stage_message(SHARE_KEYS, fields, n), contexts[n]).content[SECAGG] for n in nodes
    }
    blobs = [shared[1]["ciphertexts"][1], shared[2]["ciphertexts"][1]]
    blobs[0] = blobs[0][:-1] + bytes([blobs[0][-1] ^ 0x55])
    train_fields = {
        "round": 4,
        "clipping-range": 1.0,
        "quantization-bits": 8,
        "weighted": False,
        "weight-key": "x",
        "sources": nodes,
        "ciphertexts": blobs,
    }
    content = RecordDict(
        {keys.ARRAYS: INITIAL, keys.CONFIG: ConfigRecord({}), SECAGG: ConfigRecord(train_fields)}
    )
    reply = client(Message(content, dst_node_id=2, message_type="train"), contexts[2])
    assert reply.error is not None and "failed authentication" in reply.error.reason


def test_secagg_runs_on_the_local_process_backend():
    from glade.privacy import SecAggPlus as Wrapper

    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy = Wrapper(
            FedAvg(min_available_nodes=4, fraction_evaluate=0.0),
            num_shares=4,
            reconstruction_threshold=3,
            clipping_range=2.0,
        )
        return strategy.start(grid, initial_arrays=ArrayRecord({"w": np.zeros(50)}), num_rounds=2)

    result = run_simulation(
        server,
        "privacy_apps:secagg_demo_app",
        num_supernodes=4,
        backend="local",
        backend_config={"num_workers": 2},
        app_dir=HERE,
        seed=2,
    )
    assert result.status == "completed", result.reason
    # Each node adds 0.1 * (partition + 1), weighted by partition + 1: mean 0.1 * 30 / 10.
    np.testing.assert_allclose(result.return_value.arrays["w"].numpy(), 2 * 0.3, atol=1e-5)
