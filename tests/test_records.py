import pickle

import numpy as np
import pytest

from glade import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict


def test_array_record_from_list_and_mapping():
    rec = ArrayRecord([np.zeros(2), np.ones(3, np.float32)])
    assert list(rec) == ["0", "1"]
    assert isinstance(rec["1"], Array)
    assert rec.nbytes == 16 + 12
    nd = rec.to_numpy_ndarrays()
    assert [a.shape for a in nd] == [(2,), (3,)]
    rec2 = ArrayRecord({"w": np.eye(2), "b": Array(np.zeros(2))})
    assert list(rec2) == ["w", "b"]


def test_array_record_keeps_insertion_order():
    names = [f"layer{i}" for i in (3, 1, 2, 0)]
    rec = ArrayRecord({n: np.zeros(1) for n in names})
    assert list(rec) == names


@pytest.mark.parametrize(
    ("factory", "key", "value", "words"),
    [
        (ArrayRecord, "w", [1, 2], ["ArrayRecord['w']", "list"]),
        (MetricRecord, "acc", "high", ["MetricRecord['acc']", "str"]),
        (MetricRecord, "flag", True, ["MetricRecord['flag']", "bool"]),
        (MetricRecord, "mixed", [1, "a"], ["MetricRecord['mixed']", "str"]),
        (ConfigRecord, "obj", object(), ["ConfigRecord['obj']", "object"]),
        (ConfigRecord, "mixed", [1, "a"], ["ConfigRecord['mixed']", "int", "str"]),
        (RecordDict, "x", {"a": 1}, ["RecordDict['x']", "dict"]),
    ],
)
def test_wrong_value_type_names_key_and_type(factory, key, value, words):
    with pytest.raises(TypeError) as info:
        factory({key: value})
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("factory", [ArrayRecord, MetricRecord, ConfigRecord, RecordDict])
def test_keys_must_be_non_empty_strings(factory):
    rec = factory()
    with pytest.raises(TypeError, match="keys must be non-empty str"):
        rec[1] = None  # type: ignore[index]
    with pytest.raises(TypeError, match="keys must be non-empty str"):
        rec[""] = None


def test_metric_record_normalizes_numpy_scalars_and_lists():
    rec = MetricRecord({"a": np.float32(0.5), "n": np.int64(3), "l": [1, 2.5], "i": [1, 2]})
    assert rec["a"] == 0.5 and type(rec["a"]) is float
    assert type(rec["n"]) is int
    assert rec["l"] == [1.0, 2.5]
    assert rec["i"] == [1, 2]


def test_config_record_accepts_scalars_and_homogeneous_lists():
    rec = ConfigRecord(
        {"b": True, "i": 1, "f": 0.1, "s": "x", "y": b"\x00", "ls": ["a", "b"], "lf": [1, 0.5]}
    )
    assert rec["lf"] == [1.0, 0.5]
    assert rec["b"] is True


def test_missing_key_lists_known_keys():
    with pytest.raises(KeyError, match="'lr'"):
        ConfigRecord({"lr": 0.1})["momentum"]


def test_record_dict_views_and_copy_and_pickle():
    rd = RecordDict(
        {
            "arrays": ArrayRecord([np.arange(3)]),
            "metrics": MetricRecord({"loss": 1.0}),
            "config": ConfigRecord({"lr": 0.1}),
        }
    )
    assert list(rd.array_records) == ["arrays"]
    assert list(rd.metric_records) == ["metrics"]
    assert list(rd.config_records) == ["config"]
    cp = rd.copy()
    cp["config"]["lr"] = 0.2
    assert rd["config"]["lr"] == 0.1
    assert pickle.loads(pickle.dumps(rd)) == rd


def test_records_of_different_kinds_are_not_equal():
    assert MetricRecord({"a": 1}) != ConfigRecord({"a": 1})
    assert MetricRecord({"a": 1}) == MetricRecord({"a": 1})
