"""The ``quant`` attribute of quantized ops: what their integer codes mean.

``quantize`` rewrites a float module into one whose real-valued values have element
type ``fix<w,f>`` and hold integer codes.  An op that computes (``linear``, ``lstm``,
``gru``, ``rnn``) or holds numbers (``const``) carries ``attrs["quant"]``, a dictionary of
plain strings, ints, lists and int64 arrays (so it prints and parses with the IR).  Its ``results``
entry lists the result formats (``ir.ops.quantized_types`` types the results from it).
Weights (map tensors, biases, peepholes) are stored as int64 codes in the op's usual
attributes; ``quant`` gives their formats.

``linear``::

    {rounding, results: [out], weight: {tensors: {name: fmt}, steps: [[fmt, ...], ...]}, bias: fmt | none}

``lstm`` (formats shared by all directions, except the weights')::

    {rounding, results: [hidden, hidden, cell],
     w: [map formats, one per map of attribute w], r: [... of attribute r],
     bias: [fmt per map of w] | none, peepholes: fmt | none,
     gates_x, pre_sigmoid, pre_tanh, gate, cell, hidden: fmt,
     sigmoid, tanh, tanh_cell: activation units (``ActivationUnit.to_attr``)}

``gru`` (bias codes ``[dirs, 3H]`` without ``linear_before_reset``; with it ``[dirs, 6H]``,
the input-side codes first, ``Rb_z``/``Rb_r`` folded into them and zero in the recurrent
half, whose last ``H`` hold ``Rb_h``)::

    {rounding, results: [hidden, hidden], w: [...], r: [...],
     bias: [fmt per map of w] | none, recurrent_bias: fmt | none,
     gates_x, pre_sigmoid, pre_tanh, gate, hidden: fmt, candidate: fmt | none,
     sigmoid, tanh: activation units}

``candidate`` (``R_h·h + Rb_h`` before the reset gate multiplies it) and
``recurrent_bias`` (``Rb_h``) are the ``linear_before_reset`` form's.

``rnn`` (one activation for all directions; ``activation`` is none for Relu, whose
pre-activation is in ``hidden``'s format)::

    {rounding, results: [hidden, hidden], w: [...], r: [...], bias: [fmt per map of w] | none,
     gates_x, pre, hidden: fmt, activation: activation unit | none}

``add`` and ``mul`` of two fixed-point values (computed, or quantized constants), each
operand in its own format, which its type gives::

    {rounding, results: [out]}

``sigmoid`` and ``tanh`` on their own (a head's, not a recurrent op's)::

    {rounding, results: [out], unit: activation unit (operand's format -> out)}

``const``: ``{results: [fmt]}``.  See ``fixedpoint/programs.py`` for the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PassError, VerifyError
from ..ir.core import Module, Op
from ..ir.types import FixedType
from .activations import ActivationUnit
from .formats import check_rounding
from .maps import MapQuant, _fixed

QUANTIZED_KINDS = ("const", "linear", "lstm", "gru", "rnn", "add", "mul", "sigmoid", "tanh")


def is_quantized(module: Module) -> bool:
    """Whether any value of ``module`` holds fixed-point codes."""
    return any(isinstance(value.type.dtype, FixedType) for value in module.values())


def require_float(module: Module, user: str) -> None:
    """Raise ``PassError`` if ``module`` is quantized: ``user`` (e.g. ``pass 'decompose'``)
    works on float modules only."""
    for value in module.values():
        if isinstance(value.type.dtype, FixedType):
            raise PassError(f"{user} needs a float module, but this one is quantized (%{value.name} is "
                            f"{value.type.dtype}); run it before 'quantize'")


def _format(quant: dict, key: str, op: Op) -> FixedType:
    try:
        return _fixed(quant[key])
    except KeyError:
        raise VerifyError(f"{op.describe()}: attribute 'quant' lacks '{key}'") from None
    except VerifyError as exc:
        raise VerifyError(f"{op.describe()}: quant '{key}': {exc}") from None


def _quant_of(op: Op) -> dict:
    """The op's ``quant`` attribute, once its input is known to hold fixed-point codes."""
    x = op.operands[0] if op.operands else None
    if x is None or not isinstance(x.type.dtype, FixedType):
        raise VerifyError(f"{op.describe()}: a quantized op takes fix<w,f> codes, but its input is "
                          f"{x.type if x is not None else 'missing'}")
    return op.attrs["quant"]


def _optional_format(quant: dict, key: str, op: Op) -> FixedType | None:
    return None if quant.get(key) is None else _format(quant, key, op)


