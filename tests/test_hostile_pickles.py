"""Pickles that ask to run code, blow up memory, nest without end or are simply broken.

Every hostile payload here would create a marker file if an ordinary unpickler loaded it (the
control tests show that they do); stylelift must refuse each in one line and leave no marker.
"""

import io
import os
import pickle
import struct
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pickle_fixtures as pf
import pytest
import torch
from pickle_fixtures import one_thread  # noqa: F401 (autouse fixture)

from stylelift.errors import CheckpointError, UnsafeCheckpointError
from stylelift.models import safe_pickle
from stylelift.models.nvidia import read_nvidia_pickle

CORPUS = list(pf.hostile_corpus(Path("marker")))
RUNS_UNDER_PLAIN_PICKLE = [
    "os_system", "posix_system", "posix_system_stack_global", "builtins_eval", "builtins_exec", "builtins_getattr",
    "builtins_import", "subprocess_popen", "subprocess_check_output", "pickle_loads_nested", "functools_partial",
    "inst_opcode", "obj_opcode", "storage_bytes_payload", "storage_bytes_payload_exec",
]  # fmt: skip


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("name", CORPUS)
def test_hostile_pickle_is_refused_in_one_line_without_side_effects(tmp_path, name):
    marker = tmp_path / "ran"
    data, what = pf.hostile_corpus(marker)[name]
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafeCheckpointError) as e:
        read_nvidia_pickle(path)
    assert str(e.value) == f"refusing to load evil.pkl: it asks to run code ({what})"
    assert not marker.exists()


@pytest.mark.parametrize("name", RUNS_UNDER_PLAIN_PICKLE)
def test_the_payloads_do_run_under_plain_pickle(tmp_path, name):
    """Control: the corpus is not a dud; pickle.loads runs each of these payloads."""
    marker = tmp_path / "ran"
    data, _ = pf.hostile_corpus(marker)[name]
    result = pickle.loads(data)
    if hasattr(result, "wait"):  # subprocess.Popen
        result.wait(timeout=10)
    assert marker.exists()


def test_payload_in_the_storage_of_an_otherwise_valid_network_is_refused(tmp_path):
    """Storage bytes are checked as the pickle is read, even those of networks stylelift skips (D)."""
    marker = tmp_path / "ran"
    snapshot = pf.nvidia_pytorch_snapshot(pf.random_generator(pf.tiny_config()))
    evil_storage = pf.Reduce(
        torch.storage._load_from_bytes, pf.legacy_storage_bytes(pf.Reduce(os.system, pf.touch_command(marker)))
    )
    snapshot["D"].state["_parameters"]["weight"] = pf.Reduce(
        torch._utils._rebuild_tensor_v2, evil_storage, 0, (1,), (1,), False, OrderedDict()
    )
    path = pf.dump(snapshot, tmp_path / "network.pkl")
    with pytest.raises(UnsafeCheckpointError) as e:
        read_nvidia_pickle(path)
    assert str(e.value) == "refusing to load network.pkl: it asks to run code (posix.system)"
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):  # the same file through plain torch would run it:
        safe_pickle.load(path)  # (we do not demonstrate that here; see test_the_payloads_do_run_under_plain_pickle)


def test_tensorflow_build_module_source_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    G = pf.random_generator(pf.tiny_config())
    nets = pf.nvidia_tf_networks(G)
    for net in nets:
        net._state["build_module_src"] = f"{pf.python_touch(marker)}\n"
    raw = read_nvidia_pickle(pf.dump(nets, tmp_path / "tf.pkl", protocol=3))
    assert raw.format == "nvidia-tensorflow"
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------
# The storage decoder


