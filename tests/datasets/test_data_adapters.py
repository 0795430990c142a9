"""Partitioners work the same on NumPy arrays, dicts, pandas DataFrames and HF Datasets."""

import subprocess
import sys

import numpy as np
import pytest

from glade.datasets import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalIdPartitioner,
    column,
    load_local,
    load_sklearn,
    num_rows,
    select_rows,
)
from glade.errors import ConfigError

N = 60
X = np.arange(N * 2, dtype=np.float32).reshape(N, 2)
Y = np.arange(N) % 4
USERS = np.array([f"u{i % 5}" for i in range(N)])


def test_numpy_containers():
    assert num_rows(X) == num_rows((X, Y)) == num_rows({"x": X, "label": Y}) == N
    assert num_rows([1, 2, 3]) == 3
    idx = np.array([5, 0, 7])
    Xs, ys = select_rows((X, Y), idx)
    assert np.array_equal(Xs, X[idx]) and np.array_equal(ys, Y[idx])
    assert np.array_equal(select_rows({"label": Y}, idx)["label"], Y[idx])
    assert np.array_equal(select_rows(X, idx), X[idx])
    assert np.array_equal(column((X, Y), "label"), Y)  # a string key selects y of (X, y)
    assert np.array_equal(column((X, Y, USERS), 2), USERS)


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match=r"same number of rows \(\[0\]: 60, \[1\]: 3\)"):
        num_rows((X, Y[:3]))
    with pytest.raises(ValueError, match="x: 60, label: 3"):
        num_rows({"x": X, "label": Y[:3]})


def test_labels_from_tuple_dict_and_array_agree():
    parts = [
        DirichletPartitioner(4, alpha=0.5, min_partition_size=1, seed=7).partition_indices(data)
        for data in ((X, Y), {"x": X, "label": Y}, Y)
    ]
    parts.append(
        DirichletPartitioner(
            4, alpha=0.5, labels=Y, min_partition_size=1, seed=7
        ).partition_indices(N)
    )
    for other in parts[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(parts[0], other, strict=True))


def test_one_dimensional_data_is_data_when_labels_are_given_up_front():
    paths = np.array([f"img{i}.png" for i in range(N)])
    p = DirichletPartitioner(3, alpha=1.0, labels=Y, min_partition_size=1, seed=2)
    part = p.load_partition(paths, 1)
    assert part.tolist() == paths[p.partition_indices(N)[1]].tolist()


def test_load_partition_returns_the_rows_of_the_partition():
    p = IidPartitioner(3, seed=0)
    Xp, yp = p.load_partition((X, Y), 2)
    idx = p.partition_indices(N)[2]
    assert np.array_equal(Xp, X[idx]) and np.array_equal(yp, Y[idx])


def test_pandas_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": X[:, 0], "label": Y, "user": USERS}, index=np.arange(N) + 1000)
    p = DirichletPartitioner(3, alpha=1.0, label_key="label", min_partition_size=1, seed=1)
    parts = p.partition_indices(df)
    ref = DirichletPartitioner(3, alpha=1.0, labels=Y, min_partition_size=1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, ref.partition_indices(N), strict=True))
    part = p.load_partition(df, 1)
    assert isinstance(part, pd.DataFrame)
    assert part.index.tolist() == (parts[1] + 1000).tolist()  # original index kept
    nat = NaturalIdPartitioner("user")
    assert set(nat.load_partition(df, 4)["user"]) == {"u4"}
    with pytest.raises(ConfigError, match=r"unknown column 'y'.*'a', 'label', 'user'"):
        DirichletPartitioner(3, alpha=1.0, label_key="y").partition_indices(df)


def test_hf_dataset():
    hf = pytest.importorskip("datasets")
    ds = hf.Dataset.from_dict({"a": X[:, 0], "label": Y, "user": USERS})
    p = DirichletPartitioner(3, alpha=1.0, min_partition_size=1, seed=1)
    parts = p.partition_indices(ds)
    ref = DirichletPartitioner(3, alpha=1.0, labels=Y, min_partition_size=1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, ref.partition_indices(N), strict=True))
    part = p.load_partition(ds, 2)
    assert isinstance(part, hf.Dataset)
    assert part["a"][:] == X[parts[2], 0].tolist()
    sub = ds.select(np.arange(0, N, 2))  # labels must come from the selected rows only
    assert np.array_equal(column(sub, "label"), Y[::2])
    nat = NaturalIdPartitioner("user")
    assert len(nat.partition_indices(ds)) == nat.num_partitions == 5
    assert set(nat.load_partition(ds, 0)["user"]) == {"u0"}
    with pytest.raises(ConfigError, match="unknown column 'fine_label'"):
        DirichletPartitioner(3, alpha=1.0, label_key="fine_label").partition_indices(ds)


def test_load_local_files(tmp_path):
    hf = pytest.importorskip("datasets")
    csv = tmp_path / "data.csv"
    csv.write_text("a,label\n" + "".join(f"{i},{i % 3}\n" for i in range(12)))
    ds = load_local(csv, cache_dir=tmp_path / "cache")
    assert ds.column_names == ["a", "label"] and len(ds) == 12
    hf.DatasetDict({"test": ds.select(range(4))}).save_to_disk(str(tmp_path / "saved"))
    assert len(load_local(tmp_path / "saved", split="test")) == 4
    with pytest.raises(ConfigError, match="split 'train' not in"):
        load_local(tmp_path / "saved")
    with pytest.raises(ConfigError, match=r"cannot load data\.xyz"):
        (tmp_path / "data.xyz").write_text("x")
        load_local(tmp_path / "data.xyz")
    with pytest.raises(FileNotFoundError):
        load_local(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("iris", (150, 4), 3), ("digits", (1797, 64), 10), ("wine", (178, 13), 3)],
)
def test_load_sklearn(name, shape, classes):
    pytest.importorskip("sklearn")
    X_, y_ = load_sklearn(name)
    assert X_.shape == shape and len(y_) == shape[0] and len(np.unique(y_)) == classes


def test_load_sklearn_unknown_name():
    with pytest.raises(ConfigError, match="choose one of breast_cancer, digits, iris, wine"):
        load_sklearn("mnist")


def test_importing_glade_datasets_pulls_no_optional_library():
    code = (
        "import sys, glade.datasets; print(sorted(m for m in "
        "('pandas', 'datasets', 'matplotlib', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
