"""Building ONNX graphs: unique names, nodes and initializers, value types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import TensorgateError
from ..ir.core import Value
from ..ir.types import UNKNOWN, FixedType, TensorType
from .conventions import ONNX_TYPES, OPSET


class ExportError(TensorgateError):
    """A module cannot be written as ONNX."""


@dataclass(frozen=True)
class LoweringChoices:
    """How the float lowering writes what it may write in more than one way; every choice
    computes the same values (up to float rounding) and raises back to the same op.

    ``maps``: a tt/bt/ht map as ``matmul`` (each contraction step a ``MatMul`` by the core
    reshaped to a matrix, with ``Transpose``/``Reshape`` of the cores that onnxruntime
    folds when it loads the model) or ``einsum`` (one ``Einsum`` per step).
    ``recurrent``: a recurrent op as the ONNX node wherever its maps allow (``node``),
    always as a ``Scan`` over its cell (``scan``), or the node for dense maps and the
    Scan otherwise (``auto``; see ``recurrent.chosen_strategy``)."""

    maps: Literal["matmul", "einsum"] = "matmul"
    recurrent: Literal["auto", "node", "scan"] = "auto"


MAP_FORMS = ("matmul", "einsum")
RECURRENT_FORMS = ("auto", "node", "scan")


class Names:
    """Hands out unique names: ``hint`` itself if free, else ``hint_1``, ``hint_2``, ..."""

    def __init__(self, taken=()):
        self.taken = set(taken)

    def fresh(self, hint: str) -> str:
        name, counter = hint, 0
        while name in self.taken:
            counter += 1
            name = f"{hint}_{counter}"
        self.taken.add(name)
        return name


class GraphBuilder:
    """The nodes and initializers of one graph being written.  Value and node names are
    unique across the model (subgraphs share the allocators).  New names derive from
    ``prefix``, the first result of the op being lowered."""

    def __init__(self, values: Names, node_names: Names, prefix: str = "v", opset: int = OPSET,
                 choices: LoweringChoices = LoweringChoices()):
        self.values = values
        self.choices = choices
        self.opset = opset  # the default domain's version the graph is written at
        self.node_names = node_names
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.aliases: dict[str, str] = {}  # IR value name -> the graph value standing for it
        self.domains: dict[str, int] = {}  # opsets of other domains the graph uses (host regions)
        self.functions: list[onnx.FunctionProto] = []  # model-local functions the graph calls

    def child(self) -> "GraphBuilder":
        """A builder for a subgraph (a Scan body) of this graph."""
        child = GraphBuilder(self.values, self.node_names, self.prefix, self.opset, self.choices)
        child.domains, child.functions = self.domains, self.functions
        return child

    def add(self, op_type: str, inputs: Sequence[str], role: str, outputs: Sequence[str] | None = None,
            count: int = 1, **attrs) -> str:
        """Append a node and return its first output; outputs are ``outputs`` or
        ``count`` fresh names."""
        names = list(outputs) if outputs else [self.values.fresh(f"{self.prefix}/{role}") for _ in range(count)]
        node = helper.make_node(op_type, list(inputs), names, name=self.node_names.fresh(f"{self.prefix}/{role}"),
                                **{k: v for k, v in attrs.items() if v is not None})
        self.nodes.append(node)
        return names[0]

    def outputs_of_last(self) -> list[str]:
        return list(self.nodes[-1].output)

    def init(self, array: np.ndarray, role: str) -> str:
        name = self.values.fresh(f"{self.prefix}/{role}")
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values: Sequence[int], role: str) -> str:
        return self.init(np.asarray(values, np.int64), role)

    def scalar(self, value: float | int, dtype: np.dtype, role: str) -> str:
        return self.init(np.asarray(value, dtype), role)


def tensor_value_info(name: str, type: TensorType) -> onnx.ValueInfoProto:
    """A value's ONNX type: static dims as values, symbolic ones as ``dim_param``, ``?``
    blank; a fixed-point value is float32 (its real values, see ``onnx_qdq``)."""
    elem = TensorProto.FLOAT if isinstance(type.dtype, FixedType) else ONNX_TYPES.get(type.dtype)
    if elem is None:
        raise ExportError(f"value '{name}' has type {type}, which has no ONNX counterpart")
    dims = [None if d == UNKNOWN else d for d in type.shape]
    return helper.make_tensor_value_info(name, elem, dims)


def numpy_dtype(value: Value) -> np.dtype:
    """The dtype a value computes in: float32 for fixed-point values (their real values)."""
    return np.dtype(np.float32) if isinstance(value.type.dtype, FixedType) else value.type.dtype.numpy