def storage_record(t: torch.Tensor) -> safe_pickle.TensorRecord:
    return safe_pickle.loads(pickle.dumps(t, protocol=4))


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]
)
def test_storage_bytes_decode_exactly_as_torch_weights_only_load(dtype):
    t = (torch.randn(3, 5) * 10).to(dtype)
    data = pf.legacy_storage_bytes(t._typed_storage())
    expected = torch.load(io.BytesIO(data), weights_only=True)  # torch's own restricted reader
    storage = safe_pickle._legacy_storage(data, source="x")
    assert storage.dtype == dtype == expected.dtype and storage.numel == expected.size() == 15
    assert torch.equal(storage.tensor(), torch.tensor(expected.tolist(), dtype=dtype))


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t,
        lambda t: t.t(),
        lambda t: t[1:, 2:],
        lambda t: t[:, ::2],
        lambda t: t.reshape(1, 3, 2, 2).to(memory_format=torch.channels_last),
    ],
    ids=["contiguous", "transposed", "offset", "strided", "channels_last"],
)
def test_tensor_views_are_rebuilt_exactly(make):
    t = make(torch.randn(3, 4))
    record = storage_record(t)
    assert record.shape == tuple(t.shape)
    out = record.materialize()
    assert torch.equal(out, t) and out.is_contiguous()


def test_storages_saved_from_the_gpu_are_read_to_the_cpu():
    values = torch.arange(4, dtype=torch.float32)
    data = torch_legacy_stream(4, values.numpy().tobytes(), storage_type=torch.cuda.FloatStorage, location="cuda:0")
    storage = safe_pickle._legacy_storage(data, source="x")
    assert storage.location == "cuda:0" and torch.equal(storage.tensor(), values)


# ----------------------------------------------------------------------------------------------
# Memory bombs, deep nesting, runaway stacks


def torch_legacy_stream(numel_claimed: int, data: bytes, storage_type=torch.FloatStorage, location="cpu") -> bytes:
    """A legacy torch.save stream for one storage whose header claims `numel_claimed` elements."""
    storage = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", storage_type, "k", location, numel_claimed, None) if obj is storage else None

    main = io.BytesIO()
    Pickler(main, protocol=2).dump(storage)
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))
    head = b"".join(pickle.dumps(x, protocol=2) for x in (safe_pickle.TORCH_LEGACY_MAGIC, 1001, sys_info))
    return head + main.getvalue() + pickle.dumps(["k"], protocol=2) + struct.pack("<q", numel_claimed) + data


class NumpyReduce:
    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), self.state


def deep_bottom_up(n: int) -> bytes:
    return b"\x80\x02]q\x00" + b"]h\x00aq\x000" * n + b"h\x00."  # each new list holds the previous one


def deep_top_down(n: int) -> bytes:
    # root kept as memo 2; memo 0 is the innermost list; each step appends a new list into it
    return b"\x80\x02]q\x00q\x02" + b"h\x00]q\x01a0h\x01q\x000" * n + b"0h\x02."


