"""Importers for the ONNX ops around the LSTMs: heads, shape arithmetic, constants.

One handler per op type.  Inputs that ONNX passes as tensors but the IR keeps as
attributes (Slice starts/ends/axes/steps, Squeeze/Unsqueeze axes, Split sizes) must be
constants; Reshape and Expand keep their shape operand as a value, so shapes computed
at run time (``Shape`` → ``Slice`` → ``Concat`` chains from the exporters) work.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir.linear_map import DenseMap
from ..onnx_form.conventions import ELEMENT_TYPES
from .onnx_context import NodeContext, element_type_name, handles

UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Neg": "neg", "Exp": "exp"}
BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


@handles(*UNARY, since=6)
def _unary(ctx: NodeContext) -> None:
    ctx.emit(UNARY[ctx.node.op_type], [ctx.input(0)])


@handles(*BINARY, since=7)
def _binary(ctx: NodeContext) -> None:
    ctx.emit(BINARY[ctx.node.op_type], [ctx.input(0), ctx.input(1)])


@handles("Softmax", "LogSoftmax", attrs=("axis",))
def _softmax(ctx: NodeContext) -> None:
    """Versions before 13 normalize over all axes from ``axis`` on (the input coerced
    to 2-D); that equals the per-axis form only when ``axis`` is the last axis."""
    x = ctx.input(0)
    axis = ctx.attr("axis", -1 if ctx.version >= 13 else 1)
    if not -x.type.rank <= axis < x.type.rank:
        raise ctx.error(f"axis {axis} is out of range for rank {x.type.rank}")
    if ctx.version < 13 and axis % x.type.rank != x.type.rank - 1:
        raise ctx.error(f"version {ctx.version} normalizes over axes {axis}.. of a rank-"
                        f"{x.type.rank} input together; only the last axis is supported")
    kind = "softmax" if ctx.node.op_type == "Softmax" else "log_softmax"
    ctx.emit(kind, [x], {"axis": axis})


@handles("Gemm", attrs=("alpha", "beta", "transA", "transB"), since=7)
def _gemm(ctx: NodeContext) -> None:
    """``alpha·A'·B' + beta·C``.  A constant B becomes a ``linear`` op with alpha (and
    transB) folded into its matrix, and C folded into its bias when C is one row."""
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    a = ctx.input(0)
    if ctx.attr("transA", 0):
        a = ctx.temp("transpose", [a], {"perm": [1, 0]}, "transA")
    b = ctx.known_constant(1)
    c = ctx.known_constant(2)
    if b is not None:
        weight = b if ctx.attr("transB", 0) else b.T
        if alpha != 1.0:
            weight = weight * np.asarray(alpha, weight.dtype)
        bias = _row_bias(c, beta, weight.shape[0])
        y = ctx.temp("linear", [a], {"weight": DenseMap(np.ascontiguousarray(weight)), "bias": bias},
                     "linear")
        if bias is None and ctx.has_input(2):
            y = _add_bias(ctx, y, c, beta)
    else:
        b_value = ctx.input(1)
        if ctx.attr("transB", 0):
            b_value = ctx.temp("transpose", [b_value], {"perm": [1, 0]}, "transB")
        y = ctx.temp("matmul", [a, b_value], role="matmul")
        if alpha != 1.0:
            y = ctx.temp("mul", [y, ctx.const(np.asarray(alpha, y.type.dtype.numpy), "alpha")], role="alpha")
        if ctx.has_input(2):
            y = _add_bias(ctx, y, c, beta)
    ctx.set_output(0, y)


def _row_bias(c: np.ndarray | None, beta: float, width: int) -> np.ndarray | None:
    """``beta·C`` as a ``[width]`` vector when C is the same for every row, else ``None``."""
    if c is None or c.ndim > 2 or c.ndim == 2 and c.shape[0] != 1 or c.size not in (1, width):
        return None
    return np.broadcast_to(c.reshape(-1) * np.asarray(beta, c.dtype), (width,)).copy()


def _add_bias(ctx: NodeContext, y, c: np.ndarray | None, beta: float):
    """``y + beta·C`` for a Gemm C that could not be folded into a bias vector."""
    if c is not None:
        scaled = ctx.const(c * np.asarray(beta, c.dtype), "beta_c") if beta != 1.0 else ctx.input(2)
    else:
        scaled = ctx.input(2)
        if beta != 1.0:
            beta_value = ctx.const(np.asarray(beta, scaled.type.dtype.numpy), "beta")
            scaled = ctx.temp("mul", [scaled, beta_value], role="beta_c")
    return ctx.temp("add", [y, scaled], role="gemm")


@handles("MatMul")
def _matmul(ctx: NodeContext) -> None:
    """A constant 2-D right operand makes a ``linear`` op (the map is its transpose)."""
    b = ctx.known_constant(1)
    if b is not None and b.ndim == 2:
        ctx.emit("linear", [ctx.input(0)], {"weight": DenseMap(np.ascontiguousarray(b.T))})
    else:
        ctx.emit("matmul", [ctx.input(0), ctx.input(1)])


@handles("Einsum", attrs=("equation",), since=12)
def _einsum(ctx: NodeContext) -> None:
    """A generic ``einsum``; contractions of an input with initializer cores are raised
    to decomposed linear maps afterwards (``frontend.raising``).  A grouped linear layer
    (``btgi,gih->btgh``: one constant matrix per group) is a ``linear`` op per group instead,
    over a slice of its group, so that it quantizes and runs on the accelerator."""
    equation = ctx.attr("equation").replace(" ", "")
    group_axis = _grouped_linear_axis(equation, ctx)
    if group_axis is None:
        ctx.emit("einsum", [ctx.input(i) for i in range(len(ctx.node.input))], {"equation": equation})
        return
    x, weight = ctx.input(0), ctx.known_constant(1)
    groups = []
    for group in range(weight.shape[0]):
        rows = ctx.temp("slice", [x], {"starts": [group], "ends": [group + 1], "axes": [group_axis], "steps": None},
                        f"group{group}")
        matrix = DenseMap(np.ascontiguousarray(weight[group].T))
        groups.append(ctx.temp("linear", [rows], {"weight": matrix, "bias": None}, f"group{group}_linear"))
    ctx.emit("concat", groups, {"axis": group_axis})


def _grouped_linear_axis(equation: str, ctx: NodeContext) -> int | None:
    """The group axis of ``x`` if ``equation`` is a grouped linear ``...gi,gih->...gh`` of
    input 0 with a constant ``[groups, in, out]`` input 1, contracting x's last axis over a
    group axis of static length ``groups`` that is not the batch (axis 0); else ``None``."""
    if "..." in equation or "->" not in equation or len(ctx.node.input) != 2:
        return None
    operands, output = equation.split("->")
    labels = operands.split(",")
    weight = ctx.known_constant(1)
    if len(labels) != 2 or weight is None or weight.ndim != 3 or ctx.known_constant(0) is not None:
        return None
    x_labels, (g, i, h) = labels[0], labels[1]
    if len(set(x_labels)) != len(x_labels) or len({g, i, h}) != 3 or not x_labels.endswith(i):
        return None
    if g not in x_labels[1:-1] or h in x_labels or output != x_labels[:-1] + h:
        return None  # a weight indexed by axis 0, the batch, is not a layer
    axis = x_labels.index(g)
    return axis if ctx.input(0).type.shape[axis] == weight.shape[0] else None


@handles("Slice", since=10)
def _slice(ctx: NodeContext) -> None:
    x = ctx.input(0)
    starts, ends = ctx.constant_ints(1, "starts"), ctx.constant_ints(2, "ends")
    axes, steps = ctx.constant_ints(3, "axes"), ctx.constant_ints(4, "steps")
    if steps is not None:
        for index, (start, step) in enumerate(zip(starts, steps)):
            axis = axes[index] if axes is not None else index
            starts[index] = _python_slice_start(ctx, start, step, x.type.shape[axis])
    ctx.emit("slice", [x], {"starts": starts, "ends": ends, "axes": axes, "steps": steps})


def _python_slice_start(ctx: NodeContext, start: int, step: int, dim) -> int:
    """The IR slices like Python.  ONNX and Python agree except for a negative step
    with ``start < -dim``: ONNX clamps it to the first element, Python to "before the
    first" (an empty slice).  Clamping it to ``-dim`` makes Python agree."""
    if step > 0 or start >= -1:
        return start
    if not isinstance(dim, int):
        raise ctx.error(f"start {start} with step {step} on dim '{dim}' needs the dim's size "
                        "(ONNX and NumPy clamp it differently)")
    return max(start, -dim)


