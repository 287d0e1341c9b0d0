"""The op set: for each op kind its operands, attributes and type inference.

``OP_SPECS[kind].infer(op, consts)`` returns the result types the op must have,
given ``consts`` (value -> ndarray for values produced by ``const`` ops, used by ops
such as ``reshape`` whose result shape depends on an operand's contents).  A ``"?"``
dimension means "not known statically" and is compatible with anything.  Inference
raises ``VerifyError`` with a sentence when operands do not fit together.

The interpreter's kernels (``tensorgate.interpreter.kernels``) are the executable
definition of what each op computes; this module only states its typing rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import VerifyError
from .core import Op, Value
from .linear_map import LinearMap
from .types import I64, MAX_DIM, UNKNOWN, Dim, FixedType, FloatType, TensorType, element_type, parse_type, shapes_compatible

REQUIRED = object()
Consts = dict[int, np.ndarray]  # id(value) -> contents, for const-produced values


@dataclass(frozen=True)
class OpSpec:
    """Static description of an op kind.

    ``operands`` names the operands in order; a trailing ``?`` marks an optional one
    (may be ``None``), a trailing ``*`` a variadic tail.  ``attrs`` maps attribute
    names to defaults (``REQUIRED`` when there is none).
    """

    kind: str
    doc: str
    operands: tuple[str, ...]
    attrs: dict[str, Any]
    infer: Callable[[Op, Consts], list[TensorType]]
    num_results: int | None = 1  # None: given by the op (split)
    extra: dict[str, Any] = field(default_factory=dict)


OP_SPECS: dict[str, OpSpec] = {}

LSTM_GATES = ("i", "o", "f", "c")
GRU_GATES = ("z", "r", "h")
RNN_GATES = ("i",)
RECURRENT_ACTIVATIONS = (
    "Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu",
    "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus",
)
RECURRENT_DIRECTIONS = ("forward", "reverse", "bidirectional")
DATA_MOVEMENT = ("reshape", "transpose", "slice", "gather", "concat", "split", "squeeze", "unsqueeze",
                 "flatten", "expand", "shape")
"""Ops that only move elements: on fixed-point codes they compute what they compute on
floats, and on the accelerator they are address patterns."""
DEFAULT_LSTM_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
"""f, g and h of each direction when the op names none."""
DEFAULT_GRU_ACTIVATIONS = ("Sigmoid", "Tanh")
"""f (the z and r gates) and g (the candidate) of each direction."""
DEFAULT_RNN_ACTIVATIONS = ("Tanh",)
ACTIVATION_DEFAULTS = {
    "Affine": (1.0, 0.0), "LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
    "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None),
}
"""The ONNX specification's (alpha, beta) of each activation that takes them."""


def _spec(kind, doc, operands, attrs=None, num_results=1):
    def register(infer):
        OP_SPECS[kind] = OpSpec(kind, doc, tuple(operands), dict(attrs or {}), infer, num_results)
        return infer

    return register


def _fail(op: Op, message: str):
    raise VerifyError(f"{op.describe()}: {message}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (list, tuple)) and all(check(item) for item in value)


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype != object


ATTR_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    **{key: ("an integer", _is_int) for key in (
        "axis", "allowzero", "start", "hidden_size", "layout", "input_forget", "linear_before_reset")},
    **{key: ("an integer or none", _or_none(_is_int)) for key in ("end", "macs")},
    **{key: ("a list of integers", _list_of(_is_int)) for key in ("perm", "starts", "ends", "sizes")},
    **{key: ("a list of integers or none", _or_none(_list_of(_is_int))) for key in ("axes", "steps")},
    **{key: ("a string", lambda v: isinstance(v, str)) for key in ("equation", "direction", "to")},
    "clip": ("a number or none", _or_none(_is_number)),
    "activations": ("a list of strings or none", _or_none(_list_of(lambda v: isinstance(v, str)))),
    **{key: ("a list of numbers or none", _or_none(_list_of(_is_number)))
       for key in ("activation_alpha", "activation_beta")},
    "value": ("a tensor", _is_array),
    "model": ("a tensor", _is_array),
    **{key: ("a tensor or none", _or_none(_is_array)) for key in ("bias", "peepholes")},
    "weight": ("a linear map", lambda v: isinstance(v, LinearMap)),
    **{key: ("a list of linear maps", _list_of(lambda v: isinstance(v, LinearMap))) for key in ("w", "r")},
    "quant": ("a dictionary or none", _or_none(lambda v: isinstance(v, dict))),
}
"""What each attribute name holds, in every op that has it: a description and a check.
Attributes the typing rules read are checked against it before they run, so a wrong
kind of literal in the text (a float for an axis, a string in a perm) is a sentence."""
MAX_ATTR_INT = 2**31 - 1
"""The largest integer attribute (an axis, a size, a hidden size) the IR accepts."""
SLICE_BOUNDS = ("starts", "ends", "steps")
"""Attributes that take the whole int64 range, as ONNX Slice's do (``ends`` of 2^63 - 1:
to the end)."""


