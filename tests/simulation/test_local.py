"""The local backend: same behaviour as the inline backend, state, shared-memory arrays."""

from __future__ import annotations

import gc
import logging
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from sim_harness import HERE, RUN_ID, SPEC, StartBackend

from glade import (
    ArrayRecord,
    ConfigError,
    ConfigRecord,
    ErrorCode,
    Message,
    RecordDict,
    ServerApp,
    keys,
)
from glade.simulation import ClientAppSpec, run_simulation
from glade.simulation.inline import InlineBackend
from glade.simulation.local import LocalBackend
from glade.simulation.run import make_backend


def _content(size: int = 3, seed: int = 0) -> RecordDict:
    rng = np.random.default_rng(seed)
    arrays = ArrayRecord({"w": rng.standard_normal(size).astype(np.float32), "b": np.arange(4)})
    return RecordDict({keys.ARRAYS: arrays, keys.CONFIG: ConfigRecord({"lr": 0.5})})


def _mixed_round(node_ids: list[int]) -> list[tuple[int, str, RecordDict]]:
    a, b, c, d = node_ids
    return [
        (a, "train", _content(seed=1)),
        (b, "train", _content(size=100_000, seed=2)),  # 400 kB: through shared memory
        (c, "query", _content(seed=3)),
        (d, "query.raise", RecordDict()),
        (a, "evaluate", RecordDict()),  # no such handler
    ]


def test_same_replies_as_inline_backend(start_backend: StartBackend) -> None:
    results = []
    for backend in (InlineBackend(), LocalBackend(num_workers=2)):
        harness = start_backend(backend)
        items = _mixed_round(harness.node_ids)
        messages = [Message(c, dst_node_id=n, message_type=t) for n, t, c in items]
        replies = harness.grid.send_and_receive(messages, timeout=30)
        by_type = {r.metadata.message_type + str(r.metadata.src_node_id): r for r in replies}
        assert len(by_type) == len(items)
        results.append(by_type)
    inline, local = results
    assert inline.keys() == local.keys()
    for key, expected in inline.items():
        got = local[key]
        assert got.has_error == expected.has_error, key
        if expected.error is not None:
            assert got.error is not None and got.error.code == expected.error.code
            last_line = expected.error.reason.splitlines()[-1]  # e.g. "ValueError: boom ..."
            assert last_line in got.error.reason
        else:
            assert got.content == expected.content, key
        assert got.metadata.run_id == RUN_ID


def test_context_state_and_node_config_persist_per_node(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=5)
    content = RecordDict({keys.ARRAYS: ArrayRecord([np.zeros(2)])})
    for expected_calls in (1, 2, 3):
        replies = harness.to_all("train", content)
        assert sorted(replies) == harness.node_ids
        for index, node in enumerate(harness.nodes):
            metrics = replies[node.node_id].content[keys.METRICS]
            assert metrics["calls"] == expected_calls
            assert metrics["partition-id"] == index
            assert metrics["num-partitions"] == 5


def test_handler_exception_is_an_error_reply_with_the_remote_traceback(
    start_backend: StartBackend,
) -> None:
    harness = start_backend(nodes=2)
    reply = harness.send([(harness.node_ids[1], "query.raise", RecordDict())])[101]
    assert reply.error is not None
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert "Traceback" in reply.error.reason
    assert "sim_apps.py" in reply.error.reason
    assert "ValueError: boom from the client" in reply.error.reason


def test_large_arrays_round_trip_bit_exact_and_read_only(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=2)
    raw = np.random.default_rng(5).integers(0, 256, size=8 << 20, dtype=np.uint8)
    sent = {
        "f64": raw.view(np.float64).reshape(1024, -1),  # 8 MB, NaN payloads included
        "f32": raw[: 1 << 20].view(np.float32),
        "i8": raw[: 1 << 20].view(np.int8),
        "c64": raw[: 1 << 20].view(np.complex64),
        "u16": raw[: 1 << 20].view(np.uint16)[::2],  # not contiguous: copied on the way in
        "bool": raw[: 1 << 20] % 2 == 1,
        "small": np.arange(10, dtype=np.int64),  # in-band
    }
    content = RecordDict({keys.ARRAYS: ArrayRecord(sent)})
    reply = harness.send([(100, "query", content)])[100]
    arrays = reply.content[keys.ARRAYS]
    assert list(arrays) == list(sent)
    for name, array in sent.items():
        got = arrays[name].numpy()
        assert got.dtype == array.dtype and got.shape == array.shape, name
        assert got.tobytes() == array.tobytes(), name
        assert not got.flags.writeable, name  # zero-copy views of shared memory


