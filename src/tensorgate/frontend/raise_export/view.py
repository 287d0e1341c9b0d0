"""What the raising sees of an ONNX graph: producers, initializers and declared types,
through nested subgraphs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...ir.types import UNKNOWN, TensorType
from ...onnx_form import ELEMENT_TYPES


class GraphView:
    """Who produces and who holds each value of a graph; subgraphs see their parent's."""

    def __init__(self, nodes, initializers, parent: "GraphView | None" = None, infos=()):
        self.nodes = list(nodes)
        self.parent = parent
        self.arrays = {t.name: t for t in initializers}
        self.producers = {name: (node, index) for node in self.nodes for index, name in enumerate(node.output)}
        self.infos = {info.name: info for info in infos}
        self.map_forms: set[str] = set()  # the lowering forms of the maps proposed (on the root view)

    def root(self) -> "GraphView":
        return self if self.parent is None else self.parent.root()

    @classmethod
    def of_graph(cls, graph: onnx.GraphProto, parent: "GraphView | None" = None) -> "GraphView":
        return cls(graph.node, graph.initializer, parent, [*graph.input, *graph.value_info, *graph.output])

    def producer(self, name: str) -> tuple[onnx.NodeProto, int] | None:
        found = self.producers.get(name)
        return found if found is not None or self.parent is None else self.parent.producer(name)

    def node_of(self, name: str, op_type: str) -> onnx.NodeProto | None:
        found = self.producer(name)
        return found[0] if found is not None and found[0].op_type == op_type else None

    def tensor(self, name: str) -> onnx.TensorProto | None:
        if name in self.arrays:
            return self.arrays[name]
        return None if self.parent is None else self.parent.tensor(name)

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.tensor(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def type_of(self, name: str) -> TensorType | None:
        info = self.infos.get(name)
        if info is None or info.type.WhichOneof("value") != "tensor_type":
            return None if info is not None or self.parent is None else self.parent.type_of(name)
        tensor = info.type.tensor_type
        if tensor.elem_type not in ELEMENT_TYPES or not tensor.HasField("shape"):
            return None
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or UNKNOWN for d in tensor.shape.dim)
        return TensorType(dims, ELEMENT_TYPES[tensor.elem_type])


class NotExported(Exception):
    """The nodes at hand are not a tensorgate lowering (the message says what differs)."""


def node_attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            if isinstance(value, bytes):
                return value.decode()
            return [v.decode() if isinstance(v, bytes) else v for v in value] if isinstance(value, list) else value
    return default