@handles("Gather", attrs=("axis",))
def _gather(ctx: NodeContext) -> None:
    ctx.emit("gather", [ctx.input(0), ctx.input(1)], {"axis": ctx.attr("axis", 0)})


@handles("Squeeze", attrs=("axes",))
def _squeeze(ctx: NodeContext) -> None:
    """Axes come from input 1 (version 13+) or the attribute; without them every
    size-1 axis goes, which needs a static shape."""
    x = ctx.input(0)
    axes = ctx.constant_ints(1, "axes") if ctx.version >= 13 else ctx.attr("axes")
    if axes is None:
        if not x.type.is_static:
            raise ctx.error(f"without axes, the input shape must be static, got {x.type}")
        axes = [i for i, d in enumerate(x.type.shape) if d == 1]
    ctx.emit("squeeze", [x], {"axes": axes})


@handles("Unsqueeze", attrs=("axes",))
def _unsqueeze(ctx: NodeContext) -> None:
    axes = ctx.constant_ints(1, "axes") if ctx.version >= 13 else ctx.attr("axes")
    ctx.emit("unsqueeze", [ctx.input(0)], {"axes": axes})


@handles("Reshape", attrs=("allowzero",), since=5)
def _reshape(ctx: NodeContext) -> None:
    ctx.emit("reshape", [ctx.input(0), ctx.input(1)], {"allowzero": ctx.attr("allowzero", 0)})


