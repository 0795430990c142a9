import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from glade import Array
from glade.array import dtype_from_name

NUMERIC = st.sampled_from(
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ]
)


@given(
    hnp.arrays(
        dtype=NUMERIC.map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_numpy_round_trip_is_exact(x):
    a = Array(x)
    assert a.dtype == x.dtype.name
    assert a.shape == x.shape
    assert a.nbytes == x.nbytes
    np.testing.assert_array_equal(a.numpy(), x)
    b = Array.from_bytes(a.tobytes(), dtype=a.dtype, shape=a.shape)
    assert b == a
    assert pickle.loads(pickle.dumps(a, protocol=5)) == a


def test_wrapping_is_zero_copy_and_view_is_read_only():
    x = np.arange(10, dtype=np.float32)
    a = Array(x)
    assert np.shares_memory(a.numpy(), x)
    with pytest.raises(ValueError, match="read-only"):
        a.numpy()[0] = 1
    c = a.numpy(copy=True)
    c[0] = 5
    assert a.numpy()[0] == 0


def test_copy_flag_detaches_from_source():
    x = np.zeros(3)
    a = Array(x, copy=True)
    x[0] = 7
    assert a.numpy()[0] == 0


def test_non_contiguous_and_big_endian_are_normalized():
    x = np.arange(12, dtype=">i4").reshape(3, 4).T
    a = Array(x)
    assert a.numpy().flags.c_contiguous
    assert a.numpy().dtype.byteorder in "<="
    np.testing.assert_array_equal(a.numpy(), x)


def test_zero_d_and_empty_arrays():
    assert Array(np.float64(2.5)).shape == ()
    assert Array(np.zeros((0, 3), np.int8)).nbytes == 0


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object()]), [1, 2], "x"])
def test_unsupported_data_is_a_clear_type_error(bad):
    with pytest.raises(TypeError, match="Array"):
        Array(bad)


def test_from_bytes_checks_size():
    with pytest.raises(ValueError, match="do not match"):
        Array.from_bytes(b"\x00" * 7, dtype="float32", shape=(2,))


def test_unknown_dtype_name():
    with pytest.raises(TypeError, match="unknown array dtype"):
        dtype_from_name("float99")


def test_digest_is_content_address():
    a = Array(np.arange(4, dtype=np.int32))
    b = Array(np.arange(4, dtype=np.int32).copy())
    c = Array(np.arange(5, dtype=np.int32))
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 64


def test_bfloat16_via_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    a = Array(x)
    assert a.dtype == "bfloat16"
    b = Array.from_bytes(a.tobytes(), dtype="bfloat16", shape=(3,))
    assert b == a


def test_torch_state_dict_round_trip():
    torch = pytest.importorskip("torch")
    from glade import ArrayRecord

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sd = model.state_dict()
    rec = ArrayRecord(sd)
    assert list(rec) == list(sd)
    assert rec["1.num_batches_tracked"].dtype == "int64"
    back = rec.to_torch_state_dict()
    model2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model2.load_state_dict(back)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, sd[k])
    # Copies by default: training the source model does not change the record.
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(rec["0.weight"].torch(), model[0].weight)
    bf = Array.from_torch(torch.ones(2, dtype=torch.bfloat16))
    assert bf.dtype == "bfloat16"
    assert bf.torch().dtype == torch.bfloat16


def test_sha256_is_deprecated_and_still_the_sha256_of_the_bytes() -> None:
    import hashlib

    a = Array(np.arange(5, dtype=np.int64))
    with pytest.warns(DeprecationWarning, match="Array.digest"):
        assert a.sha256 == hashlib.sha256(a.memoryview()).hexdigest() != a.digest