def check_attr_kinds(op: Op) -> None:
    """``VerifyError`` naming the first attribute of ``op`` whose value is not of its kind
    (``ATTR_KINDS``) or holds an integer beyond ``±MAX_ATTR_INT`` (int64 for ``SLICE_BOUNDS``)."""
    for key, value in op.attrs.items():
        kind = ATTR_KINDS.get(key)
        if kind is not None and not kind[1](value):
            _fail(op, f"attribute '{key}' must be {kind[0]}, got {_describe(value)}")
        bound = 2**63 - 1 if key in SLICE_BOUNDS else MAX_ATTR_INT
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if _is_int(item) and not -bound - 1 <= item <= bound:
                _fail(op, f"attribute '{key}': {item} is beyond the largest integer it may hold, {bound}")


def _describe(value) -> str:
    text = repr(value) if not isinstance(value, (np.ndarray, LinearMap)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _norm_axis(op: Op, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        _fail(op, f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def broadcast(op: Op, a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting of two shapes with symbolic dims."""
    out: list[Dim] = []
    for x, y in zip(((1,) * (len(b) - len(a)) + tuple(a)), ((1,) * (len(a) - len(b)) + tuple(b))):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif isinstance(x, int) and isinstance(y, int):
            _fail(op, f"shapes {list(a)} and {list(b)} do not broadcast")
        else:
            out.append(x if isinstance(x, int) else y if isinstance(y, int) else UNKNOWN)
    return tuple(out)


def _product(dims) -> Dim:
    total = 1
    for d in dims:
        if not isinstance(d, int):
            return UNKNOWN
        total *= d
    return total


QUANTIZED_ELEMENTWISE = ("add", "mul", "sigmoid", "tanh")
"""Elementwise ops with a fixed-point form: a ``quant`` attribute gives their result
format (``fixedpoint.quant_attrs``); their operands may be in different formats."""


def _unary(kind, doc):
    @_spec(kind, doc, ["x"], {"quant": None} if kind in QUANTIZED_ELEMENTWISE else None)
    def infer(op, consts):
        return quantized_types(op, [op.operands[0].type])


for _kind, _doc in [
    ("sigmoid", "Logistic sigmoid, elementwise."),
    ("tanh", "Hyperbolic tangent, elementwise."),
    ("relu", "max(x, 0), elementwise."),
    ("neg", "-x, elementwise."),
    ("exp", "e^x, elementwise."),
]:
    _unary(_kind, _doc)


def _binary(kind, doc):
    @_spec(kind, doc, ["a", "b"], {"quant": None} if kind in QUANTIZED_ELEMENTWISE else None)
    def infer(op, consts):
        a, b = op.operands
        quantized = op.attrs.get("quant") is not None
        if quantized and not all(isinstance(v.type.dtype, FixedType) for v in (a, b)):
            _fail(op, f"a quantized {kind} takes fix<w,f> operands, got {a.type.dtype} and {b.type.dtype}")
        if not quantized and a.type.dtype != b.type.dtype:
            _fail(op, f"element types differ: {a.type.dtype} and {b.type.dtype}")
        return quantized_types(op, [TensorType(broadcast(op, a.type.shape, b.type.shape), a.type.dtype)])


for _kind, _doc in [
    ("add", "a + b with NumPy broadcasting."),
    ("sub", "a - b with NumPy broadcasting."),
    ("mul", "a * b with NumPy broadcasting."),
    ("div", "a / b with NumPy broadcasting."),
]:
    _binary(_kind, _doc)


def quantized_types(op: Op, types: list[TensorType]) -> list[TensorType]:
    """Result types of an op that ``quantize`` rewrote: the shapes as inferred, the
    element types ``fix<w,f>`` listed in ``op.attrs["quant"]["results"]`` (the quantized
    op holds integer codes; its ``quant`` attribute says what they mean, see
    ``tensorgate.passes.quantize``).  Ops without ``quant`` keep ``types``."""
    quant = op.attrs.get("quant")
    if quant is None:
        return types
    names = quant.get("results") if isinstance(quant, dict) else None
    if not isinstance(names, list) or len(names) != len(types):
        _fail(op, f"attribute 'quant' must list {len(types)} result formats under 'results'")
    try:
        dtypes = [element_type(name) for name in names]
    except (ValueError, TypeError, AttributeError) as exc:
        _fail(op, f"attribute 'quant': {exc}")
    return [TensorType(t.shape, dtype) for t, dtype in zip(types, dtypes)]


@_spec("const", "A constant tensor.", [], {"value": REQUIRED, "quant": None})
def _const(op, consts):
    value = op.attrs["value"]
    if not isinstance(value, np.ndarray):
        _fail(op, "attribute 'value' must be a tensor")
    try:
        return quantized_types(op, [TensorType.of(value)])
    except ValueError as exc:  # a dtype no IR element type has (u8, say)
        _fail(op, f"attribute 'value': {exc}")


@_spec("matmul", "NumPy matmul of two values.", ["a", "b"])
def _matmul(op, consts):
    a, b = (v.type.shape for v in op.operands)
    if len(a) < 1 or len(b) < 1:
        _fail(op, "operands must have rank >= 1")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if not (a2[-1] == b2[-2] or not isinstance(a2[-1], int) or not isinstance(b2[-2], int)):
        _fail(op, f"contracted dims differ: {list(a)} @ {list(b)}")
    batch = broadcast(op, a2[:-2], b2[:-2])
    shape = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return [TensorType(shape, op.operands[0].type.dtype)]


@_spec("linear", "y = W x + b over the last axis; W is a linear map (any format).",
       ["x"], {"weight": REQUIRED, "bias": None, "quant": None})
def _linear(op, consts):
    x = op.operands[0].type
    weight = op.attrs["weight"]
    if not isinstance(weight, LinearMap):
        _fail(op, "attribute 'weight' must be a linear map")
    if x.rank < 1 or not isinstance(x.shape[-1], str) and x.shape[-1] != weight.in_dim:
        _fail(op, f"input's last dim {x.shape[-1:]} does not match the map's {weight.in_dim} columns")
    bias = op.attrs["bias"]
    if bias is not None and bias.shape != (weight.out_dim,):
        _fail(op, f"bias shape {list(bias.shape)} should be [{weight.out_dim}]")
    return quantized_types(op, [x.with_shape(x.shape[:-1] + (weight.out_dim,))])


@_spec("softmax", "Softmax along one axis.", ["x"], {"axis": -1})
def _softmax(op, consts):
    x = op.operands[0].type
    _norm_axis(op, op.attrs["axis"], x.rank)
    return [x]


OP_SPECS["log_softmax"] = OpSpec("log_softmax", "Log of softmax along one axis.", ("x",),
                                 {"axis": -1}, _softmax)


@_spec("reshape", "Reshape to the contents of `shape` (ONNX semantics: 0 copies, -1 infers).",
       ["x", "shape"], {"allowzero": 0})
def _reshape(op, consts):
    x, shape_value = op.operands
    target = consts.get(id(shape_value))
    if shape_value.type.rank != 1 or not isinstance(shape_value.type.shape[0], int):
        _fail(op, "shape operand must be a 1-D tensor of static length")
    if target is None:
        return [x.type.with_shape((UNKNOWN,) * shape_value.type.shape[0])]
    return [x.type.with_shape(reshape_dims(op, x.type.shape, [int(d) for d in target]))]


def reshape_dims(op: Op, src: tuple[Dim, ...], target: list[int]) -> tuple[Dim, ...]:
    """Result dims of an ONNX Reshape with constant ``target``."""
    allowzero = op.attrs.get("allowzero", 0)
    dims: list[Dim] = [src[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if dims.count(-1) > 1:
        _fail(op, f"shape {target} has more than one -1")
    if -1 in dims:
        known = _product([d for d in dims if d != -1])
        total = _product(src)
        index = dims.index(-1)
        if isinstance(known, int) and isinstance(total, int):
            if known == 0 or total % known:
                _fail(op, f"cannot reshape {list(src)} to {target}")
            dims[index] = total // known
        else:
            dims[index] = UNKNOWN
    total, new_total = _product(src), _product(dims)
    if isinstance(total, int) and isinstance(new_total, int) and total != new_total:
        _fail(op, f"cannot reshape {list(src)} ({total} elements) to {target}")
    return tuple(dims)


@_spec("transpose", "Permute axes.", ["x"], {"perm": REQUIRED})
def _transpose(op, consts):
    x = op.operands[0].type
    perm = op.attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        _fail(op, f"perm {perm} is not a permutation of {x.rank} axes")
    return [x.with_shape(tuple(x.shape[p] for p in perm))]


@_spec("slice", "ONNX Slice with constant starts/ends/axes/steps.", ["x"],
       {"starts": REQUIRED, "ends": REQUIRED, "axes": None, "steps": None})
def _slice(op, consts):
    x = op.operands[0].type
    starts, ends = op.attrs["starts"], op.attrs["ends"]
    axes = op.attrs["axes"] or list(range(len(starts)))
    steps = op.attrs["steps"] or [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        _fail(op, "starts, ends, axes and steps must have the same length")
    shape = list(x.shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _norm_axis(op, axis, x.rank)
        if step == 0:
            _fail(op, "slice step must not be 0")
        dim = shape[axis]
        shape[axis] = len(range(*slice(start, end, step).indices(dim))) if isinstance(dim, int) else UNKNOWN
    return [x.with_shape(shape)]


@_spec("gather", "ONNX Gather: take `indices` along `axis`.", ["x", "indices"], {"axis": 0})
def _gather(op, consts):
    x, indices = (v.type for v in op.operands)
    axis = _norm_axis(op, op.attrs["axis"], x.rank)
    return [x.with_shape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])]


@_spec("concat", "Concatenate along `axis`.", ["xs*"], {"axis": REQUIRED})
def _concat(op, consts):
    types = [v.type for v in op.operands]
    if not types:
        _fail(op, "needs at least one operand")
    axis = _norm_axis(op, op.attrs["axis"], types[0].rank)
    shape = list(types[0].shape)
    for t in types[1:]:
        if t.rank != len(shape):
            _fail(op, "operands have different ranks")
        for i, (a, b) in enumerate(zip(shape, t.shape)):
            if i != axis and isinstance(a, int) and isinstance(b, int) and a != b:
                _fail(op, f"operand shapes {list(shape)} and {list(t.shape)} differ off axis {axis}")
    shape[axis] = _sum_dims(t.shape[axis] for t in types)
    return [types[0].with_shape(shape)]


def _sum_dims(dims) -> Dim:
    dims = list(dims)
    return sum(dims) if all(isinstance(d, int) for d in dims) else UNKNOWN


@_spec("split", "Split along `axis` into pieces of the given sizes.", ["x"],
       {"axis": 0, "sizes": REQUIRED}, num_results=None)
def _split(op, consts):
    x = op.operands[0].type
    axis = _norm_axis(op, op.attrs["axis"], x.rank)
    sizes = op.attrs["sizes"]
    if isinstance(x.shape[axis], int) and sum(sizes) != x.shape[axis]:
        _fail(op, f"sizes {sizes} do not add up to dim {x.shape[axis]}")
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]


@_spec("squeeze", "Remove the given size-1 axes.", ["x"], {"axes": REQUIRED})
def _squeeze(op, consts):
    x = op.operands[0].type
    axes = {_norm_axis(op, a, x.rank) for a in op.attrs["axes"]}
    for a in axes:
        if isinstance(x.shape[a], int) and x.shape[a] != 1:
            _fail(op, f"cannot squeeze axis {a} of size {x.shape[a]}")
    return [x.with_shape(tuple(d for i, d in enumerate(x.shape) if i not in axes))]


@_spec("unsqueeze", "Insert size-1 axes at the given positions of the result.", ["x"],
       {"axes": REQUIRED})
def _unsqueeze(op, consts):
    x = op.operands[0].type
    rank = x.rank + len(op.attrs["axes"])
    axes = {_norm_axis(op, a, rank) for a in op.attrs["axes"]}
    rest = iter(x.shape)
    return [x.with_shape(tuple(1 if i in axes else next(rest) for i in range(rank)))]


@_spec("flatten", "Flatten to 2-D: axes before `axis` and the rest.", ["x"], {"axis": 1})
def _flatten(op, consts):
    x = op.operands[0].type
    axis = op.attrs["axis"]
    if not -x.rank <= axis <= x.rank:
        _fail(op, f"axis {axis} is out of range for rank {x.rank}")
    axis = axis + x.rank if axis < 0 else axis
    return [x.with_shape((_product(x.shape[:axis]), _product(x.shape[axis:])))]


@_spec("shape", "The shape of x as an i64 vector (ONNX Shape with start/end).", ["x"],
       {"start": 0, "end": None})
def _shape(op, consts):
    x = op.operands[0].type
    dims = x.shape[slice(op.attrs["start"], op.attrs["end"])]
    return [TensorType((len(dims),), I64)]


@_spec("cast", "Convert to another element type.", ["x"], {"to": REQUIRED})
def _cast(op, consts):
    try:
        dtype = element_type(op.attrs["to"])
    except ValueError as exc:
        _fail(op, str(exc))
    return [TensorType(op.operands[0].type.shape, dtype)]


@_spec("expand", "Broadcast x to `shape` (ONNX Expand).", ["x", "shape"])
def _expand(op, consts):
    x, shape_value = op.operands
    if shape_value.type.rank != 1 or not isinstance(shape_value.type.shape[0], int) or shape_value.type.dtype != I64:
        _fail(op, f"the shape operand must be an i64 vector of static length, got {shape_value.type}")
    target = consts.get(id(shape_value))
    if target is None:
        return [x.type.with_shape((UNKNOWN,) * max(x.type.rank, shape_value.type.shape[0]))]
    return [x.type.with_shape(broadcast(op, x.type.shape, tuple(int(d) for d in target)))]


EINSUM_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def einsum_terms(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """The operand terms and the output term of an ONNX/NumPy einsum ``equation`` for
    operands of ``ranks``, with ``...`` spelled out as digits (right-aligned, so
    broadcast dims share a digit) and an implicit output made explicit (the ellipsis
    dims, then the letters used once, sorted).  Raises ``ValueError`` with a sentence."""
    inputs, arrow, output = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation '{equation}' has {len(terms)} operand terms for {len(ranks)} operands")
    if set(inputs + output) - EINSUM_LETTERS - set(",."):
        raise ValueError(f"equation '{equation}' uses characters other than letters, ',', '->' and '...'")
    spans = [rank - len(term.replace("...", "")) for term, rank in zip(terms, ranks)]
    for term, span, rank in zip(terms, spans, ranks):
        if ("..." not in term and span) or span < 0 or term.replace("...", "").count("."):
            raise ValueError(f"term '{term}' of equation '{equation}' does not fit an operand of rank {rank}")
    width = max(spans, default=0)
    if width > 10:
        raise ValueError(f"equation '{equation}': '...' stands for {width} dims, at most 10 are supported")
    digits = "".join(str(k) for k in range(width))
    terms = [term.replace("...", digits[width - span:]) for term, span in zip(terms, spans)]
    if not arrow:
        letters = "".join(terms)
        output = digits + "".join(sorted(c for c in set(letters) if c.isalpha() and letters.count(c) == 1))
    else:
        output = output.replace("...", digits)
    if len(set(output)) != len(output) or set(output) - set("".join(terms)):
        raise ValueError(f"equation '{equation}': output '{output}' repeats a letter or uses one no operand has")
    return terms, output


@_spec("einsum", "Einstein summation (ONNX Einsum) over the operands.", ["xs*"], {"equation": REQUIRED})
def _einsum(op, consts):
    types = [v.type for v in op.operands]
    try:
        terms, output = einsum_terms(op.attrs["equation"], [t.rank for t in types])
    except ValueError as exc:
        _fail(op, str(exc))
    if len({t.dtype for t in types}) > 1:
        _fail(op, "operands have different element types")
    sizes: dict[str, Dim] = {}
    for term, t in zip(terms, types):
        for label, dim in zip(term, t.shape):
            known = sizes.setdefault(label, dim)
            broadcast = label.isdigit()  # an ellipsis dim: 1 broadcasts
            if broadcast and known == 1:
                sizes[label] = dim
            elif (dim != known and isinstance(dim, int) and isinstance(known, int)
                  and not (broadcast and dim == 1)):
                _fail(op, f"label '{label}' has sizes {known} and {dim}")
    return [TensorType(tuple(sizes[label] for label in output), types[0].dtype)]


@dataclass(frozen=True)
class Recurrence:
    """What tells the recurrent ops apart: their gates in ONNX order (the row blocks of W
    and R), the activations each direction takes (defaults where the op names none),
    their states (``h``, and ``c`` for an LSTM: the initial-state operands and the
    results after ``Y``) and the bias widths, in hidden sizes, the op accepts: ONNX's
    ``Wb`` then ``Rb`` first, then the folded form ``canonicalize`` makes."""

    gates: tuple[str, ...]
    default_activations: tuple[str, ...]
    states: tuple[str, ...]
    bias_widths: tuple[int, ...]


RECURRENT = {
    "lstm": Recurrence(LSTM_GATES, DEFAULT_LSTM_ACTIVATIONS, ("h", "c"), (8, 4)),
    "gru": Recurrence(GRU_GATES, DEFAULT_GRU_ACTIVATIONS, ("h",), (6, 3)),
    "rnn": Recurrence(RNN_GATES, DEFAULT_RNN_ACTIVATIONS, ("h",), (2, 1)),
}
"""The recurrent op kinds (ONNX LSTM, GRU and RNN semantics)."""


def _recurrent_attrs(own: dict[str, Any], weights: tuple[str, ...] = ()) -> dict[str, Any]:
    """The attributes of a recurrent op: the shared ones, the kind's ``own`` flags and
    its extra weight arrays."""
    return {
        "hidden_size": REQUIRED, "direction": "forward", "layout": 0, "clip": None, **own,
        "activations": None, "activation_alpha": None, "activation_beta": None, "w": REQUIRED, "r": REQUIRED,
        "bias": None, **{key: None for key in weights}, "quant": None,
    }


@_spec("lstm", "ONNX LSTM over a sequence; W and R are linear maps (any format).",
       ["x", "sequence_lens?", "initial_h?", "initial_c?"], _recurrent_attrs({"input_forget": 0}, ("peepholes",)),
       num_results=3)
@_spec("gru", "ONNX GRU over a sequence; W and R are linear maps (any format).",
       ["x", "sequence_lens?", "initial_h?"], _recurrent_attrs({"linear_before_reset": 0}), num_results=2)
@_spec("rnn", "ONNX RNN over a sequence; W and R are linear maps (any format).",
       ["x", "sequence_lens?", "initial_h?"], _recurrent_attrs({}), num_results=2)
def _recurrent(op, consts):
    return quantized_types(op, recurrent_result_types(op))


def recurrent_ops(ops) -> list[Op]:
    """The recurrent ops (``lstm``, ``gru``, ``rnn``) among ``ops``, in order."""
    return [op for op in ops if op.kind in RECURRENT]


def num_directions(op: Op) -> int:
    """1, or 2 for a bidirectional recurrent op."""
    return 2 if op.attrs["direction"] == "bidirectional" else 1


def sequence_lengths(seq_lens, steps: int, batch: int) -> np.ndarray:
    """Each of the ``batch`` rows' lengths from a recurrent op's ``sequence_lens`` operand
    (``steps`` for every row where it is absent), as int64.  ONNX and onnxruntime accept
    only lengths in ``0 .. steps``: any other is a ``ValueError`` (the runtimes name the
    op), never a silently clamped run."""
    if seq_lens is None:
        return np.full(batch, steps, np.int64)
    lens = np.asarray(seq_lens).astype(np.int64)
    bad = (lens < 0) | (lens > steps)
    if bad.any():
        raise ValueError(f"sequence_lens {lens[bad][0]} of batch row {int(np.argmax(bad))} "
                         f"is outside 0..{steps} (the sequence has {steps} steps)")
    return lens


def gate_count(op: Op) -> int:
    """Row blocks of a recurrent op's W and R per direction: 4 (LSTM), 3 (GRU), 1 (RNN)."""
    return len(RECURRENT[op.kind].gates)


def activation_names(op: Op) -> list[str]:
    """The activation names of all directions, the op kind's defaults where it names none."""
    return list(op.attrs["activations"] or RECURRENT[op.kind].default_activations * num_directions(op))


def activation_params(op: Op) -> list[tuple[str, float | None, float | None]]:
    """``(name, alpha, beta)`` of every activation of a recurrent op: alpha/beta are taken
    in order by the activations that have them, the ONNX defaults for the rest."""
    alphas, betas = list(op.attrs["activation_alpha"] or []), list(op.attrs["activation_beta"] or [])
    params = []
    for name in activation_names(op):
        alpha, beta = ACTIVATION_DEFAULTS.get(name, (None, None))
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        params.append((name, alpha, beta))
    return params


def applies_stacked_r_twice(op: Op) -> bool:
    """Whether each step applies R twice: a GRU without ``linear_before_reset`` whose R
    is one decomposed ``3H`` map per direction reads ``h`` for the z and r gates and
    ``r ⊙ h`` for the candidate, and a tensor network cannot give only some of its rows
    (a dense R is split into its rows instead)."""
    maps = op.attrs["r"]
    return (op.kind == "gru" and not op.attrs["linear_before_reset"] and len(maps) == num_directions(op)
            and any(m.format != "dense" for m in maps))


def recurrent_result_types(op: Op) -> list[TensorType]:
    """Check a recurrent op's attributes and return the types of Y and its final states."""
    attrs, recurrence = op.attrs, RECURRENT[op.kind]
    if attrs["direction"] not in RECURRENT_DIRECTIONS:
        _fail(op, f"direction '{attrs['direction']}' is not one of {', '.join(RECURRENT_DIRECTIONS)}")
    if attrs["layout"] not in (0, 1):
        _fail(op, f"layout must be 0 or 1, got {attrs['layout']}")
    if attrs.get("linear_before_reset", 0) not in (0, 1):
        _fail(op, f"linear_before_reset must be 0 or 1, got {attrs['linear_before_reset']}")
    dirs, hidden = num_directions(op), attrs["hidden_size"]
    if not 1 <= hidden <= MAX_DIM:
        _fail(op, f"hidden_size must be a positive size, got {hidden}")
    x = op.operands[0].type
    if x.rank != 3:
        _fail(op, f"input must be rank 3, got {x}")
    seq, batch, features = (x.shape[1], x.shape[0], x.shape[2]) if attrs["layout"] else x.shape
    activations = activation_names(op)
    count = len(recurrence.default_activations) * dirs
    if len(activations) != count:
        _fail(op, f"needs {count} activations, got {len(activations)}")
    for name in activations:
        if name not in RECURRENT_ACTIVATIONS:
            _fail(op, f"unknown activation '{name}'")
    _check_gate_maps(op, "w", dirs, hidden, features)
    _check_gate_maps(op, "r", dirs, hidden, hidden)
    _check_bias(op, dirs, hidden)
    peep = attrs.get("peepholes")
    if peep is not None and peep.shape != (dirs, 3 * hidden):
        _fail(op, f"peephole shape {list(peep.shape)} should be [{dirs}, {3 * hidden}]")
    state = (batch, dirs, hidden) if attrs["layout"] else (dirs, batch, hidden)
    for index, name in enumerate((f"initial_{s}" for s in recurrence.states), start=2):
        value = op.operands[index] if len(op.operands) > index else None
        if value is not None and not all(
            isinstance(a, str) or isinstance(b, str) or a == b for a, b in zip(value.type.shape, state)
        ) or value is not None and value.type.rank != 3:
            _fail(op, f"{name} has shape {list(value.type.shape)}, expected {list(state)}")
    y = (batch, seq, dirs, hidden) if attrs["layout"] else (seq, dirs, batch, hidden)
    return [x.with_shape(y)] + [x.with_shape(state)] * len(recurrence.states)


def _check_bias(op: Op, dirs: int, hidden: int) -> None:
    """The bias widths the op kind allows; a GRU's folded ``3H`` bias only without
    ``linear_before_reset`` (with it, ``Rb_h`` is multiplied by the reset gate)."""
    bias = op.attrs["bias"]
    if bias is None:
        return
    widths = RECURRENT[op.kind].bias_widths
    if op.attrs.get("linear_before_reset"):
        widths = widths[:1]
    shapes = [(dirs, width * hidden) for width in widths]
    if bias.shape not in shapes:
        _fail(op, f"bias shape {list(bias.shape)} should be " + " or ".join(str(list(s)) for s in shapes)
              + (" (linear_before_reset keeps Wb and Rb apart)" if op.attrs.get("linear_before_reset") else ""))


def _check_gate_maps(op: Op, key: str, dirs: int, hidden: int, in_dim: Dim) -> None:
    """W/R: one ``gates·H × in`` map per direction (gates stacked) or one ``H × in`` map
    per gate and direction (gates separate, in ONNX order: LSTM i, o, f, c; GRU z, r, h)."""
    maps = op.attrs[key]
    gates = gate_count(op)
    if not isinstance(maps, list) or not all(isinstance(m, LinearMap) for m in maps):
        _fail(op, f"attribute '{key}' must be a list of linear maps")
    if len(maps) == dirs:
        rows = gates * hidden
    elif len(maps) == gates * dirs:
        rows = hidden
    else:
        _fail(op, f"'{key}' needs {dirs} (stacked) or {gates * dirs} (per gate) maps, got {len(maps)}")
    for index, m in enumerate(maps):
        if m.out_dim != rows or isinstance(in_dim, int) and m.in_dim != in_dim:
            _fail(op, f"{key}[{index}] is {m.out_dim}x{m.in_dim}, expected {rows}x{in_dim}")


@_spec("host", "A host region: ONNX nodes tensorgate does not compile, run by onnxruntime.",
       ["xs*"], {"model": REQUIRED, "inputs": REQUIRED, "outputs": REQUIRED, "macs": None, "quant": None},
       num_results=None)
def _host(op, consts):
    return quantized_types(op, host_result_types(op))


def host_signature(op: Op, key: str) -> list[tuple[str, TensorType]]:
    """``(name, type)`` of each entry of a ``host`` op's ``inputs`` or ``outputs``: the
    embedded graph's input (output) names in operand (result) order and their types."""
    entries = op.attrs[key]
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and set(e) == {"name", "type"} and isinstance(e["name"], str)
            and isinstance(e["type"], str) for e in entries):
        _fail(op, f"attribute '{key}' must be a list of {{name, type}} entries")
    try:
        return [(e["name"], parse_type(e["type"])) for e in entries]
    except ValueError as exc:
        _fail(op, f"attribute '{key}': {exc}")


def host_result_types(op: Op) -> list[TensorType]:
    """A ``host`` op is typed by its region's signature: each operand has the type of
    the graph input it feeds (or, once quantized, fixed-point codes of a float one, which
    the region receives as real values), and the results have the output types."""
    model = op.attrs["model"]
    if not isinstance(model, np.ndarray) or model.dtype != np.uint8 or model.ndim != 1 or not model.size:
        _fail(op, "attribute 'model' must be the serialized ONNX model of the region, a non-empty u8 vector")
    inputs, outputs = host_signature(op, "inputs"), host_signature(op, "outputs")
    if len(op.operands) != len(inputs):
        _fail(op, f"the region takes {len(inputs)} inputs, the op has {len(op.operands)} operands")
    if not outputs:
        _fail(op, "the region has no outputs")
    for value, (name, want) in zip(op.operands, inputs):
        got = value.type
        codes = isinstance(got.dtype, FixedType) and isinstance(want.dtype, FloatType)
        if not (got.dtype == want.dtype or codes) or not shapes_compatible(got.shape, want.shape):
            _fail(op, f"operand %{value.name} is {got}, the region's input '{name}' takes {want}")
    macs = op.attrs["macs"]
    if macs is not None and (not isinstance(macs, int) or macs < 0):
        _fail(op, f"attribute 'macs' must be a count of multiply-accumulates or none, got {macs!r}")
    return [t for _, t in outputs]


def is_optional(spec: OpSpec, index: int) -> bool:
    names = spec.operands
    return index < len(names) and names[index].endswith("?")


def operand_count_ok(spec: OpSpec, count: int) -> bool:
    if spec.operands and spec.operands[-1].endswith("*"):
        return count >= len(spec.operands) - 1
    return count <= len(spec.operands) and count >= sum(not n.endswith("?") for n in spec.operands)


def const_values(ops) -> Consts:
    """Map ``id(value) -> array`` for every value produced by a ``const`` op."""
    return {id(op.results[0]): op.attrs["value"] for op in ops
            if op.kind == "const" and op.results and isinstance(op.attrs.get("value"), np.ndarray)}


def const_of(value: Value | None) -> np.ndarray | None:
    """The contents of ``value`` if a ``const`` op produces it."""
    if value is not None and value.producer is not None and value.producer.kind == "const":
        return value.producer.attrs["value"]
    return None