def _rounding(quant: dict, op: Op) -> str:
    try:
        return check_rounding(quant.get("rounding"))
    except ValueError as exc:
        raise VerifyError(f"{op.describe()}: quant: {exc}") from None


def _maps(quant: dict, key: str, op: Op) -> list[MapQuant]:
    entries, maps = quant.get(key), op.attrs[key]
    if not isinstance(entries, list) or len(entries) != len(maps):
        raise VerifyError(f"{op.describe()}: quant '{key}' must give the formats of its {len(maps)} maps")
    try:
        return [MapQuant.from_attr(entry, m) for entry, m in zip(entries, maps)]
    except VerifyError as exc:
        raise VerifyError(f"{op.describe()}: quant '{key}': {exc}") from None


def _unit(quant: dict, key: str, op: Op) -> ActivationUnit:
    try:
        return ActivationUnit.from_attr(quant[key])
    except KeyError:
        raise VerifyError(f"{op.describe()}: attribute 'quant' lacks '{key}'") from None
    except (ValueError, TypeError) as exc:
        raise VerifyError(f"{op.describe()}: quant '{key}': {exc}") from None


@dataclass(frozen=True)
class LinearQuant:
    rounding: str
    output: FixedType
    weight: MapQuant
    bias: FixedType | None

    @classmethod
    def of(cls, op: Op) -> "LinearQuant":
        quant = _quant_of(op)
        try:
            weight = MapQuant.from_attr(quant.get("weight"), op.attrs["weight"])
        except VerifyError as exc:
            raise VerifyError(f"{op.describe()}: quant 'weight': {exc}") from None
        bias = _optional_format(quant, "bias", op)
        if (bias is None) != (op.attrs["bias"] is None):
            raise VerifyError(f"{op.describe()}: quant 'bias' must give the bias format exactly when the op has a bias")
        return cls(_rounding(quant, op), op.result.type.dtype, weight, bias)


def _bias_formats(quant: dict, op: Op) -> list[FixedType] | None:
    """The bias formats of a recurrent op: one per map of ``w``, or none."""
    bias = quant.get("bias")
    if (bias is None) != (op.attrs["bias"] is None):
        raise VerifyError(f"{op.describe()}: quant 'bias' must give the bias formats exactly when the op has a bias")
    if bias is None:
        return None
    if not isinstance(bias, list) or len(bias) != len(op.attrs["w"]):
        raise VerifyError(f"{op.describe()}: quant 'bias' must give one format per map of 'w'")
    return [_format({"bias": b}, "bias", op) for b in bias]


def _check_unit(op: Op, key: str, unit: ActivationUnit, source: FixedType, target: FixedType) -> None:
    if unit.input != source or unit.output != target:
        raise VerifyError(f"{op.describe()}: quant '{key}' maps {unit.input} -> {unit.output}, "
                          f"expected {source} -> {target}")


@dataclass(frozen=True)
class LSTMQuant:
    rounding: str
    w: list[MapQuant]
    r: list[MapQuant]
    bias: list[FixedType] | None
    peepholes: FixedType | None
    gates_x: FixedType
    pre_sigmoid: FixedType
    pre_tanh: FixedType
    gate: FixedType
    cell: FixedType
    hidden: FixedType
    sigmoid: ActivationUnit
    tanh: ActivationUnit
    tanh_cell: ActivationUnit

    @classmethod
    def of(cls, op: Op) -> "LSTMQuant":
        quant = _quant_of(op)
        units = {key: _unit(quant, key, op) for key in ("sigmoid", "tanh", "tanh_cell")}
        formats = {key: _format(quant, key, op)
                   for key in ("gates_x", "pre_sigmoid", "pre_tanh", "gate", "cell", "hidden")}
        for key, source, target in (("sigmoid", "pre_sigmoid", "gate"), ("tanh", "pre_tanh", "gate"),
                                    ("tanh_cell", "cell", "gate")):
            _check_unit(op, key, units[key], formats[source], formats[target])
        return cls(_rounding(quant, op), _maps(quant, "w", op), _maps(quant, "r", op), _bias_formats(quant, op),
                   _optional_format(quant, "peepholes", op), **formats, **units)


