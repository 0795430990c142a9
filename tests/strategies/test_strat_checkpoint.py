"""Checkpoints: interrupt after round k, resume, and get bit for bit the uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import ml_dtypes
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
    SerdeError,
    ServerApp,
    keys,
)
from glade.server import Grid, History
from glade.simulation import run_simulation
from glade.strategies import (
    Checkpoint,
    Checkpoints,
    FedAdam,
    FedAvg,
    FedAvgM,
    Result,
    Strategy,
    load_checkpoint,
)
from glade.strategies.checkpoint import latest_checkpoint, save_checkpoint

BF16 = ml_dtypes.bfloat16
ROUNDS = 6


def initial() -> ArrayRecord:
    return ArrayRecord(
        {
            "w": np.linspace(-1, 1, 7, dtype=np.float32),
            "h": np.zeros(3, np.float16),
            "bf": np.ones(4, BF16),
            "count": np.zeros(2, np.int64),
        }
    )


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> RecordDict:
    """A deterministic, node- and round-dependent update of every array (any dtype)."""
    pid = int(context.node_config["partition-id"])
    server_round = int(msg.content[keys.CONFIG][keys.SERVER_ROUND])
    rng = np.random.default_rng(pid * 1000 + server_round)
    out = {}
    for name, array in msg.content[keys.ARRAYS].items():
        x = array.numpy()
        if x.dtype.kind == "i":
            out[name] = x + pid
        else:
            step = rng.standard_normal(x.shape) * (1 + pid) / server_round
            out[name] = (x.astype(np.float64) + step).astype(x.dtype)
    loss = float(np.sum(out["w"].astype(np.float64) ** 2))
    metrics = MetricRecord({keys.NUM_EXAMPLES: 10 + pid, "loss": loss})
    return RecordDict({keys.ARRAYS: ArrayRecord(out), keys.METRICS: metrics})


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> RecordDict:
    w = msg.content[keys.ARRAYS]["w"].numpy()
    metrics = {keys.NUM_EXAMPLES: 5, "sum": float(w.sum()), "parts": [1, 2]}
    return RecordDict({keys.METRICS: MetricRecord(metrics)})


class Interrupt(Exception):
    pass


def make_strategy() -> FedAdam:
    return FedAdam(
        eta=0.1, fraction_train=0.6, fraction_evaluate=0.5, min_available_nodes=5, seed=21
    )


def simulate(strategy: Strategy, *, crash_at: int | None = None, **start: Any) -> Result:
    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        if server_round == crash_at:
            raise Interrupt(f"stopped in round {server_round}")
        return {"norm": float(np.linalg.norm(arrays["w"].numpy()))}

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> Result:
        return strategy.start(
            grid, initial_arrays=initial(), num_rounds=ROUNDS, evaluate_fn=evaluate_fn, **start
        )

    sim = run_simulation(
        server_app, client_app, num_supernodes=5, backend="inline", seed=3, raise_on_error=True
    )
    assert isinstance(sim.return_value, Result)
    return sim.return_value


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_resume_after_an_interruption_is_bit_for_bit_the_uninterrupted_run(
    tmp_path: Path, fmt: str
) -> None:
    uninterrupted = simulate(make_strategy(), checkpoints=Checkpoints(folder=tmp_path / "a"))

    folder = tmp_path / "b"
    with pytest.raises(Interrupt):
        simulate(
            make_strategy(), crash_at=5, checkpoints=Checkpoints(folder=folder, every=2, format=fmt)
        )
    assert sorted(p.name for p in folder.iterdir()) == ["round-000002", "round-000004"]
    assert (folder / "round-000004" / f"arrays.{fmt}").is_file()

    resumed = simulate(make_strategy(), resume_from=folder)  # a new strategy object
    assert resumed.arrays == uninterrupted.arrays  # Array equality compares the bytes
    for name, array in resumed.arrays.items():
        assert array.dtype == initial()[name].dtype
        assert array.tobytes() == uninterrupted.arrays[name].tobytes()
    assert resumed.history == uninterrupted.history
    assert sorted(resumed.history.metrics["centralized"]) == list(range(ROUNDS + 1))

    saved = load_checkpoint(folder)
    assert saved.server_round == 4 and {"sampler", "optimizer", "optimizer/m"} <= set(saved.state)


def test_dropping_the_optimizer_state_changes_the_result(tmp_path: Path) -> None:
    """Shows the resume test would fail if FedAdam's moments were not checkpointed."""
    folder = tmp_path / "ckpt"
    full = simulate(make_strategy(), checkpoints=Checkpoints(folder=folder, every=3))
    saved = load_checkpoint(folder / "round-000003")
    stateless = make_strategy()
    state = RecordDict({k: v for k, v in saved.state.items() if not k.startswith("optimizer/")})
    state["optimizer"] = ConfigRecord({"kind": "Adam", "steps": 3})
    save_checkpoint(
        tmp_path / "forged",
        Checkpoint(
            server_round=3,
            arrays=saved.arrays,
            history=saved.history,
            state=state,
            strategy=saved.strategy,
        ),
    )
    forged = simulate(stateless, resume_from=tmp_path / "forged")
    assert forged.arrays["w"] != full.arrays["w"]


