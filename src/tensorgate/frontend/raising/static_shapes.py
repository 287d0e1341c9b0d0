"""Fold the integer shape arithmetic of an ONNX graph wherever its values are static.

Exporters compute sizes at run time even where shape inference knows them: PyTorch's
``chunk`` becomes Slice nodes whose ends are ``Shape -> Gather -> Add -> Div -> Mul`` of
a value whose last dim is static, and reshapes of intermediate tensors take targets
gathered from ``Shape``.  The importer needs some of these inputs (Slice ends, Split
sizes, Squeeze axes) as constants, and the raising of tensorized maps needs static
sizes, so this pass replaces every integer-valued node it can evaluate by a
``Constant`` node (same name and outputs) and drops the nodes that only fed them.

A ``Shape`` output is tracked element by element: ``Gather``/``Slice`` of its static
dims fold even when another dim (the batch) is symbolic.  Only integer tensors are
folded, with NumPy (integer ``Div`` truncates, as in ONNX); float tensors are left to
the importer, so the weights reach the IR exactly as stored.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

PartialShape = np.ndarray
"""A ``Shape`` output or a selection from one: an object array holding an ``int`` for a
static dim and ``None`` for a symbolic one."""


def fold_static_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold ``model`` (checked and shape-inferred) in place and return it."""
    graph = model.graph
    folder = _Folder(graph)
    nodes = []
    for node in graph.node:
        value = folder.visit(node)
        if value is not None and node.op_type != "Constant":
            nodes.append(helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                          value=numpy_helper.from_array(value, node.output[0])))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(_without_dead_shape_nodes(nodes, {o.name for o in graph.output}))
    return model


def _without_dead_shape_nodes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` less the shape-arithmetic nodes whose outputs nothing uses any more."""
    kept: list[onnx.NodeProto] = []
    used = set(outputs)
    for node in reversed(nodes):
        if node.op_type in FOLDABLE or node.op_type in ("Shape", "Constant"):
            if not any(name in used for name in node.output):
                continue
        kept.append(node)
        used.update(node.input)
    return kept[::-1]


class _Folder:
    """The statically known integer tensors of one graph, filled node by node."""

    def __init__(self, graph: onnx.GraphProto):
        self.known: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
            if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        }
        self.partial: dict[str, PartialShape] = {}
        self.shapes = {
            info.name: [dim.dim_value if dim.HasField("dim_value") else None
                        for dim in info.type.tensor_type.shape.dim]
            for info in [*graph.input, *graph.value_info, *graph.output]
            if info.type.tensor_type.HasField("shape")
        }

    def visit(self, node: onnx.NodeProto) -> np.ndarray | None:
        """The value of the node's single output if it is now known, else ``None``."""
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            return self._record(node, _constant_ints(attrs))
        if node.op_type == "Shape":
            dims = self.shapes.get(node.input[0])
            if dims is None:
                return None
            self.partial[node.output[0]] = np.array(dims[slice(attrs.get("start", 0), attrs.get("end"))], object)
        elif node.op_type in ("Gather", "Slice") and node.input[0] in self.partial:
            if any(name not in self.known for name in node.input[1:] if name):
                return None
            inputs = [self.partial[node.input[0]]] + [self.known[name] if name else None for name in node.input[1:]]
            selected = _apply(node.op_type, inputs, attrs)
            if selected is None:
                return None
            self.partial[node.output[0]] = selected
        elif node.op_type in FOLDABLE and all(not name or name in self.known for name in node.input):
            inputs = [self.known[name] if name else None for name in node.input]
            if any(x is not None and x.dtype.kind != "i" for x in inputs):
                return None
            return self._record(node, _apply(node.op_type, inputs, attrs))
        dims = self.partial.get(node.output[0])
        if dims is not None and all(d is not None for d in dims.reshape(-1)):
            return self._record(node, dims.astype(np.int64))
        return None

    def _record(self, node: onnx.NodeProto, value: np.ndarray | None) -> np.ndarray | None:
        if value is not None:
            self.known[node.output[0]] = value
        return value


def _axes(inputs: list, attrs: dict, index: int) -> list[int] | None:
    """Axes from input ``index`` (newer opsets) or the ``axes`` attribute (older)."""
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in inputs[index]]
    return attrs.get("axes")


def _slice(inputs: list, attrs: dict) -> np.ndarray | None:
    data = inputs[0]
    starts = inputs[1] if len(inputs) > 1 else attrs.get("starts")
    ends = inputs[2] if len(inputs) > 2 else attrs.get("ends")
    axes = _axes(inputs, attrs, 3) or list(range(len(starts)))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    if any(step < 1 for step in steps):
        return None  # ONNX and NumPy clamp negative-step starts differently
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    if np.any(b == 0):
        return None
    return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(np.result_type(a, b))


def _cast(inputs: list, attrs: dict) -> np.ndarray | None:
    target = helper.tensor_dtype_to_np_dtype(attrs["to"])
    return inputs[0].astype(target) if target.kind == "i" else None


FOLDABLE: dict[str, Callable[[list, dict], np.ndarray | None]] = {
    "Add": lambda x, a: x[0] + x[1],
    "Sub": lambda x, a: x[0] - x[1],
    "Mul": lambda x, a: x[0] * x[1],
    "Div": lambda x, a: _divide(x[0], x[1]),
    "Neg": lambda x, a: -x[0],
    "Max": lambda x, a: np.maximum.reduce(x),
    "Min": lambda x, a: np.minimum.reduce(x),
    "Gather": lambda x, a: np.take(x[0], x[1], axis=a.get("axis", 0)),
    "Slice": _slice,
    "Concat": lambda x, a: np.concatenate(x, axis=a["axis"]),
    "Unsqueeze": lambda x, a: np.expand_dims(x[0], tuple(_axes(x, a, 1))),
    "Squeeze": lambda x, a: np.squeeze(x[0], axis=None if _axes(x, a, 1) is None else tuple(_axes(x, a, 1))),
    "Reshape": lambda x, a: x[0].reshape([x[0].shape[i] if d == 0 and not a.get("allowzero") else d
                                         for i, d in enumerate(x[1].tolist())]),
    "Identity": lambda x, a: x[0],
    "Cast": _cast,
    "Range": lambda x, a: np.arange(x[0], x[1], x[2], dtype=x[0].dtype),
}


def _apply(op_type: str, inputs: list, attrs: dict) -> np.ndarray | None:
    """``op_type`` on NumPy arrays, or ``None`` where it does not apply (a zero divisor,
    a form this folder does not handle)."""
    try:
        value = FOLDABLE[op_type](inputs, attrs)
    except (ValueError, IndexError, TypeError, KeyError, AttributeError):
        return None
    return None if value is None else np.asarray(value)


def _constant_ints(attrs: dict) -> np.ndarray | None:
    """The value of a Constant node if it is an integer tensor."""
    if "value" in attrs:
        array = numpy_helper.to_array(attrs["value"])
        return array if array.dtype.kind == "i" else None
    if "value_int" in attrs or "value_ints" in attrs:
        return np.array(attrs.get("value_int", attrs.get("value_ints")), np.int64)
    return None
