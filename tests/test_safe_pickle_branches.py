"""The defensive branches of the restricted unpickler (the recording functions that stand in for
the allowed globals, and the scan's size limit), each reached by a crafted file.

Every bad file must give one line of CheckpointError (UnsafeCheckpointError where it names code),
never a traceback, never a silent misreading, never a hang.
"""

from __future__ import annotations

import io
import pickle
import time
from collections import OrderedDict

import numpy as np
import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)
from reader_helpers import (
    corrupt,
    gs_kwargs,
    legacy_stream,
    nvidia_bytes_refusal,
    nvidia_refusal,
    op_array_state,
    op_dtype,
    op_empty_array,
    op_int,
    op_tuple,
    storage_call,
    tf_networks,
)

from stylelift.errors import CheckpointError
from stylelift.models import safe_pickle
from stylelift.models.nvidia import read_nvidia_pickle

# ----------------------------------------------------------------------------------------------
# safe_pickle: the recording functions that stand in for the allowed globals


NUMPY_CASES = {
    "array_restored_twice": (op_empty_array() + op_array_state() + b"b" + op_array_state() + b"b", "a numpy array was restored twice"),
    "array_state_not_a_tuple": (op_empty_array() + pf.op_str("state") + b"b", "bad numpy array state"),
    "array_without_dtype": (op_empty_array() + op_array_state(dtype=pf.op_str("<f4")) + b"b", "a numpy array without a dtype"),
    "array_of_objects": (op_empty_array() + op_array_state(raw=b"]") + b"b", "a numpy array whose data is not raw bytes (object arrays are not read)"),
    "array_reconstruct_of_other_class": (op_empty_array(cls=b"N"), "numpy _reconstruct of something other than an ndarray"),
    "dtype_with_subarray": (
        op_dtype() + op_tuple(op_int(3), pf.op_str("<"), op_tuple(op_dtype(), op_tuple(op_int(2))), b"N", b"N", op_int(-1), op_int(-1), op_int(0)) + b"b",
        "unsupported numpy dtype state (only plain numeric dtypes are read)",
    ),
    "dtype_byte_order": (
        op_dtype() + op_tuple(op_int(3), pf.op_str("?"), b"N", b"N", b"N", op_int(-1), op_int(-1), op_int(0)) + b"b",
        "bad numpy byte order '?'",
    ),
    "dtype_object": (op_dtype("O"), "unsupported numpy dtype 'O'"),
    "dtype_of_a_marker": (pf.op_call(pf.op_global("numpy", "dtype"), pf.op_global("numpy", "ndarray")), "unsupported numpy dtype '<numpy.ndarray>'"),
    "scalar_of_wrong_size": (pf.op_call(pf.op_global("numpy._core.multiarray", "scalar"), op_dtype(), pf.op_bytes(b"\0")), "a malformed numpy scalar"),
    "codecs_encode_utf8": (pf.op_call(pf.op_global("_codecs", "encode"), pf.op_str("x"), pf.op_str("utf-8")), "unexpected use of _codecs.encode"),
}  # fmt: skip


@pytest.mark.parametrize("case", NUMPY_CASES)
def test_malformed_numpy_data_in_a_network_pickle_is_one_line_error(tmp_path, case):
    body, said = NUMPY_CASES[case]
    e = nvidia_bytes_refusal(tmp_path, pf.proto2(body))
    assert corrupt(e, "bad.pkl") == f"cannot read bad.pkl: {said}"


def test_numpy_dtype_states_of_plain_dtypes_are_read():
    """'|' (no byte order: bytes) and '=' are accepted as they are; only '<' and '>' change the dtype."""
    state = op_tuple(op_int(3), pf.op_str("|"), b"N", b"N", b"N", op_int(-1), op_int(-1), op_int(0))
    body = op_empty_array() + op_array_state(dtype=op_dtype("u1") + state + b"b", raw=pf.op_bytes(b"\x01\x02")) + b"b"
    record = safe_pickle.loads(pf.proto2(body))
    assert record.array.dtype == np.uint8 and record.array.tolist() == [1, 2]


def test_python2_numpy_array_data_as_latin1_text_is_read():
    text = np.array([1.5, -2.0], "<f4").tobytes().decode("latin-1")
    body = op_empty_array() + op_array_state(raw=pf.op_str(text)) + b"b"
    record = safe_pickle.loads(pf.proto2(body))
    assert record.array.tolist() == [1.5, -2.0]