def test_every_and_keep(tmp_path: Path) -> None:
    simulate(FedAvg(min_available_nodes=5), checkpoints=Checkpoints(folder=tmp_path, every=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-000004", "round-000006"]
    keep = tmp_path / "keep"
    simulate(FedAvg(min_available_nodes=5), checkpoints=Checkpoints(folder=keep, keep=2))
    assert sorted(p.name for p in keep.iterdir()) == ["round-000005", "round-000006"]
    assert latest_checkpoint(keep) == keep / "round-000006"


def test_a_checkpoint_of_the_last_round_resumes_to_the_same_result(tmp_path: Path) -> None:
    done = simulate(FedAvgM(min_available_nodes=5, seed=1), checkpoints=str(tmp_path))
    again = simulate(FedAvgM(min_available_nodes=5, seed=1), resume_from=tmp_path)
    assert again.arrays == done.arrays and again.history == done.history


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        (FedAvg(min_available_nodes=5, seed=21), "written by glade.strategies.fedopt.FedAdam"),
        (
            FedAdam(fraction_train=0.6, min_available_nodes=5, seed=22),
            "seed=21.*seed=22",
        ),
        (FedAdam(fraction_train=0.6, min_available_nodes=5), "seed=21.*seed=None"),
    ],
)
def test_resuming_with_another_strategy_or_seed_is_refused(
    tmp_path: Path, strategy: Strategy, match: str
) -> None:
    simulate(make_strategy(), checkpoints=Checkpoints(folder=tmp_path, every=3))
    with pytest.raises(ConfigError, match=match):
        simulate(strategy, resume_from=tmp_path)


def test_resume_checks_the_model_and_the_round(tmp_path: Path) -> None:
    simulate(FedAvg(min_available_nodes=5), checkpoints=tmp_path)

    def start(**kwargs: Any) -> Any:
        return FedAvg().start(None, resume_from=tmp_path, **kwargs)  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="holds arrays"):
        start(initial_arrays=ArrayRecord({"w": np.zeros(7, np.float32)}), num_rounds=9)
    with pytest.raises(ConfigError, match="past num_rounds=5"):
        start(initial_arrays=initial(), num_rounds=5)
    with pytest.raises(ConfigError, match="no checkpoint"):
        FedAvg().start(None, initial_arrays=initial(), resume_from=tmp_path / "nope")  # type: ignore[arg-type]


def test_save_and_load_round_trip_every_kind_of_value(tmp_path: Path) -> None:
    history = History()
    history.metrics = {"train": {1: {"loss": 0.5, "n": 3, "list": [1, 2], "nan": math.nan}}}
    history.failures = {"train": {1: 2}}
    history.replies = {"train": {1: 4}}
    arrays = ArrayRecord(
        {
            "a/b.c": np.arange(6, dtype=np.float64).reshape(2, 3),
            "bf": np.array([1.5, -2.25], BF16),
            "flag": np.array([True, False]),
            "scalar": np.array(3, np.uint16),
            "empty": np.empty((0, 3), np.float16),
        }
    )
    state = RecordDict(
        {
            "cfg": ConfigRecord({"raw": b"\x00\xff", "names": ["x", "y"], "on": True}),
            "met": MetricRecord({"f": 0.1, "ints": [1, 2, 3]}),
            "arr": ArrayRecord({"m": np.full(3, 0.1, np.float32)}),
        }
    )
    for fmt in ("npz", "safetensors"):
        path = save_checkpoint(
            tmp_path / fmt,
            Checkpoint(server_round=7, arrays=arrays, history=history, state=state, strategy="S"),
            format=fmt,  # type: ignore[arg-type]
        )
        loaded = load_checkpoint(path)
        assert loaded.server_round == 7 and loaded.strategy == "S"
        assert loaded.arrays == arrays and list(loaded.arrays) == list(arrays)
        assert loaded.state == state
        assert loaded.history.failures == history.failures
        metrics = loaded.history.metrics["train"][1]
        assert math.isnan(metrics.pop("nan"))
        assert metrics == {"loss": 0.5, "n": 3, "list": [1, 2]}
        assert isinstance(metrics["n"], int)


