"""XGBoost tree ensembles as Glade records, and merging them (no xgboost import needed).

A model travels as the UTF-8 bytes of XGBoost's JSON format (``booster.save_raw("json")``)
in an :class:`~glade.ArrayRecord` holding one uint8 array named ``"model"``; an empty
array means "no model yet". The server merges models by editing that JSON, so it needs
no ``xgboost``; nodes use :func:`booster_to_arrays` / :func:`booster_from_arrays`,
which import ``xgboost`` lazily (``pip install 'glade[xgboost]'``).

Only ``gbtree`` boosters with scalar leaves can have their trees scaled; every model
merged must agree on the learner parameters (objective, number of features/classes,
``base_score``), so set ``base_score`` explicitly in the XGBoost params of every node.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from glade.errors import RecordError
from glade.records import ArrayRecord

__all__ = [
    "MODEL_KEY",
    "TreeModel",
    "bag_models",
    "booster_from_arrays",
    "booster_to_arrays",
    "empty_model",
    "model_bytes",
    "model_record",
]

MODEL_KEY = "model"
"""Name of the uint8 array that holds the JSON model."""


def empty_model() -> ArrayRecord:
    """The initial arrays of an XGBoost run: no trees yet."""
    return ArrayRecord({MODEL_KEY: np.empty(0, dtype=np.uint8)})


def model_record(raw: bytes | bytearray) -> ArrayRecord:
    """Wrap JSON model bytes as the ``{"model": uint8[...]}`` record."""
    return ArrayRecord({MODEL_KEY: np.frombuffer(bytes(raw), dtype=np.uint8)})


def model_bytes(arrays: ArrayRecord) -> bytes:
    """The JSON model bytes of a record (``b""``: no model yet)."""
    if list(arrays) != [MODEL_KEY]:
        raise RecordError(f"an XGBoost record holds one array {MODEL_KEY!r}, got {list(arrays)}")
    array = arrays[MODEL_KEY]
    if array.dtype != "uint8" or len(array.shape) != 1:
        raise RecordError(
            f"the XGBoost model must be uint8[n], got {array.dtype}{list(array.shape)}"
        )
    return array.tobytes()


def booster_to_arrays(booster: Any) -> ArrayRecord:
    """An ``xgboost.Booster`` as a record (its JSON model bytes)."""
    return model_record(booster.save_raw(raw_format="json"))


def booster_from_arrays(arrays: ArrayRecord, params: dict[str, Any] | None = None) -> Any:
    """An ``xgboost.Booster`` loaded from a record, or ``None`` if it holds no model yet."""
    raw = model_bytes(arrays)
    if not raw:
        return None
    import xgboost

    booster = xgboost.Booster(params=params)
    booster.load_model(bytearray(raw))
    return booster


class TreeModel:
    """A parsed XGBoost JSON model: its trees grouped by boosting iteration."""

    def __init__(self, doc: dict[str, Any]) -> None:
        try:
            learner = doc["learner"]
            booster = learner["gradient_booster"]
            if booster.get("name") != "gbtree":
                raise RecordError(
                    f"only gbtree boosters can be merged, got {booster.get('name')!r}"
                )
            model = booster["model"]
            self.trees: list[dict[str, Any]] = model["trees"]
            self.tree_info: list[int] = model["tree_info"]
            indptr = model.get("iteration_indptr") or list(range(len(self.trees) + 1))
            self.indptr: list[int] = [int(i) for i in indptr]
        except (KeyError, TypeError) as exc:
            raise RecordError(f"not an XGBoost JSON model: missing {exc}") from None
        if self.indptr[-1] != len(self.trees) or len(self.tree_info) != len(self.trees):
            raise RecordError("inconsistent XGBoost model: tree counts do not match")
        self.doc = doc

    @classmethod
    def parse(cls, raw: bytes) -> TreeModel:
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise RecordError(f"the model is not XGBoost JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RecordError("the model is not an XGBoost JSON object")
        return cls(doc)

    @property
    def num_iterations(self) -> int:
        return len(self.indptr) - 1

    def signature(self) -> dict[str, Any]:
        """What models must share to be merged (learner and tree parameters)."""
        learner = self.doc["learner"]
        model = learner["gradient_booster"]["model"]
        return {
            "learner_model_param": learner.get("learner_model_param"),
            "objective": learner.get("objective", {}).get("name"),
            "num_parallel_tree": model.get("gbtree_model_param", {}).get("num_parallel_tree"),
        }

    def extends(self, base: TreeModel) -> str | None:
        """Why this model is not ``base`` plus more iterations (``None``: it is)."""
        if self.signature() != base.signature():
            return (
                f"its learner parameters {self.signature()} differ from {base.signature()} "
                "(set base_score explicitly in the XGBoost params of every node)"
            )
        count = len(base.trees)
        same = self.indptr[: base.num_iterations + 1] == base.indptr and all(
            _same_tree(a, b) for a, b in zip(self.trees[:count], base.trees, strict=True)
        )
        if not same or len(self.trees) < count:
            return "its first trees are not the global model's (train on top of the global model)"
        return None

    def emptied(self) -> TreeModel:
        """A copy with no trees (same learner parameters)."""
        doc = copy.deepcopy(self.doc)
        model = doc["learner"]["gradient_booster"]["model"]
        model.update(trees=[], tree_info=[], iteration_indptr=[0])
        model.setdefault("gbtree_model_param", {})["num_trees"] = "0"
        return TreeModel(doc)

    def append_from(self, other: TreeModel, *, first_iteration: int, scale: float = 1.0) -> None:
        """Append ``other``'s iterations from ``first_iteration`` on, leaves times ``scale``."""
        start, offset = other.indptr[first_iteration], self.indptr[-1]
        for tree, info in zip(other.trees[start:], other.tree_info[start:], strict=True):
            new = _scaled(tree, scale) if scale != 1.0 else copy.deepcopy(tree)
            new["id"] = len(self.trees)
            self.trees.append(new)
            self.tree_info.append(info)
        self.indptr.extend(offset + end - start for end in other.indptr[first_iteration + 1 :])
        model = self.doc["learner"]["gradient_booster"]["model"]
        model.update(trees=self.trees, tree_info=self.tree_info, iteration_indptr=self.indptr)
        model.setdefault("gbtree_model_param", {})["num_trees"] = str(len(self.trees))

    def to_bytes(self) -> bytes:
        return json.dumps(self.doc, separators=(",", ":")).encode()