@handles("Transpose", attrs=("perm",))
def _transpose(ctx: NodeContext) -> None:
    x = ctx.input(0)
    perm = ctx.attr("perm", list(range(x.type.rank))[::-1])
    ctx.emit("transpose", [x], {"perm": perm})


@handles("Concat", attrs=("axis",), since=4)
def _concat(ctx: NodeContext) -> None:
    ctx.emit("concat", [ctx.input(i) for i in range(len(ctx.node.input))], {"axis": ctx.attr("axis")})


@handles("Split", attrs=("axis", "split", "num_outputs"), since=2)
def _split(ctx: NodeContext) -> None:
    """Sizes from input 1 (version 13+) or the ``split`` attribute; else equal parts
    (or, with ``num_outputs``, parts of ``ceil(dim/n)`` and a smaller last one)."""
    x = ctx.input(0)
    axis = ctx.attr("axis", 0)
    sizes = ctx.constant_ints(1, "split") if ctx.version >= 13 else ctx.attr("split")
    if sizes is None:
        sizes = _equal_split(ctx, x.type.shape[axis], len(ctx.node.output), ctx.attr("num_outputs"))
    ctx.emit("split", [x], {"axis": axis, "sizes": sizes})


def _equal_split(ctx: NodeContext, dim, parts: int, num_outputs: int | None) -> list[int]:
    if not isinstance(dim, int):
        raise ctx.error(f"splitting dim '{dim}' needs a static size or explicit split sizes")
    if num_outputs is None:
        if dim % parts:
            raise ctx.error(f"dim {dim} does not split into {parts} equal parts")
        return [dim // parts] * parts
    chunk = math.ceil(dim / num_outputs)
    last = dim - chunk * (num_outputs - 1)
    if last <= 0:
        raise ctx.error(f"dim {dim} cannot be split into {num_outputs} outputs")
    return [chunk] * (num_outputs - 1) + [last]


@handles("Flatten", attrs=("axis",))
def _flatten(ctx: NodeContext) -> None:
    ctx.emit("flatten", [ctx.input(0)], {"axis": ctx.attr("axis", 1)})


@handles("Shape", attrs=("start", "end"))
def _shape(ctx: NodeContext) -> None:
    ctx.emit("shape", [ctx.input(0)], {"start": ctx.attr("start", 0), "end": ctx.attr("end")})


@handles("Cast", attrs=("to", "saturate", "round_mode"), since=6)
def _cast(ctx: NodeContext) -> None:
    """``saturate`` and ``round_mode`` only affect float8 targets, which are rejected."""
    target = ctx.attr("to")
    if target not in ELEMENT_TYPES:
        raise ctx.error(f"cast to {element_type_name(target)} is not supported")
    ctx.emit("cast", [ctx.input(0)], {"to": str(ELEMENT_TYPES[target])})


@handles("Expand", since=8)
def _expand(ctx: NodeContext) -> None:
    ctx.emit("expand", [ctx.input(0), ctx.input(1)])


@handles("ConstantOfShape", attrs=("value",), since=9)
def _constant_of_shape(ctx: NodeContext) -> None:
    """Broadcasting a 0-d tensor to ``shape`` is exactly ConstantOfShape, so it becomes
    ``expand`` of the fill value (default 0.0f)."""
    fill = ctx.attr("value", np.zeros(1, np.float32))
    ctx.emit("expand", [ctx.const(fill.reshape(()), "value"), ctx.input(0)])


@handles("Constant", attrs=("value", "value_float", "value_floats", "value_int", "value_ints"))
def _constant(ctx: NodeContext) -> None:
    """Recorded as a constant; it becomes a ``const`` op where a value is needed."""
    attribute = ctx.node.attribute[0]
    value = ctx.attr(attribute.name)
    array = {
        "value": lambda: value,
        "value_float": lambda: np.array(value, np.float32),
        "value_floats": lambda: np.array(value, np.float32),
        "value_int": lambda: np.array(value, np.int64),
        "value_ints": lambda: np.array(value, np.int64),
    }[attribute.name]()
    ctx.state.add_constant(ctx.node.output[0], array, ctx.loc)


@handles("Identity")
def _identity(ctx: NodeContext) -> None:
    """No op: the output is another name for the input.  A graph output needs its own
    name on a value, so the producing op's result is renamed (a constant is copied)."""
    source, target = ctx.node.input[0], ctx.node.output[0]
    if source in ctx.state.constants:
        ctx.state.add_constant(target, ctx.state.constants[source], ctx.loc)
        return
    value = ctx.input(0)
    if target in ctx.state.graph_outputs:
        if value.producer is None or value.name in ctx.state.graph_outputs:
            raise ctx.error(f"passes '{value.name}' through unchanged to graph output '{target}'; "
                            "the IR has no copy op to give one value two names")
        value.name = target
    ctx.bind(0, value)