BOMBS = {
    "binbytes8_of_a_terabyte": (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x" * 8 + b".", "past the end of the file"),
    "long4_of_a_gigabyte": (b"\x80\x02\x8b" + struct.pack("<i", 1 << 30) + b"\x00" * 16 + b".", "an integer of 1073741824 bytes"),
    "text_long_of_100k_digits": (b"L" + b"9" * 100_000 + b"L\n.", "an integer of 100001 digits"),
    "memo_index_of_4g": (b"\x80\x02]r\xff\xff\xff\xff.", "memo index 4294967295"),
    "numpy_array_of_4tb": (
        pickle.dumps(NumpyReduce((1, (10**12,), np.dtype("f4"), False, b"\0" * 4)), protocol=3),
        "a numpy array of shape [1000000000000] with 4 bytes",
    ),
    "tensor_view_beyond_storage": (
        pickle.dumps(
            pf.Reduce(
                torch._utils._rebuild_tensor_v2, torch.ones(1)._typed_storage(), 0, (10**6, 10**6), (0, 0), False, OrderedDict()
            ),
            protocol=4,
        ),
        "does not fit its storage of 1 elements",
    ),
    "storage_header_of_a_terabyte": (
        pickle.dumps(pf.Reduce(torch.storage._load_from_bytes, torch_legacy_stream(1 << 40, b"\0" * 4)), protocol=4),
        "size does not match their header",
    ),
    "100k_marks": (b"\x80\x02" + b"(" * 100_000 + b".", "more than 100 nested MARKs"),
    "100k_nested_tuples": (b"\x80\x02N" + b"\x85" * 100_000 + b".", "nested more than 100 levels deep"),
    "100k_nested_lists_via_memo": (deep_bottom_up(100_000), "nested more than 100 levels deep"),
    "200k_items_on_the_stack": (b"\x80\x02" + b"N" * 200_000 + b".", "more than 100000 items on the stack"),
    # x = (x, x) sixty times over, then a dict key: hashing it would take 2**60 steps
    "shared_tuple_2_to_the_60": (b"\x80\x04]\x8c\x01a" + b"2\x86" * 60 + b"a.", "walking it visits more than 33,554,432 items"),  # x = (x, x): hashing or printing it never ends
    "dict_key_a_nested_tuple": (b"\x80\x04}\x8c\x01a" + b"2\x86" * 3 + b"Ns.", "a dict key that is not a string"),
    # 20k ints that share one hash: a frozenset of them fills in quadratic time
    "frozenset_of_colliding_ints": (
        b"\x80\x04(" + b"".join(b"\x8a\x0a" + (k * ((1 << 61) - 1)).to_bytes(10, "little", signed=True) for k in range(1, 20_001)) + b"\x91.",
        "a frozenset member that is not a string",
    ),
    "dict_opcode_with_a_nested_tuple_key": (b"(\x8c\x01a" + b"2\x86" * 3 + b"Nd.", "a dict key that is not a string"),
    "ordered_dict_built_from_pairs": (
        b"\x80\x02ccollections\nOrderedDict\n]" + b"\x8c\x01a" + b"2\x86" * 3 + b"N\x86a" + b"\x85R.",
        "collections.OrderedDict built from arguments",
    ),
    "set_of_nested_tuples_via_reduce": (
        b"\x80\x02c__builtin__\nset\n\x8c\x01a" + b"2\x86" * 3 + b"\x85\x85R.",
        "a set member that is not a string",
    ),
}


@pytest.mark.parametrize("name", BOMBS)
def test_memory_and_recursion_bombs_are_refused_quickly(tmp_path, name):
    data, fragment = BOMBS[name]
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(path)
    assert time.perf_counter() - start < 3
    assert not isinstance(e.value, UnsafeCheckpointError)
    assert fragment in str(e.value) and "\n" not in str(e.value) and "bomb.pkl" in str(e.value)


def test_object_count_is_capped(tmp_path, monkeypatch):
    """Each opcode may allocate an object; a cap on opcodes caps that memory (real files stay far below it)."""
    path = pf.write_nvidia_pytorch(tmp_path / "net.pkl", pf.random_generator(pf.tiny_config()))
    monkeypatch.setattr(safe_pickle, "MAX_OPS", 1000)
    with pytest.raises(CheckpointError, match="more than 1000 opcodes at byte"):
        read_nvidia_pickle(path)


def test_nesting_built_top_down_is_a_clean_error_not_a_crash(tmp_path):
    path = tmp_path / "deep.pkl"
    path.write_bytes(deep_top_down(20_000))  # far deeper than Python's recursion limit
    with pytest.raises(CheckpointError, match="a container filled after it was put inside another"):  # its depth is not known when it is placed
        read_nvidia_pickle(path)


def test_many_views_of_one_storage_cannot_multiply_memory(tmp_path):
    big = torch.zeros(100_000)._typed_storage()
    views = {
        f"w{i}": pf.Reduce(torch._utils._rebuild_tensor_v2, big, 0, (100_000,), (1,), False, OrderedDict()) for i in range(50)
    }
    data = pickle.dumps(views, protocol=4)
    records = safe_pickle.loads(data, "views.pkl")
    budget = safe_pickle.TensorBudget(2 * len(data), "views.pkl")
    with pytest.raises(CheckpointError, match="share storage more than any network file does"):
        for record in records.values():
            budget.materialize(record)


def test_one_string_handed_to_a_copying_call_again_and_again_is_refused():
    def memo_reuse(func: bytes, data: bytes, extra: bytes, calls: int) -> bytes:
        """A list of `calls` results of func(data[, extra]), data stored once and each call made by
        memo references (7 bytes each): a copy of data per call, from a file that holds one."""
        args = b"h\x01h\x02h\x03\x86" if extra else b"h\x01h\x02\x85"
        body = b"\x80\x02]q\x00" + func + b"q\x010" + data + b"q\x020" + (extra + b"q\x030" if extra else b"")
        return body + (args + b"Ra") * calls + b"."

    text = b"X" + struct.pack("<I", 100_000) + b"a" * 100_000
    latin1 = b"X\x06\x00\x00\x00latin1"
    assert len(safe_pickle.loads(memo_reuse(b"c_codecs\nencode\n", text, latin1, 2))) == 2  # twice what it holds: as much as a real file copies
    with pytest.raises(CheckpointError, match=r"data given to _codecs.encode again and again \(each would copy it: 300,000 bytes from a pickle of"):
        safe_pickle.loads(memo_reuse(b"c_codecs\nencode\n", text, latin1, 3))  # was 1 MB a call, 2.2 GB from a 1 MB file
    blob = pf.legacy_storage_bytes(torch.zeros(20_000)._typed_storage())
    storage = b"B" + struct.pack("<I", len(blob)) + blob
    assert len(safe_pickle.loads(memo_reuse(b"ctorch.storage\n_load_from_bytes\n", storage, b"", 2))) == 2
    with pytest.raises(CheckpointError, match="data given to torch.storage._load_from_bytes again and again"):
        safe_pickle.loads(memo_reuse(b"ctorch.storage\n_load_from_bytes\n", storage, b"", 3))  # each call decoded the blob again (1 s a call at 1 MB)

    dtype = b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x85R"
    text = b"X" + struct.pack("<I", 100_000) + b"a" * 100_000  # a str: made bytes (a copy) for each array

    def arrays(calls: int, build: bool) -> bytes:
        body = b"\x80\x02" + dtype + b"q\x010" + text + b"q\x020]("
        for _ in range(calls):
            if build:  # _reconstruct(ndarray, (0,), b'b'), then BUILD with (1, shape, dtype, False, data)
                body += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
                body += b"(K\x01J" + struct.pack("<i", 100_000) + b"\x85h\x01\x89h\x02tb"
            else:  # _frombuffer(data, dtype, shape, 'C')
                body += b"cnumpy.core.numeric\n_frombuffer\n(h\x02h\x01J" + struct.pack("<i", 100_000) + b"\x85X\x01\x00\x00\x00CtR"
        return body + b"e."

    for build in (False, True):
        assert len(safe_pickle.loads(arrays(2, build))) == 2
        with pytest.raises(CheckpointError, match="again and again"):  # uncounted: 1.5 GB from a 1 MB file
            safe_pickle.loads(arrays(3, build))


# ----------------------------------------------------------------------------------------------
# Broken files


def test_truncated_network_pickles_give_one_line_errors(tmp_path):
    G = pf.random_generator(pf.tiny_config())
    for fmt, write in [("pt", pf.write_nvidia_pytorch), ("tf", pf.write_nvidia_tf)]:
        good = write(tmp_path / f"good-{fmt}.pkl", G).read_bytes()
        for cut in [1, 2, 10, len(good) // 3, len(good) // 2, len(good) - 1]:
            path = tmp_path / f"cut-{fmt}-{cut}.pkl"
            path.write_bytes(good[:cut])
            with pytest.raises(CheckpointError) as e:
                read_nvidia_pickle(path)
            assert not isinstance(e.value, UnsafeCheckpointError)
            assert str(e.value).startswith(f"cannot read {path.name}: the file is truncated or corrupt"), str(e.value)


def test_garbage_empty_and_foreign_files_give_one_line_errors(tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "empty.pkl": b"",
        "text.pkl": b"this is not a pickle\n",
        "noise.pkl": rng.bytes(4096),
        "pickle-noise.pkl": b"\x80\x04" + rng.bytes(4096),
        "protocol-9.pkl": b"\x80\x09N.",
        "plain-data.pkl": pickle.dumps({"answer": 42}),
        "zip.pkl": b"PK\x03\x04" + rng.bytes(100),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            read_nvidia_pickle(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
    with pytest.raises(CheckpointError, match="cannot read folder"):
        (tmp_path / "folder").mkdir()
        read_nvidia_pickle(tmp_path / "folder")
    with pytest.raises(FileNotFoundError):
        read_nvidia_pickle(tmp_path / "missing.pkl")


def test_randomly_damaged_pickles_never_escape_as_other_errors(tmp_path):
    G = pf.random_generator(pf.tiny_config(img_resolution=8, channels=(6, 4)))
    good = bytearray(pf.write_nvidia_pytorch(tmp_path / "good.pkl", G).read_bytes())
    rng = np.random.default_rng(1)
    path = tmp_path / "damaged.pkl"
    for _ in range(40):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=3):
            data[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            read_nvidia_pickle(path)
        except CheckpointError as e:
            assert "\n" not in str(e)


# ----------------------------------------------------------------------------------------------
# The allow-list itself


def test_allow_list_is_exactly_the_reviewed_one():
    assert safe_pickle.NETWORK_PICKLES.names() == sorted(
        [
            "torch_utils.persistence._reconstruct_persistent_obj",
            "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter",
            "torch._utils._rebuild_parameter_with_state",
            "torch.storage._load_from_bytes",
            "dnnlib.util.EasyDict",
            "dnnlib.EasyDict",
            "dnnlib.tflib.network.Network",
            "collections.OrderedDict",
            "builtins.set",
            "builtins.frozenset",
            "__builtin__.set",
            "__builtin__.frozenset",
            "_codecs.encode",
            "numpy.dtype",
            "numpy.ndarray",
            "numpy.core.multiarray._reconstruct",
            "numpy._core.multiarray._reconstruct",
            "numpy.core.multiarray.scalar",
            "numpy._core.multiarray.scalar",
            "numpy.core.numeric._frombuffer",
            "numpy._core.numeric._frombuffer",
        ]
    )
    # none of them resolves to the real thing that could run code
    resolved = safe_pickle.NETWORK_PICKLES.globals.values()
    assert torch.storage._load_from_bytes not in resolved and pickle.loads not in resolved


def test_safe_unpickler_is_a_restricted_pickle_unpickler():
    assert issubclass(safe_pickle.SafeUnpickler, pickle.Unpickler)
    unpickler = safe_pickle.SafeUnpickler(io.BytesIO(b""), source="x.pkl", allow=safe_pickle.NETWORK_PICKLES)
    with pytest.raises(UnsafeCheckpointError, match=r"\(os.system\)$"):
        unpickler.find_class("os", "system")


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_survives_every_protocol(protocol):
    data = {
        "ints": [0, -1, 255, 65536, 2**40, -(2**70)],
        "floats": (0.5, -1e300, float("inf")),
        "text": "päth/ÿ",
        "bytes": b"\x00\xff" * 10,
        "flags": [True, False, None],
        "set": {1, 2, 3},
        "ordered": OrderedDict(b=1, a=2),
        "nested": [[[{"k": ()}]]],
    }
    assert safe_pickle.loads(pickle.dumps(data, protocol=protocol)) == data


@pytest.mark.parametrize("value, said", [(5, "its 'G_ema' is an int, not a network"), ({"a": 1}, "its 'G_ema' is a dict with keys [\"'a'\"], not a network")])
def test_a_g_ema_that_is_not_a_network_is_named_as_such(tmp_path, value, said):
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps({"G_ema": value}, protocol=4))
    with pytest.raises(CheckpointError) as e:
        read_nvidia_pickle(path)
    assert str(e.value) == f"odd.pkl is a pickle but not an NVIDIA PyTorch network pickle: {said}"
