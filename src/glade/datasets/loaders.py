"""Offline loaders: scikit-learn's bundled datasets and Hugging Face datasets from local files.

Nothing here touches the network: the scikit-learn datasets ship inside the package, and
:func:`load_local` reads files or a ``save_to_disk`` folder you already have.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from glade.errors import ConfigError

__all__ = ["SKLEARN_DATASETS", "load_local", "load_sklearn"]

SKLEARN_DATASETS = ("breast_cancer", "digits", "iris", "wine")
"""Names accepted by :func:`load_sklearn` (datasets bundled with scikit-learn)."""

_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "text",
}


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this needs the optional package {extra!r}: pip install {extra}"
        ) from exc


def load_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a dataset bundled with scikit-learn, without any download.

    >>> X, y = load_sklearn("iris")
    >>> X.shape, sorted(set(y.tolist()))
    ((150, 4), [0, 1, 2])
    """
    if name not in SKLEARN_DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(SKLEARN_DATASETS)}")
    sk_datasets = _require("sklearn.datasets", "scikit-learn")
    X, y = getattr(sk_datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)


def load_local(
    path: str | Path,
    *,
    split: str = "train",
    cache_dir: str | Path | None = None,
) -> Any:
    """A Hugging Face ``datasets.Dataset`` read from local files, never from the Hub.

    ``path`` is a folder written by ``Dataset.save_to_disk`` (a ``DatasetDict`` folder gives
    its ``split``), or a ``.csv``/``.tsv``/``.json``/``.jsonl``/``.parquet``/``.arrow``/``.txt``
    file. ``cache_dir`` is where ``datasets`` keeps its Arrow cache of files it parses.
    """
    hf = _require("datasets", "datasets")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        loaded = hf.load_from_disk(str(path))
        if isinstance(loaded, hf.DatasetDict):
            if split not in loaded:
                raise ConfigError(f"split {split!r} not in {path}; it has {', '.join(loaded)}")
            return loaded[split]
        return loaded
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ConfigError(
            f"cannot load {path.name}: use one of {', '.join(sorted(_BUILDERS))} "
            "or a folder written by Dataset.save_to_disk"
        )
    options: dict[str, Any] = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    return hf.load_dataset(
        builder,
        data_files={split: str(path)},
        split=split,
        cache_dir=None if cache_dir is None else str(cache_dir),
        **options,
    )