def test_protocol_5_numpy_arrays_with_data_in_band_are_read():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    record = safe_pickle.loads(pickle.dumps(values, protocol=5))  # numpy._core.numeric._frombuffer
    assert isinstance(record, safe_pickle.ArrayRecord) and np.array_equal(record.array, values)


TF_STATE_CASES = {
    "network_restored_twice": (b"}b}b", "a TensorFlow network was restored twice"),
    "network_state_not_a_dict": (b"]b", "a TensorFlow network without a state dict"),
}


@pytest.mark.parametrize("case", TF_STATE_CASES)
def test_malformed_tensorflow_network_state_is_one_line_error(tmp_path, case):
    build, said = TF_STATE_CASES[case]
    e = nvidia_bytes_refusal(tmp_path, pf.proto2(pf.op_call(pf.op_global("dnnlib.tflib.network", "Network")) + build))
    assert corrupt(e, "bad.pkl") == f"cannot read bad.pkl: {said}"


PERSISTENT_CASES = {
    "meta_not_a_dict": ("meta", "a persistent object without its meta dict"),
    "meta_of_a_function": ({"type": "function"}, "unsupported persistent object type 'function'"),
    "meta_class_name_not_text": ({"type": "class", "class_name": 5, "state": {}}, "a persistent object with a malformed meta dict"),
    "meta_state_not_a_dict": ({"type": "class", "class_name": "Generator", "state": [1]}, "a persistent object with a malformed meta dict"),
}


@pytest.mark.parametrize("case", PERSISTENT_CASES)
def test_malformed_persistent_object_is_one_line_error(tmp_path, case):
    meta, said = PERSISTENT_CASES[case]
    e = nvidia_refusal(tmp_path, {"G_ema": pf.Reduce(pf._reconstruct_persistent_obj, meta)})
    assert corrupt(e, "net.pkl") == f"cannot read net.pkl: {said}"


@pytest.mark.parametrize(
    "value, shown",
    [
        (torch.ones(2), "TensorRecord([2], torch.float32)"),
        (np.zeros(3, np.float32), "ArrayRecord((3,))"),
        (pf.Persistent("Mystery", {}, ""), "PersistentObject('Mystery')"),
        (pf.Network({"name": "G_mapping", "version": 4}), "TFNetwork('G_mapping', version=4)"),
    ],
    ids=["tensor", "array", "persistent", "tf-network"],
)
def test_records_in_an_error_message_are_named_briefly(tmp_path, value, shown):
    e = nvidia_refusal(tmp_path, {"G_ema": pf.Reduce(pf._reconstruct_persistent_obj, {"type": value})})
    assert corrupt(e, "net.pkl") == f"cannot read net.pkl: unsupported persistent object type {shown!r}"


def _typed_storage(t: torch.Tensor):
    return t._typed_storage()


TENSOR_CASES = {
    "negative_size": (lambda: (_typed_storage(torch.ones(2)), 0, (-1,), (1,)), "bad tensor shape"),
    "shape_not_a_tuple": (lambda: (_typed_storage(torch.ones(2)), 0, "ab", (1,)), "bad tensor shape"),
    "no_storage": (lambda: (None, 0, (1,), (1,)), "a tensor without a storage"),
    "strides_do_not_match_shape": (lambda: (_typed_storage(torch.ones(2)), 0, (2,), (1, 1)), "bad tensor layout"),
    "negative_offset": (lambda: (_typed_storage(torch.ones(2)), -1, (1,), (1,)), "bad tensor layout"),
}


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("case", TENSOR_CASES)
def test_malformed_tensor_is_one_line_error(tmp_path, case):
    make, said = TENSOR_CASES[case]
    tensor = pf.Reduce(torch._utils._rebuild_tensor_v2, *make(), False, OrderedDict())
    e = nvidia_refusal(tmp_path, {"G_ema": tensor})
    assert corrupt(e, "net.pkl") == f"cannot read net.pkl: {said}"


def test_parameter_of_something_other_than_a_tensor_is_one_line_error(tmp_path):
    e = nvidia_refusal(tmp_path, {"G_ema": pf.Reduce(torch._utils._rebuild_parameter, 5, False, OrderedDict())})
    assert corrupt(e, "net.pkl") == "cannot read net.pkl: a parameter without a tensor"


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_empty_tensor_is_rebuilt_without_reading_its_storage():
    record = safe_pickle.loads(pickle.dumps(torch.zeros(0, 3), protocol=4))
    out = record.materialize()
    assert out.shape == (0, 3) and out.dtype == torch.float32


