"""A reader for OpenVINO IR v10 networks (`.xml` graph + `.bin` weights), with numpy and xml only.

An IR file pair describes a graph: the `.xml` lists layers (each with a type such as `Convolution`,
attributes in a `<data>` element, and numbered input/output ports with their shapes) and edges
(`from-layer`/`from-port` -> `to-layer`/`to-port`); `Const` layers point into the `.bin` with an
`offset`, a `size` in bytes and an `element_type`. This module turns that into an `IRGraph` that
can be walked (`producer`, `consumers`, `topological_order`) and read (`const`), so a torch port
can pull each weight from its position in the graph rather than from a name.

It executes nothing: the graph is data. OpenVINO itself is not needed.
"""

from __future__ import annotations

import heapq
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import CheckpointError

# IR element types -> numpy dtypes (little-endian, as the .bin stores them).
ELEMENT_TYPES: dict[str, np.dtype] = {
    "f64": np.dtype("<f8"),
    "f32": np.dtype("<f4"),
    "f16": np.dtype("<f2"),
    "i64": np.dtype("<i8"),
    "i32": np.dtype("<i4"),
    "i16": np.dtype("<i2"),
    "i8": np.dtype("i1"),
    "u64": np.dtype("<u8"),
    "u32": np.dtype("<u4"),
    "u16": np.dtype("<u2"),
    "u8": np.dtype("u1"),
    "boolean": np.dtype("?"),
}


class IRFormatError(CheckpointError):
    """An IR file that is malformed or uses something this reader does not know."""


@dataclass(frozen=True)
class Port:
    id: int
    shape: tuple[int, ...]
    precision: Optional[str] = None
    names: tuple[str, ...] = ()


@dataclass
class Layer:
    id: int
    name: str
    type: str
    version: str
    data: dict[str, str] = field(default_factory=dict)
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)

    def attr(self, key: str, cast=str, default=None):
        """An attribute from `<data>`, cast (`int`, `float`, `ints`, `floats` for comma lists)."""
        if key not in self.data:
            if default is not None:
                return default
            raise IRFormatError(f"layer {self.name!r} ({self.type}) has no attribute {key!r}")
        raw = self.data[key]
        if cast == "ints":
            return tuple(int(v) for v in raw.replace(" ", "").split(",") if v != "")
        if cast == "floats":
            return tuple(float(v) for v in raw.replace(" ", "").split(",") if v != "")
        return cast(raw)

    def output_shape(self, port: Optional[int] = None) -> tuple[int, ...]:
        """The shape of output `port` (by default the first output)."""
        for p in self.outputs:
            if port is None or p.id == port:
                return p.shape
        raise IRFormatError(f"layer {self.name!r} has no output port {port}")

    def __repr__(self) -> str:
        outs = ", ".join(str(list(p.shape)) for p in self.outputs)
        return f"Layer({self.id}, {self.type}, {self.name!r} -> {outs})"


@dataclass(frozen=True)
class Edge:
    from_layer: int
    from_port: int
    to_layer: int
    to_port: int