_TREE_EXACT = ("left_children", "right_children", "split_indices", "default_left")
_TREE_FLOAT32 = ("split_conditions", "base_weights")


def _same_tree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same structure and float32 values (JSON float spellings differ between writers)."""
    return all(a.get(k) == b.get(k) for k in _TREE_EXACT) and all(
        np.array_equal(np.asarray(a.get(k, []), np.float32), np.asarray(b.get(k, []), np.float32))
        for k in _TREE_FLOAT32
    )


def _scaled(tree: dict[str, Any], scale: float) -> dict[str, Any]:
    if str(tree.get("tree_param", {}).get("size_leaf_vector", "1")) not in ("0", "1"):
        raise RecordError("trees with vector leaves cannot be scaled; use sum_trees=True")
    new = copy.deepcopy(tree)
    leaves = [i for i, left in enumerate(new["left_children"]) if left == -1]
    for i in leaves:
        new["split_conditions"][i] = float(np.float32(new["split_conditions"][i] * scale))
    new["base_weights"] = [float(np.float32(w * scale)) for w in new["base_weights"]]
    return new


def bag_models(
    global_raw: bytes, replies: Sequence[tuple[bytes, float]], *, sum_trees: bool = False
) -> bytes:
    """Merge the replies' new trees into the global model (bagging).

    Each reply is a model trained on top of ``global_raw`` (``b""``: from scratch) with
    its weight. Its iterations beyond the global model's are appended, their leaves
    scaled by ``weight / total weight``, so the merged model's margin is the weighted
    mean of the replies' margins; ``sum_trees`` appends them unscaled (their sum).
    Raises :class:`~glade.errors.RecordError` for a reply that does not extend the
    global model.
    """
    if not replies:
        raise ValueError("bag_models needs at least one reply")
    models = [TreeModel.parse(raw) for raw, _ in replies]
    base = TreeModel.parse(global_raw) if global_raw else models[0].emptied()
    total = sum(w for _, w in replies)
    merged = TreeModel(copy.deepcopy(base.doc))
    for index, (model, (_, weight)) in enumerate(zip(models, replies, strict=True)):
        problem = model.extends(base)
        if problem is not None:
            raise RecordError(f"reply {index}: {problem}")
        scale = 1.0 if sum_trees else weight / total
        merged.append_from(model, first_iteration=base.num_iterations, scale=scale)
    return merged.to_bytes()