@dataclass(frozen=True)
class GRUQuant:
    rounding: str
    w: list[MapQuant]
    r: list[MapQuant]
    bias: list[FixedType] | None
    recurrent_bias: FixedType | None
    gates_x: FixedType
    pre_sigmoid: FixedType
    pre_tanh: FixedType
    gate: FixedType
    hidden: FixedType
    candidate: FixedType | None
    sigmoid: ActivationUnit
    tanh: ActivationUnit

    @classmethod
    def of(cls, op: Op) -> "GRUQuant":
        quant = _quant_of(op)
        units = {key: _unit(quant, key, op) for key in ("sigmoid", "tanh")}
        formats = {key: _format(quant, key, op) for key in ("gates_x", "pre_sigmoid", "pre_tanh", "gate", "hidden")}
        for key, source in (("sigmoid", "pre_sigmoid"), ("tanh", "pre_tanh")):
            _check_unit(op, key, units[key], formats[source], formats["gate"])
        candidate = _optional_format(quant, "candidate", op)
        recurrent_bias = _optional_format(quant, "recurrent_bias", op)
        if op.attrs["linear_before_reset"] and op.attrs["bias"] is not None and recurrent_bias is None:
            raise VerifyError(f"{op.describe()}: quant 'recurrent_bias' (the format of Rb_h) is required with "
                              "linear_before_reset and a bias")
        if (candidate is None) == bool(op.attrs["linear_before_reset"]):
            raise VerifyError(f"{op.describe()}: quant 'candidate' is the format of linear_before_reset's "
                              "R_h·h + Rb_h: given exactly when linear_before_reset is 1")
        return cls(_rounding(quant, op), _maps(quant, "w", op), _maps(quant, "r", op), _bias_formats(quant, op),
                   recurrent_bias, candidate=candidate, **formats, **units)


@dataclass(frozen=True)
class RNNQuant:
    rounding: str
    w: list[MapQuant]
    r: list[MapQuant]
    bias: list[FixedType] | None
    gates_x: FixedType
    pre: FixedType
    hidden: FixedType
    activation: ActivationUnit | None

    @classmethod
    def of(cls, op: Op) -> "RNNQuant":
        quant = _quant_of(op)
        formats = {key: _format(quant, key, op) for key in ("gates_x", "pre", "hidden")}
        unit = None if quant.get("activation") is None else _unit(quant, "activation", op)
        if unit is None and formats["pre"] != formats["hidden"]:
            raise VerifyError(f"{op.describe()}: quant 'pre' must be 'hidden''s format when no unit maps one "
                              "to the other (Relu)")
        if unit is not None:
            _check_unit(op, "activation", unit, formats["pre"], formats["hidden"])
        return cls(_rounding(quant, op), _maps(quant, "w", op), _maps(quant, "r", op), _bias_formats(quant, op),
                   activation=unit, **formats)


@dataclass(frozen=True)
class ElementwiseQuant:
    """A quantized ``add`` or ``mul``: its operands' formats and its result's."""

    rounding: str
    inputs: tuple[FixedType, FixedType]
    output: FixedType

    @classmethod
    def of(cls, op: Op) -> "ElementwiseQuant":
        quant = _quant_of(op)
        if len(op.operands) != 2 or not isinstance(op.operands[1].type.dtype, FixedType):
            raise VerifyError(f"{op.describe()}: a quantized {op.kind} takes two fix<w,f> operands")
        formats = tuple(v.type.dtype for v in op.operands)
        return cls(_rounding(quant, op), formats, op.result.type.dtype)


@dataclass(frozen=True)
class ActivationQuant:
    """A quantized ``sigmoid`` or ``tanh``: the unit from its operand's format to its result's."""

    rounding: str
    output: FixedType
    unit: ActivationUnit

    @classmethod
    def of(cls, op: Op) -> "ActivationQuant":
        quant = _quant_of(op)
        unit = _unit(quant, "unit", op)
        if unit.function != op.kind:
            raise VerifyError(f"{op.describe()}: quant 'unit' computes {unit.function}, not {op.kind}")
        _check_unit(op, "unit", unit, op.operands[0].type.dtype, op.result.type.dtype)
        return cls(_rounding(quant, op), op.result.type.dtype, unit)


def module_rounding(module: Module) -> str:
    """The rounding mode of a quantized module's ops (module inputs are quantized with it).
    ``VerifyError`` if its ops disagree."""
    modes = {op.attrs["quant"].get("rounding") for op in module.ops
             if isinstance(op.attrs.get("quant"), dict) and op.kind != "const"}
    if len(modes) > 1:
        raise VerifyError(f"the module's quantized ops use different rounding modes: {sorted(map(str, modes))}")
    return modes.pop() if modes else "nearest-even"