def test_a_broadcast_is_written_to_shared_memory_once(
    start_backend: StartBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glade.simulation.shm import SegmentPool

    writes: list[int] = []
    real = SegmentPool.write

    def counting(pool: SegmentPool, buffers: list[memoryview]) -> tuple[str, list[int], int]:
        writes.append(sum(b.nbytes for b in buffers))
        return real(pool, buffers)

    monkeypatch.setattr(SegmentPool, "write", counting)  # in this process: the parent's writes
    harness = start_backend(nodes=6)
    model = ArrayRecord({"w": np.ones(250_000, dtype=np.float32)})  # 1 MB
    replies = harness.to_all("train", RecordDict({keys.ARRAYS: model}))
    assert writes == [1_000_000]
    for reply in replies.values():
        assert np.all(reply.content[keys.ARRAYS]["w"].numpy() == 2)


def test_a_full_shared_memory_sends_the_arrays_through_the_pipes(
    start_backend: StartBackend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from glade.simulation.shm import SegmentPool

    def full(pool: SegmentPool, buffers: list[memoryview]) -> tuple[str, list[int], int]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SegmentPool, "write", full)  # the parent's writes only
    harness = start_backend(nodes=2)
    model = ArrayRecord({"w": np.arange(300_000, dtype=np.float32)})
    with caplog.at_level(logging.WARNING, logger="glade.simulation.local"):
        replies = harness.to_all("train", RecordDict({keys.ARRAYS: model}))
    for reply in replies.values():
        assert np.array_equal(reply.content[keys.ARRAYS]["w"].numpy(), model["w"].numpy() + 1)
    assert "no room in shared memory" in caplog.text


def test_workers_reuse_reply_segments_once_the_parent_drops_the_replies(
    start_backend: StartBackend,
) -> None:
    harness = start_backend(nodes=4)
    model = RecordDict({keys.ARRAYS: ArrayRecord({"w": np.ones(100_000, dtype=np.float32)})})
    for _ in range(5):
        replies = harness.to_all("train", model)
        assert len(replies) == 4
        del replies  # the reply arrays map worker segments; dropping them releases those
    names = [p.name for p in Path(harness.backend.run_dir).iterdir()]
    replies = [n for n in names if n.startswith("w") and not n.endswith("status")]
    assert len(replies) <= 4, names  # 2 workers x 2 nodes, not 5 rounds x 4 replies
    broadcasts = [n for n in names if n.startswith("m")]
    assert len(broadcasts) <= 2, names  # the model of one push (maybe two), not 5 rounds


def test_a_model_sized_reply_segment_is_deleted_once_released_not_kept_for_reuse(
    start_backend: StartBackend,
) -> None:
    """A spare model-sized segment beside the next model would be a third copy of it."""
    from glade.simulation.shm import KEEP_BYTES

    harness = start_backend(nodes=1, num_workers=1)
    size = KEEP_BYTES // 4 + 1024  # float32: just over the size kept for reuse
    model = RecordDict({keys.ARRAYS: ArrayRecord({"w": np.zeros(size, dtype=np.float32)})})
    replies = harness.to_all("train", model)
    del model
    run_dir = Path(harness.backend.run_dir)

    def reply_segments() -> list[str]:
        names = [p.name for p in run_dir.iterdir()]
        return [n for n in names if n.startswith("w") and not n.endswith("status")]

    assert len(reply_segments()) == 1
    assert float(replies[100].content[keys.ARRAYS]["w"].numpy()[-1]) == 1.0
    del replies
    gc.collect()
    deadline = time.monotonic() + 10
    while reply_segments() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reply_segments() == []  # deleted at once, not after the idle time of reuse


def test_a_reply_array_kept_by_the_server_is_never_overwritten(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=2, num_workers=1)

    def model(value: float) -> RecordDict:
        return RecordDict({keys.ARRAYS: ArrayRecord({"w": np.full(100_000, value, np.float32)})})

    first = harness.to_all("train", model(0.0))
    kept = first[100].content[keys.ARRAYS]["w"].numpy()
    kept_slice = memoryview(kept[10:20])  # derived views keep the data alive too
    del first, kept
    for round_value in (10.0, 20.0, 30.0):
        replies = harness.to_all("train", model(round_value))
        assert all(
            np.all(r.content[keys.ARRAYS]["w"].numpy() == round_value + 1) for r in replies.values()
        )
        del replies
    assert np.all(np.frombuffer(kept_slice, np.float32) == 1.0)


def test_client_app_by_reference_from_app_dir(start_backend: StartBackend, tmp_path) -> None:
    (tmp_path / "tmp_client_module.py").write_text(
        "from glade import ClientApp, MetricRecord, RecordDict\n"
        "app = ClientApp()\n"
        "@app.query()\n"
        "def answer(msg, context):\n"
        "    return RecordDict({'metrics': MetricRecord({'answer': 42,\n"
        "                       'lr': context.run_config['lr']})})\n"
    )
    spec = ClientAppSpec(ref="tmp_client_module:app", app_dir=str(tmp_path))
    harness = start_backend(spec=spec, nodes=3)
    replies = harness.to_all("query")
    assert {r.content["metrics"]["answer"] for r in replies.values()} == {42}
    assert {r.content["metrics"]["lr"] for r in replies.values()} == {0.1}


def test_client_app_object_is_sent_to_the_workers(start_backend: StartBackend) -> None:
    import sim_apps

    harness = start_backend(spec=ClientAppSpec(app=sim_apps.app), nodes=2)
    replies = harness.to_all("query.pid")
    assert len({r.content[keys.METRICS]["pid"] for r in replies.values()}) == 2


def test_message_to_an_unknown_node_gets_an_error_reply(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=2)
    message = Message(RecordDict(), dst_node_id=999, message_type="query")
    harness.backend.submit([message])
    replies = harness.grid.pull_messages([message.metadata.message_id], timeout=5)
    assert replies[0].error is not None
    assert replies[0].error.code == ErrorCode.NODE_UNAVAILABLE


def test_a_quick_reply_does_not_wait_for_a_slow_handler(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=2, num_workers=1)  # one worker runs both nodes in turn

    def push() -> tuple[str, str]:
        quick = Message(RecordDict(), dst_node_id=100, message_type="query.pid")
        slow = Message(RecordDict(), dst_node_id=101, message_type="query.slow")
        return tuple(harness.grid.push_messages([quick, slow]))  # type: ignore[return-value]

    quick_id, slow_id = push()  # the worker learns that "query.slow" is slow
    assert harness.grid.pull_messages([slow_id], timeout=10)
    assert harness.grid.pull_messages([quick_id], timeout=10)
    quick_id, slow_id = push()
    started = time.monotonic()
    assert harness.grid.pull_messages([quick_id], timeout=0.8)  # not held back for 1 s
    assert time.monotonic() - started < 0.8
    assert harness.grid.pull_messages([slow_id], timeout=10)


def test_an_expired_message_is_not_run(start_backend: StartBackend) -> None:
    harness = start_backend(nodes=2)
    message = Message(RecordDict(), dst_node_id=100, message_type="query.pid", ttl=1e-6)
    [reply] = harness.grid.send_and_receive([message], timeout=10)
    assert reply.error is not None and reply.error.code == ErrorCode.REPLY_TIMEOUT


@pytest.mark.parametrize(
    "options",
    [{"num_workers": 0}, {"num_workers": "2"}, {"shm_threshold": 0}, {"stop_timeout": -1}],
)
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make_backend("local", options)


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad options"):
        make_backend("local", {"no_such_option": 1})


def test_run_simulation_with_the_local_backend() -> None:
    server = ServerApp()

    @server.main()
    def main(grid, context):  # type: ignore[no-untyped-def]
        content = RecordDict({keys.ARRAYS: ArrayRecord([np.zeros(3)])})
        messages = [Message(content, dst_node_id=n) for n in grid.get_node_ids()]
        replies = grid.send_and_receive(messages, timeout=60)
        return sorted(r.content[keys.METRICS]["partition-id"] for r in replies)

    result = run_simulation(
        server,
        SPEC.ref or "",
        num_supernodes=5,
        backend="local",
        backend_config={"num_workers": 2},
        app_dir=HERE,
        seed=1,
    )
    assert result.status == "completed", result.reason
    assert result.return_value == [0, 1, 2, 3, 4]


def test_a_pending_instruction_keeps_no_content_in_the_parent(start_backend: StartBackend) -> None:
    h = start_backend(nodes=1)
    weights = np.arange(1000, dtype=np.float32)
    watch = weakref.ref(weights)
    msg = Message(
        RecordDict({"arrays": ArrayRecord({"w": weights})}),
        dst_node_id=h.node_ids[0],
        message_type="query.slow",  # a handler that takes a second
    )
    (sent,) = h.grid.push_messages([msg])
    del msg, weights
    gc.collect()
    assert watch() is None  # handed to the worker: only its metadata stays, for errors
    (reply,) = h.grid.pull_messages([sent], timeout=30)
    assert reply.has_content and reply.metadata.reply_to_message_id == sent