class IRGraph:
    """Layers, edges and constant blobs of one IR network."""

    def __init__(self, name: str, version: int, layers: list[Layer], edges: list[Edge], weights: np.ndarray):
        self.name, self.version = name, version
        self.layers: dict[int, Layer] = {layer.id: layer for layer in layers}
        self.edges = edges
        self._weights = weights  # uint8 view of the .bin (memory-mapped)
        self._in: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)  # to -> port -> (from, from_port)
        self._out: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # from -> [(from_port, to, to_port)]
        for e in edges:
            if e.from_layer not in self.layers or e.to_layer not in self.layers:
                raise IRFormatError(f"edge {e} refers to a layer that does not exist")
            self._in[e.to_layer][e.to_port] = (e.from_layer, e.from_port)
            self._out[e.from_layer].append((e.from_port, e.to_layer, e.to_port))

    # -- walking ------------------------------------------------------------------------------

    def of_type(self, type_: str) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.type == type_]

    def parameters(self) -> list[Layer]:
        return self.of_type("Parameter")

    def results(self) -> list[Layer]:
        return self.of_type("Result")

    def producer(self, layer: Union[Layer, int], port: Optional[int] = None) -> Layer:
        """The layer feeding input `port` of `layer` (by default its first input port)."""
        lid = layer.id if isinstance(layer, Layer) else layer
        ins = self._in.get(lid, {})
        if not ins:
            raise IRFormatError(f"layer {self.layers[lid].name!r} has no inputs")
        if port is None:
            port = min(ins)
        if port not in ins:
            raise IRFormatError(f"layer {self.layers[lid].name!r} has no input on port {port}")
        return self.layers[ins[port][0]]

    def inputs(self, layer: Union[Layer, int]) -> list[Layer]:
        """The layers feeding `layer`, in input-port order."""
        lid = layer.id if isinstance(layer, Layer) else layer
        ins = self._in.get(lid, {})
        return [self.layers[ins[p][0]] for p in sorted(ins)]

    def consumers(self, layer: Union[Layer, int]) -> list[Layer]:
        """The layers reading any output of `layer`, in layer-id order, each once."""
        lid = layer.id if isinstance(layer, Layer) else layer
        ids = sorted({to for _, to, _ in self._out.get(lid, [])})
        return [self.layers[i] for i in ids]

    def source(self, layer: Union[Layer, int], port: int) -> tuple[int, int]:
        """(layer id, output port) of the value feeding input `port` of `layer`."""
        lid = layer.id if isinstance(layer, Layer) else layer
        if port not in self._in.get(lid, {}):
            raise IRFormatError(f"layer {self.layers[lid].name!r} has no input on port {port}")
        return self._in[lid][port]

    def topological_order(self) -> list[Layer]:
        """All layers, each after every layer it reads (ties broken by layer id, so it is stable)."""
        indeg = {lid: len(self._in.get(lid, {})) for lid in self.layers}
        ready = sorted(lid for lid, d in indeg.items() if d == 0)
        order: list[Layer] = []
        heapq.heapify(ready)
        while ready:
            lid = heapq.heappop(ready)
            order.append(self.layers[lid])
            for _, to, _ in self._out.get(lid, []):
                indeg[to] -= 1
                if indeg[to] == 0:
                    heapq.heappush(ready, to)
        if len(order) != len(self.layers):
            raise IRFormatError(f"{self.name}: the graph has a cycle")
        return order

    def ancestors(self, layer: Union[Layer, int]) -> set[int]:
        """Ids of every layer `layer` depends on (not itself)."""
        lid = layer.id if isinstance(layer, Layer) else layer
        seen: set[int] = set()
        stack = [src for src, _ in self._in.get(lid, {}).values()]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(src for src, _ in self._in.get(cur, {}).values())
        return seen

    def descendants(self, layer: Union[Layer, int]) -> set[int]:
        """Ids of every layer that depends on `layer` (not itself)."""
        lid = layer.id if isinstance(layer, Layer) else layer
        seen: set[int] = set()
        stack = [to for _, to, _ in self._out.get(lid, [])]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(to for _, to, _ in self._out.get(cur, []))
        return seen

    # -- constants ----------------------------------------------------------------------------

    def const(self, layer: Union[Layer, int]) -> np.ndarray:
        """The value of a `Const` layer as a numpy array of its shape (a copy, writable)."""
        layer = layer if isinstance(layer, Layer) else self.layers[layer]
        if layer.type != "Const":
            raise IRFormatError(f"layer {layer.name!r} is a {layer.type}, not a Const")
        etype = layer.attr("element_type")
        if etype not in ELEMENT_TYPES:
            raise IRFormatError(f"Const {layer.name!r} has element type {etype!r}, which this reader does not know")
        dtype = ELEMENT_TYPES[etype]
        offset, size = layer.attr("offset", int), layer.attr("size", int)
        shape = layer.attr("shape", "ints") if layer.data.get("shape", "").strip() else ()
        count = int(np.prod(shape)) if shape else 1
        if size != count * dtype.itemsize:
            raise IRFormatError(f"Const {layer.name!r}: {size} bytes do not hold {count} x {etype}")
        if offset < 0 or offset + size > self._weights.size:
            raise IRFormatError(f"Const {layer.name!r} points past the end of the .bin file")
        return np.frombuffer(self._weights[offset : offset + size].tobytes(), dtype=dtype).reshape(shape).copy()

    def const_input(self, layer: Layer, port: int) -> np.ndarray:
        """The constant feeding input `port` of `layer`."""
        return self.const(self.producer(layer, port))

    def __repr__(self) -> str:
        return f"IRGraph({self.name!r}, v{self.version}, {len(self.layers)} layers, {len(self.edges)} edges)"


def _port(el: ET.Element) -> Port:
    dims = tuple(int(d.text) for d in el.findall("dim"))
    names = tuple(n.strip() for n in el.get("names", "").split(",") if n.strip())
    return Port(id=int(el.get("id")), shape=dims, precision=el.get("precision"), names=names)


def read_ir(xml_path: Union[str, os.PathLike], bin_path: Union[str, os.PathLike, None] = None) -> IRGraph:
    """Parse an IR `.xml` and map its `.bin` (by default the same name with `.bin`)."""
    xml_path = Path(xml_path)
    bin_path = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise IRFormatError(f"{xml_path.name} is not valid XML ({e})") from None
    if root.tag != "net":
        raise IRFormatError(f"{xml_path.name} is not an OpenVINO IR file (root element <{root.tag}>)")
    version = int(root.get("version", "0"))
    if version not in (10, 11):
        raise IRFormatError(f"{xml_path.name} is IR version {version}; this reader knows versions 10 and 11")
    layers = []
    for el in root.iter("layer"):
        data_el = el.find("data")
        inputs = [_port(p) for p in el.findall("input/port")]
        outputs = [_port(p) for p in el.findall("output/port")]
        layers.append(
            Layer(
                id=int(el.get("id")),
                name=el.get("name", ""),
                type=el.get("type", ""),
                version=el.get("version", ""),
                data=dict(data_el.attrib) if data_el is not None else {},
                inputs=inputs,
                outputs=outputs,
            )
        )
    edges = [
        Edge(int(e.get("from-layer")), int(e.get("from-port")), int(e.get("to-layer")), int(e.get("to-port")))
        for e in root.iter("edge")
    ]
    weights = np.memmap(bin_path, dtype=np.uint8, mode="r") if bin_path.stat().st_size else np.zeros(0, np.uint8)
    return IRGraph(root.get("name", xml_path.stem), version, layers, edges, weights)