STORAGE_CASES = {
    "persistent_id_not_a_storage": (legacy_stream(("storage", torch.FloatStorage)), "unsupported persistent id in tensor storage bytes"),
    "storage_type_as_text": (legacy_stream(("storage", "FloatStorage", "k", "cpu", 2, None)), "malformed storage id in tensor storage bytes"),
    "negative_numel": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", -1, None)), "unsupported storage view in tensor storage bytes"),
    "storage_view": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, ("v", 0, 1))), "unsupported storage view in tensor storage bytes"),
    "big_endian": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, None), little_endian=False), "tensor storage saved on a big-endian machine"),
    "other_keys": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, None), keys=("j",)), "tensor storage bytes that hold something other than one storage"),
    "cut_after_keys": (legacy_stream(("storage", torch.FloatStorage, "k", "cpu", 2, None))[:-12], "truncated tensor storage bytes"),
}  # fmt: skip


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("case", STORAGE_CASES)
def test_malformed_tensor_storage_bytes_are_one_line_error(tmp_path, case):
    stream, said = STORAGE_CASES[case]
    e = nvidia_bytes_refusal(tmp_path, storage_call(stream))
    assert corrupt(e, "bad.pkl").startswith(f"cannot read bad.pkl: {said}")


def test_tensor_storage_given_as_text_is_one_line_error(tmp_path):
    e = nvidia_bytes_refusal(tmp_path, pf.proto2(pf.op_call(pf.op_global("torch.storage", "_load_from_bytes"), pf.op_str("abc"))))
    assert corrupt(e, "bad.pkl") == "cannot read bad.pkl: tensor storage that is not bytes"


def test_negative_length_field_is_one_line_error(tmp_path):
    e = nvidia_bytes_refusal(tmp_path, b"\x80\x02T\xff\xff\xff\xff.")  # BINSTRING of -1 bytes
    assert corrupt(e, "bad.pkl") == "cannot read bad.pkl: a negative length at byte 7"


def test_file_that_shrinks_while_being_scanned_is_one_line_error():
    """Only a file cut short during the read gets here: the scan's end is the size fstat reported."""
    with pytest.raises(CheckpointError) as e:
        safe_pickle.scan(io.BytesIO(b"\x80\x02J\x01\x00"), 0, 100, "cut.pkl", safe_pickle.PLAIN_DATA)
    assert corrupt(e, "cut.pkl").startswith("cannot read cut.pkl: the file is truncated or corrupt")



# ----------------------------------------------------------------------------------------------
# Exponentially large values: x = (x, x) 60 times over is 60 small tuples in a pickle and 2**60
# leaves to hash or print. The readers look settings up in sets and print them in messages, so the
# scan refuses such a value before anything is built.


def _shared_tuple(leaf, depth: int = 60):
    x = leaf
    for _ in range(depth):
        x = (x, x)
    return x


@pytest.mark.parametrize("setting", ["synthesis_func", "mapping_func", "architecture"])
def test_shared_tuple_setting_is_refused_before_anything_walks_it(tmp_path, setting):
    nets = tf_networks()
    gs_kwargs(nets)[setting] = _shared_tuple(np.zeros(1, np.float32))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="walking it visits more than 33,554,432 items"):
        read_nvidia_pickle(pf.dump(nets, tmp_path / "net.pkl", protocol=3))
    assert time.perf_counter() - start < 5


def test_shared_tuple_persistent_type_is_refused_before_anything_walks_it(tmp_path):
    meta = {"type": _shared_tuple(np.zeros(1, np.float32))}
    with pytest.raises(CheckpointError, match="walking it visits more than 33,554,432 items"):
        read_nvidia_pickle(pf.dump({"G_ema": pf.Reduce(pf._reconstruct_persistent_obj, meta)}, tmp_path / "net.pkl"))


def test_a_value_shared_within_the_limit_is_read():
    """Sharing itself is fine (real files refer to one string or tensor many times); the limit is
    on the items a walk would visit: 2**20 here, 2**26 over it."""
    value = safe_pickle.loads(pickle.dumps(_shared_tuple("x", depth=20), protocol=2), allow=safe_pickle.PLAIN_DATA)
    assert value == _shared_tuple("x", depth=20)
    with pytest.raises(CheckpointError, match="walking it visits more than 33,554,432 items"):
        safe_pickle.loads(pickle.dumps(_shared_tuple("x", depth=26), protocol=2), allow=safe_pickle.PLAIN_DATA)