def test_npz_checkpoints_load_with_plain_numpy(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path, Checkpoint(server_round=1, arrays=initial(), history=History())
    )
    with np.load(path / "arrays.npz") as npz:
        np.testing.assert_array_equal(npz["w"], initial()["w"].numpy())
        assert npz["bf"].dtype == np.uint16  # bfloat16 bits; checkpoint.json has the dtype
    manifest = json.loads((path / "checkpoint.json").read_text())
    assert [a["dtype"] for a in manifest["arrays"]] == ["float32", "float16", "bfloat16", "int64"]


def test_corrupt_checkpoints_are_serde_errors(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path,
        Checkpoint(server_round=1, arrays=initial(), history=History()),
        format="safetensors",
    )
    data = bytearray((path / "arrays.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "arrays.safetensors").write_bytes(bytes(data))
    with pytest.raises(SerdeError, match="does not match its recorded digest"):
        load_checkpoint(path)
    (path / "arrays.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(SerdeError, match="safetensors"):
        load_checkpoint(path)
    (path / "checkpoint.json").write_text("{}")
    with pytest.raises(SerdeError, match="not a version-1"):
        load_checkpoint(path)


def test_bad_checkpoint_options_are_config_errors() -> None:
    for kwargs in ({"every": 0}, {"keep": 0}, {"format": "pickle"}, {"every": 1.5}):
        with pytest.raises(ConfigError):
            Checkpoints(folder=Path("x"), **kwargs)
    with pytest.raises(TypeError):
        FedAvg().start(None, initial_arrays=initial(), checkpoints=3)  # type: ignore[arg-type]


def test_safetensors_files_interoperate_with_the_safetensors_package(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    from glade.strategies.arrayfile import read_safetensors, write_safetensors

    arrays = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "d": np.array([1.5, -2.0]),
        "i": np.array([1, -2, 3], np.int64),
        "u": np.array([7], np.uint8),
        "h": np.array([0.5], np.float16),
        "b": np.array([True, False]),
    }
    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, ArrayRecord(arrays), metadata={"round": "3"})
    theirs = st.load_file(str(ours))
    assert set(theirs) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(theirs[name], value)
        assert theirs[name].dtype == value.dtype
    other = tmp_path / "theirs.safetensors"
    st.save_file(arrays, str(other))
    back = read_safetensors(other)
    assert all(np.array_equal(back[n].numpy(), v) for n, v in arrays.items())


@pytest.mark.torch
def test_bfloat16_safetensors_load_in_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    from glade.strategies.arrayfile import write_safetensors

    values = np.array([1.5, -0.125, 3.0], BF16)
    write_safetensors(tmp_path / "m.safetensors", ArrayRecord({"bf": values}))
    loaded = st_torch.load_file(str(tmp_path / "m.safetensors"))
    assert loaded["bf"].dtype == torch.bfloat16
    assert loaded["bf"].float().tolist() == [1.5, -0.125, 3.0]


def test_checkpoints_recording_sha256_still_load_and_verify(tmp_path: Path) -> None:
    """Checkpoints written before content ids moved to BLAKE3 recorded SHA-256 per array."""
    path = save_checkpoint(
        tmp_path, Checkpoint(server_round=1, arrays=initial(), history=History())
    )
    manifest = json.loads((path / "checkpoint.json").read_text())
    for entry in manifest["arrays"]:
        array = initial()[entry["name"]]
        assert entry.pop("blake3") == array.digest
        entry["sha256"] = hashlib.sha256(array.memoryview()).hexdigest()
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    assert load_checkpoint(path).arrays["w"].digest == initial()["w"].digest
    manifest["arrays"][0]["sha256"] = "0" * 64
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(SerdeError, match="does not match its recorded digest"):
        load_checkpoint(path)
