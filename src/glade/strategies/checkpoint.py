"""Per-round checkpoints: global arrays, metric history, round and strategy state.

A checkpoint is a folder ``round-000005/`` inside the checkpoint folder::

    checkpoint.json        round, strategy class, history, array manifests (dtype,
                           shape, blake3 digest), the strategy's scalar state
    arrays.npz             the global arrays  (or arrays.safetensors)
    state.npz              the strategy's array state, e.g. FedAdam's moments
                           (or state.safetensors)

It is written to a temporary folder and renamed into place, so a crash mid-write
never leaves a half checkpoint under a ``round-*`` name. Loading verifies every
array's SHA-256. See ``docs/checkpoints.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from glade.array import Array
from glade.errors import ConfigError, SerdeError
from glade.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from glade.server.events import History
from glade.strategies.arrayfile import read_npz, read_safetensors, write_npz, write_safetensors

__all__ = [
    "Checkpoint",
    "CheckpointWriter",
    "Checkpoints",
    "as_checkpoints",
    "latest_checkpoint",
    "load_checkpoint",
    "prune_checkpoints",
    "resume",
    "save_checkpoint",
    "strategy_name",
]

logger = logging.getLogger(__name__)

FORMAT = "glade-checkpoint"
VERSION = 1
MANIFEST = "checkpoint.json"
ArrayFormat = Literal["npz", "safetensors"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoints:
    """Where and how often :meth:`Strategy.start` saves checkpoints.

    A checkpoint is written after every ``every``-th round and after the last round, into
    ``folder/round-NNNNNN/``; ``keep`` keeps only that many of the newest (``None``: all).
    ``format`` is ``"npz"`` or ``"safetensors"`` (for the array files).

    >>> Checkpoints(folder="ckpt", every=5, keep=2).every
    5
    """

    folder: str | os.PathLike[str]
    every: int = 1
    keep: int | None = None
    format: ArrayFormat = "npz"

    def __post_init__(self) -> None:
        if not isinstance(self.folder, str | os.PathLike):
            raise ConfigError(f"checkpoint folder must be a path, got {self.folder!r}")
        object.__setattr__(self, "folder", Path(self.folder))
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ConfigError(f"checkpoint every must be an integer >= 1, got {self.every!r}")
        if self.keep is not None and (not isinstance(self.keep, int) or self.keep < 1):
            raise ConfigError(f"checkpoint keep must be None or an integer >= 1, got {self.keep!r}")
        if self.format not in ("npz", "safetensors"):
            raise ConfigError(
                f"checkpoint format must be 'npz' or 'safetensors', got {self.format!r}"
            )

    def due(self, server_round: int, num_rounds: int) -> bool:
        """Whether ``server_round`` gets a checkpoint."""
        return server_round % self.every == 0 or server_round == num_rounds


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """The saved state of a run after ``server_round``."""

    server_round: int
    arrays: ArrayRecord
    history: History
    state: RecordDict = field(default_factory=RecordDict)
    strategy: str = ""
    path: Path | None = None


# -- save --------------------------------------------------------------------------------
def save_checkpoint(
    folder: str | os.PathLike[str], checkpoint: Checkpoint, *, format: ArrayFormat = "npz"
) -> Path:
    """Write ``checkpoint`` to ``folder/round-NNNNNN/`` (replacing one that is there)."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"round-{checkpoint.server_round:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        arrays_file, state_file = f"arrays.{format}", f"state.{format}"
        state_arrays: dict[str, Array] = {}
        state_json: dict[str, Any] = {}
        for key, record in checkpoint.state.items():
            if isinstance(record, ArrayRecord):
                names = {name: f"{key}/{name}" for name in record}
                state_arrays.update({names[n]: a for n, a in record.items()})
                state_json[key] = {"kind": "arrays", "arrays": _manifest(record, names)}
            else:
                kind = "config" if isinstance(record, ConfigRecord) else "metrics"
                state_json[key] = {"kind": kind, "values": _encode_values(record)}
        _write_arrays(tmp / arrays_file, dict(checkpoint.arrays), format)
        _write_arrays(tmp / state_file, state_arrays, format)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "server_round": checkpoint.server_round,
            "strategy": checkpoint.strategy,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "array_format": format,
            "arrays": _manifest(checkpoint.arrays, {n: n for n in checkpoint.arrays}),
            "state": state_json,
            "history": _encode_history(checkpoint.history),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune_checkpoints(folder: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the ``keep`` newest ``round-*`` checkpoints in ``folder``."""
    for path in _round_folders(Path(folder))[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def _write_arrays(path: Path, arrays: dict[str, Array], format: ArrayFormat) -> None:
    if format == "safetensors":
        write_safetensors(path, arrays)
    else:
        write_npz(path, arrays)


def _manifest(record: ArrayRecord, keys: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": n, "key": keys[n], "dtype": a.dtype, "shape": list(a.shape), "blake3": a.digest}
        for n, a in record.items()
    ]


# -- load --------------------------------------------------------------------------------
def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder in ``folder`` (``None`` if there is none)."""
    found = _round_folders(Path(folder))
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint: a ``round-*`` folder, or the newest one in a checkpoint folder."""
    where = Path(path)
    if not (where / MANIFEST).is_file():
        latest = latest_checkpoint(where) if where.is_dir() else None
        if latest is None:
            raise ConfigError(f"no checkpoint at {where} (expected {MANIFEST} or round-* folders)")
        where = latest
    try:
        manifest = json.loads((where / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise SerdeError(f"cannot read {where / MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise SerdeError(f"{where} is not a version-{VERSION} Glade checkpoint")
    fmt = manifest["array_format"]
    arrays = _read_arrays(where / f"arrays.{fmt}", manifest["arrays"], fmt)
    stored = _read_arrays(
        where / f"state.{fmt}",
        [e for s in manifest["state"].values() if s["kind"] == "arrays" for e in s["arrays"]],
        fmt,
    )
    state = RecordDict()
    for key, entry in manifest["state"].items():
        if entry["kind"] == "arrays":
            state[key] = ArrayRecord({e["name"]: stored[e["key"]] for e in entry["arrays"]})
        else:
            kind = ConfigRecord if entry["kind"] == "config" else MetricRecord
            state[key] = kind(_decode_values(entry["values"]))
    return Checkpoint(
        server_round=int(manifest["server_round"]),
        arrays=ArrayRecord({e["name"]: arrays[e["key"]] for e in manifest["arrays"]}),
        history=_decode_history(manifest["history"]),
        state=state,
        strategy=str(manifest["strategy"]),
        path=where,
    )


def _read_arrays(path: Path, entries: list[dict[str, Any]], fmt: str) -> dict[str, Array]:
    if fmt == "safetensors":
        arrays = read_safetensors(path)
    else:
        arrays = read_npz(path, {e["key"]: e["dtype"] for e in entries})
    for e in entries:
        array = arrays.get(e["key"])
        if array is None or array.dtype != e["dtype"] or list(array.shape) != e["shape"]:
            raise SerdeError(f"{path}: array {e['key']!r} is missing or not as recorded")
        if not _digest_matches(array, e):
            raise SerdeError(f"{path}: array {e['key']!r} does not match its recorded digest")
    return arrays


def _digest_matches(array: Array, entry: dict[str, Any]) -> bool:
    if "blake3" in entry:
        return array.digest == str(entry["blake3"])
    # checkpoints written before content ids moved to BLAKE3 recorded SHA-256
    return hashlib.sha256(array.memoryview()).hexdigest() == str(entry.get("sha256"))


def _round_folders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if p.name.startswith("round-") and p.name[6:].isdigit() and (p / MANIFEST).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[6:]))


# -- JSON encoding (lossless: ints stay ints, floats round-trip, NaN/inf kept) ----------
def _encode_values(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _encode_value(v) for k, v in record.items()}


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    return value


def _decode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _decode_value(v) for k, v in values.items()}


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return base64.b64decode(value["$bytes"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def _encode_history(history: History) -> dict[str, Any]:
    return {
        "metrics": {
            s: [[r, _encode_values(m)] for r, m in rounds.items()]
            for s, rounds in history.metrics.items()
        },
        "failures": {s: list(map(list, rounds.items())) for s, rounds in history.failures.items()},
        "replies": {s: list(map(list, rounds.items())) for s, rounds in history.replies.items()},
    }


def _decode_history(data: Mapping[str, Any]) -> History:
    return History(
        metrics={
            s: {int(r): _decode_values(m) for r, m in rounds}
            for s, rounds in data["metrics"].items()
        },
        failures={s: {int(r): int(n) for r, n in rounds} for s, rounds in data["failures"].items()},
        replies={s: {int(r): int(n) for r, n in rounds} for s, rounds in data["replies"].items()},
    )


# -- the glue Strategy.start uses ----------------------------------------------------------
class Stateful(Protocol):
    """What checkpointing needs from a strategy."""

    def state(self) -> RecordDict: ...

    def load_state(self, state: RecordDict) -> None: ...


def strategy_name(strategy: object) -> str:
    """``module.QualName`` of a strategy's class (a checkpoint resumes only the same one)."""
    return f"{type(strategy).__module__}.{type(strategy).__qualname__}"


def as_checkpoints(value: Checkpoints | str | os.PathLike[str]) -> Checkpoints:
    """A :class:`Checkpoints` from itself or from a folder path (every round)."""
    if isinstance(value, Checkpoints):
        return value
    if isinstance(value, str | os.PathLike):
        return Checkpoints(folder=Path(value))
    raise TypeError(
        f"checkpoints must be a Checkpoints or a folder path, got {type(value).__name__}"
    )


class CheckpointWriter:
    """The round loop's ``on_round_end``: saves ``strategy`` and the run when due."""

    def __init__(self, strategy: Stateful, options: Checkpoints, *, num_rounds: int) -> None:
        self._strategy = strategy
        self._options = options
        self._num_rounds = num_rounds

    def __call__(self, server_round: int, arrays: ArrayRecord, history: History) -> None:
        if not self._options.due(server_round, self._num_rounds):
            return
        checkpoint = Checkpoint(
            server_round=server_round,
            arrays=arrays,
            history=history,
            state=self._strategy.state(),
            strategy=strategy_name(self._strategy),
        )
        path = save_checkpoint(self._options.folder, checkpoint, format=self._options.format)
        logger.info("round %d: checkpoint saved to %s", server_round, path)
        if self._options.keep is not None:
            prune_checkpoints(self._options.folder, self._options.keep)


def resume(
    strategy: Stateful,
    path: str | os.PathLike[str],
    *,
    initial_arrays: ArrayRecord,
    num_rounds: int,
) -> Checkpoint:
    """Load the checkpoint at ``path`` into ``strategy``; returns it (arrays, history, round).

    Raises :class:`~glade.errors.ConfigError` when the checkpoint belongs to another
    strategy class, another model (array names or dtypes differ from ``initial_arrays``),
    or a later round than ``num_rounds``.
    """
    checkpoint = load_checkpoint(path)
    where = checkpoint.path
    if checkpoint.strategy != strategy_name(strategy):
        raise ConfigError(
            f"checkpoint {where} was written by {checkpoint.strategy}, "
            f"not {strategy_name(strategy)}; resume with the same strategy class"
        )
    saved = {n: a.dtype for n, a in checkpoint.arrays.items()}
    given = {n: a.dtype for n, a in initial_arrays.items()}
    if saved != given:
        raise ConfigError(
            f"checkpoint {where} holds arrays {saved}, but initial_arrays are {given}"
        )
    if checkpoint.server_round > num_rounds:
        raise ConfigError(
            f"checkpoint {where} is after round {checkpoint.server_round}, "
            f"past num_rounds={num_rounds}"
        )
    strategy.load_state(checkpoint.state)
    logger.info("resuming after round %d from %s", checkpoint.server_round, where)
    return checkpoint
