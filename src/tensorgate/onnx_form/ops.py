"""The ONNX lowering of each float IR op, and ``lower_op``, which applies it."""

from __future__ import annotations

from typing import Callable

from onnx import numpy_helper

from ..ir.core import Op
from ..registry import registrar
from .conventions import ONNX_TYPES
from .graph import ExportError, GraphBuilder, numpy_dtype
from .maps import apply_map

Lowering = Callable[[GraphBuilder, Op, list[str], list[str]], None]
LOWERINGS: dict[str, Lowering] = {}


lowers = registrar(LOWERINGS)


_SAME_OP = {
    "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "relu": "Relu", "sigmoid": "Sigmoid",
    "tanh": "Tanh", "neg": "Neg", "exp": "Exp", "matmul": "MatMul", "expand": "Expand",
}


def _same_op(b, op, inputs, results):
    b.add(_SAME_OP[op.kind], inputs, op.kind, results)


for _kind in _SAME_OP:
    LOWERINGS[_kind] = _same_op


@lowers("const")
def _const(b, op, inputs, results):
    b.add("Constant", [], "const", results, value=numpy_helper.from_array(op.attrs["value"], results[0]))


@lowers("linear")
def _linear(b, op, inputs, results):
    x = op.operands[0]
    bias = op.attrs["bias"]
    y = apply_map(b, op.attrs["weight"], inputs[0], x.type.rank, numpy_dtype(x), "weight",
                  None if bias is not None else results[0])
    if bias is not None:
        b.add("Add", [y, b.init(bias.astype(numpy_dtype(x), copy=False), "bias")], "bias", results)


@lowers("softmax", "log_softmax")
def _softmax(b, op, inputs, results):
    b.add("Softmax" if op.kind == "softmax" else "LogSoftmax", inputs, op.kind, results, axis=op.attrs["axis"])


@lowers("reshape")
def _reshape(b, op, inputs, results):
    b.add("Reshape", inputs, "reshape", results, allowzero=op.attrs["allowzero"] or None)


@lowers("transpose")
def _transpose(b, op, inputs, results):
    b.add("Transpose", inputs, "transpose", results, perm=list(op.attrs["perm"]))


@lowers("slice")
def _slice(b, op, inputs, results):
    """The IR slices like Python; ONNX differs only for a negative step whose start lies
    before the first element (Python: empty; ONNX: from the first element)."""
    starts, ends = list(op.attrs["starts"]), list(op.attrs["ends"])
    axes, steps = op.attrs["axes"], op.attrs["steps"]
    shape = op.operands[0].type.shape
    for index, step in enumerate(steps or []):
        axis = (axes or range(len(starts)))[index]
        if step < 0 and starts[index] < -1:
            dim = shape[axis]
            if not isinstance(dim, int):
                raise ExportError(f"{op.describe()}: start {starts[index]} with step {step} on dim '{dim}' "
                                  "needs the dim's size (ONNX and NumPy clamp it differently)")
            if starts[index] < -dim:
                starts[index], ends[index] = 0, 0
    operands = [inputs[0], b.ints(starts, "starts"), b.ints(ends, "ends")]
    if axes is not None or steps is not None:
        operands.append(b.ints(axes if axes is not None else range(len(starts)), "axes"))
    if steps is not None:
        operands.append(b.ints(steps, "steps"))
    b.add("Slice", operands, "slice", results)


@lowers("gather")
def _gather(b, op, inputs, results):
    b.add("Gather", inputs, "gather", results, axis=op.attrs["axis"])


@lowers("concat")
def _concat(b, op, inputs, results):
    b.add("Concat", inputs, "concat", results, axis=op.attrs["axis"])


@lowers("split")
def _split(b, op, inputs, results):
    b.add("Split", [inputs[0], b.ints(op.attrs["sizes"], "sizes")], "split", results, axis=op.attrs["axis"])


@lowers("squeeze", "unsqueeze")
def _squeeze(b, op, inputs, results):
    b.add(op.kind.capitalize(), [inputs[0], b.ints(op.attrs["axes"], "axes")], op.kind, results)


@lowers("flatten")
def _flatten(b, op, inputs, results):
    b.add("Flatten", inputs, "flatten", results, axis=op.attrs["axis"])


@lowers("shape")
def _shape(b, op, inputs, results):
    b.add("Shape", inputs, "shape", results, start=op.attrs["start"] or None, end=op.attrs["end"])


@lowers("cast")
def _cast(b, op, inputs, results):
    b.add("Cast", inputs, "cast", results, to=ONNX_TYPES[op.results[0].type.dtype])


def lower_op(b: GraphBuilder, op: Op, quantized: Lowering | None = None) -> None:
    """Append the nodes of ``op`` to ``b``; its operands and results keep their names.
    A quantized op goes to ``quantized``, the QDQ lowering the ``onnx`` target supplies
    (``backend.onnx_qdq.lower_quantized``)."""
    if op.kind not in LOWERINGS:
        raise ExportError(f"{op.describe()}: no ONNX lowering for this op")
    b.prefix = op.results[0].name if op.results else op.kind
    inputs = [b.aliases.get(v.name, v.name) if v is not None else "" for v in op.operands]
    results = [v.name for v in op.results]
    if op.attrs.get("quant") is None:
        LOWERINGS[op.kind](b, op, inputs, results)
    elif quantized is None:
        raise ExportError(f"{op.describe()}: a quantized op needs the QDQ lowering")
    else:
        quantized(b, op, inputs, results)
