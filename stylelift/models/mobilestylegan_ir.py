"""MobileStyleGAN's weights from the OpenVINO IR files of the `random-face` wheel.

`import_mobilestylegan` fills `MobileStyleGAN`'s state dict by walking the graph (see
`openvino_ir.py`): each weight is found by its position (the affine feeding the k-th modulation on
the image path, the conv after it, ...), not by name, and every constant the module assumes (the
Haar filters, the 1/sqrt(fan_in) style gains, the leaky-ReLU slopes, the pixel-norm epsilon) is
checked against the graph; anything else ends in one `IRFormatError`.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .mobilestylegan import MobileStyleGANConfig, exported_band_order, haar_synthesis_matrix
from .openvino_ir import IRFormatError, IRGraph, Layer, read_ir


class _Walker:
    """Helpers to step along the image path of an IR graph, checking what is found on the way."""

    def __init__(self, graph: IRGraph):
        self.g = graph

    def fail(self, layer: Layer, what: str):
        raise IRFormatError(f"{self.g.name}: at layer {layer.name!r} ({layer.type}): {what}")

    def next(self, layer: Layer, type_: Optional[str] = None) -> Layer:
        """The one consumer of `layer` that does real work (shape queries are ignored)."""
        users = [u for u in self.g.consumers(layer) if u.type not in ("ShapeOf", "Result")]
        if len(users) != 1:
            self.fail(layer, f"expected one consumer, found {[u.type for u in users]}")
        if type_ is not None and users[0].type != type_:
            self.fail(users[0], f"expected a {type_} after {layer.name!r}")
        return users[0]

    def const_operand(self, layer: Layer) -> tuple[Optional[np.ndarray], Optional[Layer]]:
        """For a binary op: (value of its constant operand, its other operand) or (None, None)."""
        ins = self.g.inputs(layer)
        consts = [i for i in ins if i.type == "Const"]
        others = [i for i in ins if i.type != "Const"]
        if len(consts) != 1 or len(others) != 1:
            return None, None
        return self.g.const(consts[0]), others[0]

    def scalar(self, layer: Layer) -> float:
        value, _ = self.const_operand(layer)
        if value is None or value.size != 1:
            self.fail(layer, "expected a scalar constant operand")
        return float(value.reshape(()))

    def add_const(self, layer: Layer) -> np.ndarray:
        if layer.type != "Add":
            self.fail(layer, "expected an Add of a constant")
        value, _ = self.const_operand(layer)
        if value is None:
            self.fail(layer, "expected an Add of a constant")
        return value

    def check_close(self, layer: Layer, found: float, expected: float, what: str) -> None:
        if not math.isclose(found, expected, rel_tol=1e-5, abs_tol=1e-12):
            self.fail(layer, f"{what} is {found!r}, expected {expected!r}")


def _check_pixel_norm(walk: _Walker, z: Layer, first_matmul: Layer) -> float:
    """The ops between z and the first dense layer must be x * (mean(x^2) + eps)^-1/2; returns eps."""
    g = walk.g
    ops = [g.layers[i] for i in sorted(g.ancestors(first_matmul) - {z.id}) if g.layers[i].type != "Const"]
    types = sorted(op.type for op in ops)
    if types != sorted(["Power", "ReduceMean", "Add", "Power", "Power", "Multiply", "Multiply"]):
        walk.fail(first_matmul, f"unexpected ops before the first dense layer: {types}")
    powers = sorted(walk.scalar(op) for op in ops if op.type == "Power")
    if not np.allclose(powers, [-1.0, 0.5, 2.0]):
        walk.fail(first_matmul, f"pixel norm powers are {powers}, expected (2, 0.5, -1)")
    for op in ops:
        if op.type == "Multiply" and walk.const_operand(op)[0] is not None:
            walk.check_close(op, walk.scalar(op), 1.0, "pixel norm numerator")
    (add,) = [op for op in ops if op.type == "Add"]
    return walk.scalar(add)


def _import_mapping(g: IRGraph, cfg_kw: dict) -> dict[str, Tensor]:
    walk = _Walker(g)
    (z,) = g.parameters()
    z_dim = z.output_shape()[-1]
    matmuls = [layer for layer in g.topological_order() if layer.type == "MatMul"]
    if not matmuls:
        raise IRFormatError(f"{g.name}: no dense layers")
    cfg_kw["pixel_norm_eps"] = _check_pixel_norm(walk, z, matmuls[0])
    state, slopes, gains = {}, set(), set()
    for i, mm in enumerate(matmuls):
        if mm.data.get("transpose_b") != "true" or mm.data.get("transpose_a") == "true":
            walk.fail(mm, "expected x @ W^T")
        weight = g.const_input(mm, 1)  # [out, in]
        add = walk.next(mm, "Add")
        bias_src = [s for s in g.inputs(add) if s.id != mm.id][0]
        bias = g.const(bias_src) if bias_src.type == "Const" else g.const(g.producer(bias_src, 0))  # Reshape(Const)
        act = walk.next(add, "PReLU")
        slopes.add(walk.scalar(act))
        gain_op = walk.next(act, "Multiply")
        gains.add(walk.scalar(gain_op))
        state[f"mapping.fc{i}.weight"] = torch.from_numpy(weight)
        state[f"mapping.fc{i}.bias"] = torch.from_numpy(bias.reshape(-1))
        if i + 1 < len(matmuls) and walk.next(gain_op) is not matmuls[i + 1]:
            walk.fail(gain_op, "the dense layers are not a chain")
    if len(slopes) != 1 or len(gains) != 1:
        raise IRFormatError(f"{g.name}: the dense layers disagree on slope {slopes} or gain {gains}")
    cfg_kw.update(z_dim=z_dim, w_dim=matmuls[-1].output_shape()[-1], mapping_layers=len(matmuls),
                  mapping_lrelu_slope=slopes.pop(), mapping_lrelu_gain=gains.pop())
    return state


def _haar_mix_from_graph(walk: _Walker, split: Layer, end: Layer, channels: int) -> np.ndarray:
    """Trace the exported inverse DWT (a split into LL and the high bands, 1-D transposed convs along
    the height and the width, adds) from `split` to `end` and return its [4, 4] synthesis matrix in
    `haar_synthesis_matrix` order (rows: output pixel 2a+b; columns: LL, LH, HL, HH).

    Every value on the way is linear in the bands, and each transposed conv applies a 2-tap filter
    along one axis, so a value is represented as {band: (height filter, width filter)}.
    """
    g = walk.g
    sizes = g.const_input(split, 2).tolist()
    if split.type != "VariadicSplit" or int(g.const_input(split, 1)) != 1 or sizes != [channels, 3 * channels]:
        walk.fail(split, f"expected a split of the channels into {channels} + {3 * channels}")
    values: dict[tuple[int, int], dict[int, list]] = {}  # (layer id, output port) -> {band: [hfilt, wfilt]}
    out_ports = [p.id for p in split.outputs]
    values[(split.id, out_ports[0])] = {0: [None, None]}
    high = (split.id, out_ports[1])
    inside = (g.ancestors(end) | {end.id}) & g.descendants(split)
    for layer in (layer for layer in g.topological_order() if layer.id in inside):
        src = g.source(layer, layer.inputs[0].id)
        outs = [p.id for p in layer.outputs]
        if layer.type == "Reshape":
            if src != high or list(layer.output_shape())[1:3] != [channels, 3]:
                walk.fail(layer, "expected the high bands reshaped to [N, C, 3, H, W]")
            values[(layer.id, outs[0])] = "high"
        elif layer.type == "VariadicSplit":
            if values.get(src) != "high" or int(g.const_input(layer, 1)) != 2 or g.const_input(layer, 2).tolist() != [1, 1, 1]:
                walk.fail(layer, "expected the three high bands split apart along dim 2")
            for k, port in enumerate(outs):
                values[(layer.id, port)] = {1 + k: [None, None]}
        elif layer.type == "Squeeze":
            if int(np.asarray(g.const_input(layer, 1)).reshape(-1)[0]) != 2:
                walk.fail(layer, "expected a squeeze of dim 2")
            values[(layer.id, outs[0])] = values[src]
        elif layer.type == "GroupConvolutionBackpropData":
            kernel = g.const_input(layer, 1)  # [groups, 1, 1, kh, kw]
            strides = layer.attr("strides", "ints")
            if layer.attr("pads_begin", "ints") != (0, 0) or layer.attr("pads_end", "ints") != (0, 0) or any(layer.attr("output_padding", "ints")):
                walk.fail(layer, "expected an unpadded transposed conv")
            if not np.all(kernel == kernel[:1]):
                walk.fail(layer, "expected the same filter for every channel")
            axis = {(2, 1): 0, (1, 2): 1}.get(strides)
            taps = kernel[0, 0, 0].reshape(-1)
            if axis is None or taps.size != 2 or kernel.shape[3 + axis] != 2:
                walk.fail(layer, f"expected a 2-tap stride-2 filter along one axis, got strides {strides}, kernel {kernel.shape}")
            new = {}
            for band, filt in values[src].items():
                if filt[axis] is not None:
                    walk.fail(layer, "two filters along the same axis")
                filt = list(filt)
                filt[axis] = taps
                new[band] = filt
            values[(layer.id, outs[0])] = new
        elif layer.type == "Add":
            a, b = (values[g.source(layer, p.id)] for p in layer.inputs)
            if set(a) & set(b):
                walk.fail(layer, "a band reaches an add twice")
            values[(layer.id, outs[0])] = {**a, **b}
        elif layer.type in ("Const", "ShapeOf", "Gather", "Unsqueeze", "Concat"):
            continue  # shape arithmetic
        else:
            walk.fail(layer, f"unexpected {layer.type} inside the inverse DWT")
    final = values.get((end.id, end.outputs[0].id))
    if not isinstance(final, dict) or sorted(final) != [0, 1, 2, 3] or any(f[0] is None or f[1] is None for f in final.values()):
        walk.fail(end, "the inverse DWT does not combine all four bands along both axes")
    mix = np.zeros([4, 4])
    for band, (hf, wf) in final.items():
        for a in (0, 1):
            for b in (0, 1):
                mix[2 * a + b, band] = hf[a] * wf[b]
    return mix


def _check_haar(walk: _Walker, split: Layer, end: Layer, channels: int) -> None:
    mix = _haar_mix_from_graph(walk, split, end, channels)
    expected = haar_synthesis_matrix().numpy()
    if not np.allclose(mix, expected, atol=1e-6):
        walk.fail(end, f"the inverse DWT is not the Haar transform this port implements: {mix.tolist()}")


def _find_affines(walk: _Walker, style: Layer) -> list[dict]:
    """Each style affine: w @ W^T + b, reshaped to [N, C, 1, 1], maybe times a gain, then multiplied
    into a feature map (the modulation). Returned in the order the image path reaches them, each
    with `modulate` (that Multiply) and `features` (its feature-map operand)."""
    g = walk.g
    affines = []
    for mm in g.consumers(style):
        if mm.type != "MatMul":
            continue
        if mm.data.get("transpose_b") != "true" or mm.data.get("transpose_a") == "true":
            walk.fail(mm, "expected w @ W^T")
        weight = g.const_input(mm, 1)
        add = walk.next(mm, "Add")
        bias = walk.add_const(add).reshape(-1)
        styles = walk.next(add, "Reshape")
        node = walk.next(styles, "Multiply")
        gain = 1.0
        value, _ = walk.const_operand(node)
        if value is not None:  # the conv's 1/sqrt(fan_in) gain
            gain = float(value.reshape(()))
            styles, node = node, walk.next(node, "Multiply")
        features = [i for i in g.inputs(node) if i.id != styles.id]
        if len(features) != 1:
            walk.fail(node, "expected a style times a feature map")
        affines.append(dict(weight=weight, bias=bias, gain=gain, modulate=node, features=features[0]))
    order = {layer.id: k for k, layer in enumerate(g.topological_order())}
    affines.sort(key=lambda a: order[a["modulate"].id])
    for prev, cur in zip(affines, affines[1:]):  # a strict chain: data-flow order is unique
        if prev["modulate"].id not in g.ancestors(cur["modulate"]):
            walk.fail(cur["modulate"], "the style modulations are not on one path")
    return affines


def _styled_conv(walk: _Walker, modulate: Layer, resolution: int, depthwise: bool) -> tuple[dict, Layer]:
    """Read modulate -> [GroupConvolution ->] Convolution -> Add noise -> Add bias -> PReLU."""
    g = walk.g
    p: dict = {}
    node = walk.next(modulate)
    if depthwise:
        if node.type != "GroupConvolution":
            walk.fail(node, "expected the depthwise conv")
        dw = g.const_input(node, 1)  # [groups, 1, 1, k, k]
        if dw.shape[1:3] != (1, 1):
            walk.fail(node, f"expected a depthwise kernel, got {dw.shape}")
        k = dw.shape[-1]
        if node.attr("pads_begin", "ints") != (k // 2, k // 2) or node.attr("strides", "ints") != (1, 1):
            walk.fail(node, "expected a same-padded stride-1 depthwise conv")
        p["weight_dw"] = dw.reshape(dw.shape[0], 1, k, k)
        node = walk.next(node, "Convolution")
        pw = g.const_input(node, 1)
        if pw.shape[2:] != (1, 1):
            walk.fail(node, "expected the pointwise 1x1 conv")
        p["weight_permute"] = pw[:, :, 0, 0]
    else:
        if node.type != "Convolution":
            walk.fail(node, "expected a conv")
        weight = g.const_input(node, 1)
        k = weight.shape[-1]
        if node.attr("pads_begin", "ints") != (k // 2, k // 2) or node.attr("strides", "ints") != (1, 1):
            walk.fail(node, "expected a same-padded stride-1 conv")
        p["weight"] = weight
    out_channels = node.output_shape()[1]
    for _ in range(2):  # the noise map and the bias, in either order
        node = walk.next(node, "Add")
        value = walk.add_const(node)
        if value.shape == (1, 1, resolution, resolution):
            p["noise_const"] = value[0, 0]
        elif value.shape == (1, out_channels, 1, 1):
            p["bias"] = value.reshape(-1)
        else:
            walk.fail(node, f"unexpected added constant of shape {value.shape}")
    if set(p) & {"noise_const", "bias"} != {"noise_const", "bias"}:
        walk.fail(node, "expected a noise map and a bias")
    act = walk.next(node, "PReLU")
    p["slope"] = walk.scalar(act)
    p["kernel_size"] = k
    return p, act


def _import_synthesis(g: IRGraph, cfg_kw: dict) -> dict[str, Tensor]:
    walk = _Walker(g)
    (style,) = g.parameters()
    affines = _find_affines(walk, style)
    state: dict[str, np.ndarray] = {}

    def put_affine(prefix: str, a: dict, expected_gain: float) -> None:
        walk.check_close(a["modulate"], a["gain"], expected_gain, f"{prefix} style gain")
        state[f"{prefix}.weight"] = a["weight"]
        state[f"{prefix}.bias"] = a["bias"]

    # The 4x4 constant and the dense conv on it.
    first = affines[0]
    x0 = first["features"]
    consts = [g.layers[i] for i in g.ancestors(x0) | {x0.id} if g.layers[i].type == "Const" and len(g.layers[i].output_shape()) == 4]
    if len(consts) != 1:
        walk.fail(first["modulate"], "cannot find the constant input")
    const = g.const(consts[0])[0]  # [C, r, r]
    channels, res = [const.shape[0]], [const.shape[-1]]
    state["synthesis.const"] = const
    p, node = _styled_conv(walk, first["modulate"], res[0], depthwise=False)
    k = p["kernel_size"]
    if p["weight"].shape[:2] != (channels[0], channels[0]):
        walk.fail(first["modulate"], f"expected a {channels[0]} -> {channels[0]} conv on the constant, got {p['weight'].shape}")
    put_affine("synthesis.conv1.conv.affine", first, 1 / math.sqrt(channels[0] * k * k))
    state["synthesis.conv1.conv.weight"] = p["weight"]
    state["synthesis.conv1.noise_const"], state["synthesis.conv1.bias"] = p["noise_const"], p["bias"]
    slopes = {p["slope"]}

    # The blocks: (up, conv1, conv2) x n, then the image head.
    rest = affines[1:]
    if len(rest) % 3 != 1:
        raise IRFormatError(f"{g.name}: {len(affines)} style affines do not fit 1 + 3 x blocks + 1")
    for i in range(len(rest) // 3):
        up, c1, c2 = rest[3 * i : 3 * i + 3]
        r = res[-1] * 2
        prefix = f"synthesis.b{r}"
        if up["features"] is not node:
            walk.fail(up["modulate"], "the up-sampling does not read the previous layer")
        c_in = up["weight"].shape[0]
        split = walk.next(up["modulate"], "VariadicSplit")
        end = c1["features"]
        _check_haar(walk, split, end, c_in // 4)
        put_affine(f"{prefix}.up.affine", up, 1.0)
        for name, a in (("conv1", c1), ("conv2", c2)):
            p, node = _styled_conv(walk, a["modulate"], r, depthwise=True)
            k = p["kernel_size"]
            fan_in = p["weight_dw"].shape[0]
            put_affine(f"{prefix}.{name}.conv.affine", a, 1 / math.sqrt(fan_in * k * k))
            for key in ("weight_dw", "weight_permute"):
                state[f"{prefix}.{name}.conv.{key}"] = p[key]
            state[f"{prefix}.{name}.noise_const"], state[f"{prefix}.{name}.bias"] = p["noise_const"], p["bias"]
            slopes.add(p["slope"])
            if name == "conv1" and c2["features"] is not node:
                walk.fail(c2["modulate"], "conv2 does not read conv1")
        res.append(r)
        channels.append(state[f"{prefix}.conv2.bias"].shape[0])

    # The image head: modulated 1x1 conv to 4 sub-bands x RGB, a bias, the inverse DWT.
    head = rest[-1]
    if head["features"] is not node:
        walk.fail(head["modulate"], "the image head does not read the last layer")
    conv = walk.next(head["modulate"], "Convolution")
    weight = g.const_input(conv, 1)
    if weight.shape[2:] != (1, 1) or weight.shape[0] % 4:
        walk.fail(conv, f"expected a 1x1 conv to 4 x image channels, got {weight.shape}")
    img_channels = weight.shape[0] // 4
    put_affine("synthesis.to_img.conv.affine", head, 1 / math.sqrt(weight.shape[1]))
    state["synthesis.to_img.conv.weight"] = weight
    add = walk.next(conv, "Add")
    state["synthesis.to_img.bias"] = walk.add_const(add).reshape(-1)
    split = walk.next(add, "VariadicSplit")
    (result,) = g.results()
    _check_haar(walk, split, g.producer(result), img_channels)
    if g.producer(result).output_shape()[-1] != 2 * res[-1]:
        walk.fail(result, "the output is not twice the size of the last features")

    # Sub-band channels into stylelift's band-major order (see `exported_band_order`): the rows of
    # the layer making them, of its bias, and of the style affine scaling them.
    prev = "synthesis.conv1"
    for r, c_in in zip(res[1:], channels[:-1]):
        order = exported_band_order(c_in // 4)
        weight = f"{prev}.conv.weight" if prev == "synthesis.conv1" else f"{prev}.conv.weight_permute"
        for key in (weight, f"{prev}.bias", f"synthesis.b{r}.up.affine.weight", f"synthesis.b{r}.up.affine.bias"):
            state[key] = state[key][order]
        prev = f"synthesis.b{r}.conv2"
    order = exported_band_order(img_channels)
    for key in ("synthesis.to_img.conv.weight", "synthesis.to_img.bias"):
        state[key] = state[key][order]

    if len(slopes) != 1:
        raise IRFormatError(f"{g.name}: the convs disagree on the leaky ReLU slope: {slopes}")
    cfg_kw.update(channels=tuple(channels), const_resolution=res[0], kernel_size=k, lrelu_slope=slopes.pop(), img_channels=img_channels)
    if style.output_shape()[-1] != cfg_kw.get("w_dim", style.output_shape()[-1]):
        walk.fail(style, "the synthesis w does not match the mapping's output")
    return {key: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for key, v in state.items()}


def import_mobilestylegan(mapping_xml: Union[str, os.PathLike], synthesis_xml: Union[str, os.PathLike]) -> tuple[MobileStyleGANConfig, dict[str, Tensor]]:
    """Read the mapping and synthesis IR files into a config and a state dict (without w_avg).

    The `.bin` files are expected next to the `.xml` files.
    """
    cfg_kw: dict = {}
    state = _import_mapping(read_ir(mapping_xml), cfg_kw)
    state.update(_import_synthesis(read_ir(synthesis_xml), cfg_kw))
    # Scalars read from float32 constants, written back in their shortest float32 form (0.2, not 0.2000000029...).
    cfg_kw = {k: float(str(np.float32(v))) if isinstance(v, float) else v for k, v in cfg_kw.items()}
    cfg = MobileStyleGANConfig(**cfg_kw)
    return cfg, state
