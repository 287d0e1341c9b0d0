"""Multiply-accumulates of the ONNX nodes a host region runs, from their inferred shapes.

Counted: convolutions (``Conv``, ``ConvTranspose``), matrix products (``MatMul``,
``Gemm``, ``Einsum``) and recurrent ops (``LSTM``, ``GRU``, ``RNN``); every other op
counts 0.  A count needs the static shapes of the values involved (``None`` otherwise),
and a control-flow node counts 0 only when none of its subgraphs holds a counted op.
"""

from __future__ import annotations

import math
from typing import Callable

import onnx

from .partition import subgraphs

Shape = Callable[[str], "tuple[int, ...] | None"]
COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "LSTM", "GRU", "RNN")
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def node_macs(node: onnx.NodeProto, shape: Shape) -> int | None:
    """The node's multiply-accumulates per run; ``None`` when a shape it needs is unknown."""
    if subgraphs(node):
        return 0 if not any(_counts(g) for g in subgraphs(node)) else None
    if node.op_type not in COUNTED or node.domain not in ("", "ai.onnx"):
        return 0
    shapes = [shape(name) if name else None for name in node.input]
    out = shape(node.output[0]) if node.output and node.output[0] else None
    if node.op_type in GATES:
        return _recurrent(node, shapes)
    if out is None or any(s is None for s in shapes[:2]):
        return None
    a, b = shapes[0], shapes[1]
    if node.op_type == "Conv":
        return math.prod(out) * math.prod(b[1:])
    if node.op_type == "ConvTranspose":
        return math.prod(a) * math.prod(b[1:])
    if node.op_type == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return math.prod(out) * (a[0] if trans_a else a[-1])
    if node.op_type == "MatMul":
        return math.prod(out) * a[-1]
    return _einsum(node, shapes)


def _recurrent(node: onnx.NodeProto, shapes) -> int | None:
    x, w = shapes[0], shapes[1] if len(shapes) > 1 else None
    if x is None or w is None:
        return None
    layout = next((attr.i for attr in node.attribute if attr.name == "layout"), 0)
    steps, batch = (x[1], x[0]) if layout else (x[0], x[1])
    directions, rows, features = w
    hidden = rows // GATES[node.op_type]
    return steps * batch * directions * rows * (features + hidden)


def _einsum(node: onnx.NodeProto, shapes) -> int | None:
    equation = next(attr.s.decode() for attr in node.attribute if attr.name == "equation")
    terms = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, dims in zip(terms, shapes):
        if dims is None or "." in term:
            return None
        sizes.update(zip(term, dims))
    return math.prod(sizes.values())


def _counts(graph: onnx.GraphProto) -> bool:
    return any(node.op_type in COUNTED or any(_counts(g) for g in subgraphs(node)) for node in graph.node)
