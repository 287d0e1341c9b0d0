"""The ``quantize`` pass: float module -> fixed-point module the integer golden model runs.

Every real-valued tensor gets a signed format ``fix<w,f>``; weights become int64 codes;
σ and tanh become integer units.  Widths: ``weight-bits`` for map tensors, cores,
precontracted weights and peepholes; ``act-bits`` for module inputs, contraction
intermediates, the recurrent ops' ``gates_x`` / pre-activations / gate outputs / ``h``
(and a GRU's ``candidate``) and ``linear`` outputs; ``state-bits`` for the LSTM's cell
state ``c``; each defaults to ``bits``.

Formats (``fixedpoint.formats.fit_format``: the most fraction bits that keep the
calibrated ``max |value|`` unsaturated):

* weights: from the weights themselves, per map tensor (``per=core``) or one per map
  (``per=tensor``); peepholes one per op.  A tensor of a map below ``2^-weight-bits`` of
  the map's largest is negligible and fitted to that floor (a BT block fitted to a zero
  residual would otherwise get fraction bits that misalign the map's sums);
* contraction step results: from calibration, floored the same way within the map;
  steps that only read weights (precontraction) have ``weight-bits``, others ``act-bits``;
* biases: at the fraction bits of the accumulator they are added to, as wide as their
  largest code needs (no precision is lost before the single rounding);
* ``add`` and ``mul`` of two values (computed, or float constants): the result's format
  from its calibrated range at ``act-bits``; the exact sum (operands aligned to the larger
  fraction-bit count) or product is rounded once, in the ``rounding`` mode, and
  saturated (``fixedpoint.programs``), so a result is within half an LSB of its format
  of the exact result of the operands' codes.  A float constant they read gets the
  format of its largest ``|value|`` at ``weight-bits``;
* ``sigmoid`` and ``tanh`` on their own (a head's): an integer unit from the operand's
  format to ``fix<A, A-1>`` (``|y| <= 1``; sigmoid's 1.0 saturates one LSB below);
* activations: from calibration ranges (``passes/quantization/calibrate.py``).  A gate's
  pre-activation range stops at ``clip`` and where σ (resp. tanh) is within a quarter
  output LSB of its limit: saturating beyond changes nothing.  The gate outputs
  ``G = fix<A, A-2>`` (1.0 is exact) and ``h`` ``H = fix<A, A-1>`` (|h| <= 1) are fixed,
  except an RNN with Relu, whose ``h`` (and pre-activation, the same format) is fitted
  to its calibrated range (up to ``clip``).  Quantized recurrent ops take the default
  activations (LSTM σ, tanh, tanh; GRU σ, tanh) or, for an RNN, one of Tanh, Sigmoid and
  Relu in all directions.

Calibration: ``calibration=FILE.npz`` holds inputs keyed by the module's input names
(any batch and sequence length).  Without it, the documented default is one seeded
batch of standard-normal inputs (``DEFAULT_SEED``), every symbolic dimension set to
``DEFAULT_DIM``: inputs are taken to be standardized.  Integer inputs (sequence lengths)
need a calibration file.

Accumulators: every sum is bounded for the worst case over *all* input codes (weights
known, activations anywhere in their format, intermediates anywhere in theirs); each
bound stays below ``2^62`` (63-bit accumulators, int64 in the golden model) or the
pass fails naming the tensor.  The bound implies the rule ``w_a >= w_x + w_w + ⌈log2 K⌉``
(``fixedpoint.formats.accumulator_width``, with its proof).

``report=FILE`` writes the quantization report (per tensor format, calibrated range,
saturations of the golden model on the calibration inputs; per output SQNR, max error,
top-1 agreement; activation error bounds; accumulator widths), as JSON if FILE ends in
``.json``, else as text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ExecutionError, PassError, PipelineError
from ..fixedpoint.activations import build_unit, saturation_input
from ..fixedpoint.formats import MAX_FLOAT_WIDTH, code_min, fit_format, quantize, round_float, signed_width
from ..fixedpoint.maps import IntegerMap, MapQuant, network_plans
from ..fixedpoint.quant_attrs import is_quantized
from ..ir.core import Module, Op, Value
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import (
    DATA_MOVEMENT,
    QUANTIZED_ELEMENTWISE,
    RECURRENT,
    activation_names,
    gate_count,
    num_directions,
    recurrent_ops,
)
from ..ir.types import FixedType, FloatType, TensorType
from .base import Pass, option
from .dce import DeadCodeElimination
from .quantization.calibrate import Calibration, calibrate, load_calibration

DEFAULT_DIM = 32
DEFAULT_SEED = 0
ACCUMULATOR_LIMIT = 1 << 62
"""Every accumulator magnitude stays below this: 63-bit signed accumulators."""

_SINGLE_SOURCE = ("reshape", "transpose", "slice", "gather", "squeeze", "unsqueeze", "flatten", "expand")


@dataclass(frozen=True)
class Quantize(Pass):
    """Assign fixed-point formats to every tensor and rewrite weights as integer codes
    (see the module docstring for the rules)."""

    name: ClassVar[str] = "quantize"
    doc: ClassVar[str] = "Convert to fixed point: formats for every tensor, integer weights and σ/tanh units."

    bits: int = option(8, min=2, max=32, doc="default width of every format")
    weight_bits: int | None = option(None, min=2, max=32, doc="width of weights, cores and peepholes")
    act_bits: int | None = option(None, min=2, max=32, doc="width of activations, intermediates, gates and h")
    state_bits: int | None = option(None, min=2, max=32, doc="width of the LSTM cell state c")
    calibration: Path | None = option(None, doc=".npz of inputs keyed by input name, to measure ranges")
    rounding: Literal["nearest-even", "half-away"] = option("nearest-even", doc="rounding of every narrowing")
    activation: Literal["pwl", "lut"] = option("pwl", doc="σ/tanh as piecewise-linear segments or a table")
    segments: int | None = option(None, min=1, max=1024,
                                  doc="PWL segments, a power of two (default: fewest within 1 output LSB)")
    table_size: int | None = option(None, min=1, max=65536,
                                    doc="LUT entries, a power of two (default: fewest within 1 output LSB)")
    per: Literal["tensor", "core"] = option("core", doc="weight format granularity: per map, or per stored tensor")
    report: Path | None = option(None, doc="write the quantization report to this file (.json or text)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("segments", "table_size"):
            size = getattr(self, key)
            if size is not None and size & (size - 1):
                raise PipelineError(f"pass 'quantize': option '{key.replace('_', '-')}' must be a power of two, "
                                    f"got {size}")

    @property
    def widths(self) -> tuple[int, int, int]:
        """``(weight, activation, state)`` bits."""
        return (self.weight_bits or self.bits, self.act_bits or self.bits, self.state_bits or self.bits)

    def run(self, module: Module) -> bool:
        if is_quantized(module):
            raise PassError("the module is already quantized")
        _drop_zero_states(module)
        _check_supported(module)
        _align_gate_grouping(module)
        inputs = load_calibration(self.calibration, module) if self.calibration else default_inputs(module)
        try:
            ranges = calibrate(module, inputs)
        except ExecutionError as exc:
            raise PassError(f"calibration failed: {exc}") from None
        float_module = module.copy() if self.report else None
        plan = _Planner(self, module, ranges).plan()
        plan.apply(module)
        if self.report:
            from .quantization.report import build_report

            report = build_report(float_module, module, inputs, ranges, plan.accumulators)
            try:
                report.write(self.report)
            except OSError as exc:
                raise PassError(f"cannot write the report to '{self.report}': {exc.strerror or exc}") from None
        return True


def default_inputs(module: Module) -> dict[str, np.ndarray]:
    """The documented default calibration batch (module docstring)."""
    rng = np.random.default_rng(DEFAULT_SEED)
    inputs = {}
    for value in module.inputs:
        if not isinstance(value.type.dtype, FloatType):
            raise PassError(f"input '{value.name}' is {value.type.dtype}: give its values in a calibration "
                            "file (calibration=FILE.npz)")
        shape = [d if isinstance(d, int) else DEFAULT_DIM for d in value.type.shape]
        inputs[value.name] = rng.standard_normal(shape)
    return inputs


# --- preparation ---------------------------------------------------------------------


def _align_gate_grouping(module: Module) -> None:
    """The integer recurrent ops add W·x and R·h map by map into the same gate blocks, so
    W and R must be grouped alike (stacked, or one map per gate).  A dense W or R is
    regrouped to match the other, which changes no number; two decomposed maps grouped
    differently cannot be."""
    from .decompose import regroup_gates

    for op in recurrent_ops(module.ops):
        dirs = num_directions(op)
        w, r = op.attrs["w"], op.attrs["r"]
        if len(w) == len(r):
            continue
        dense = next((key for key, maps in (("r", r), ("w", w)) if all(isinstance(m, DenseMap) for m in maps)), None)
        if dense is None:
            raise PassError(f"{op.describe()}: W has {len(w) // dirs} and R {len(r) // dirs} decomposed maps per "
                            "direction; decompose both with the same 'gates' option")
        stacked = len(op.attrs["w" if dense == "r" else "r"]) == dirs
        matrices = regroup_gates([m.to_dense() for m in op.attrs[dense]], dirs, gate_count(op), stacked)
        op.attrs[dense] = [DenseMap(matrix) for matrix in matrices]


def _drop_zero_states(module: Module) -> None:
    """Initial states of recurrent ops that are zero by construction (a zero constant,
    moved around) become absent operands, which mean zeros; the ops computing them go."""
    dropped = False
    for op in recurrent_ops(module.ops):
        for index in range(2, 2 + len(RECURRENT[op.kind].states)):
            if index < len(op.operands) and op.operands[index] is not None and _all_zero(op.operands[index]):
                op.operands[index] = None
                dropped = True
    if dropped:
        DeadCodeElimination().run(module)


def _all_zero(value: Value) -> bool:
    producer = value.producer
    if producer is None:
        return False
    if producer.kind == "const":
        array = producer.attrs["value"]
        return array.dtype.kind == "f" and not np.any(array)
    if producer.kind in _SINGLE_SOURCE:
        return _all_zero(producer.operands[0])
    if producer.kind == "concat":
        return all(_all_zero(v) for v in producer.operands)
    return False


def _host_only(module: Module, value: Value) -> bool:
    """Only host regions read ``value`` (it is no module output either)."""
    users = module.users(value)
    return bool(users) and all(u.kind == "host" for u in users) and all(v is not value for v in module.outputs)


def _states_share_a_tensor(module: Module, op: Op) -> bool:
    """The ``lstm``'s initial h and c are read from one value, or its final h and c go into one concat."""
    sources = [_source(op.operands[index]) if index < len(op.operands) and op.operands[index] is not None else None
               for index in (2, 3)]
    if sources[0] is not None and sources[0] is sources[1]:
        return True
    return bool(_concats_reached(module, op.results[1]) & _concats_reached(module, op.results[2]))


def _concats_reached(module: Module, value: Value) -> set[int]:
    """Ids of the concat ops ``value`` reaches through single-source data movement."""
    return {id(concat) for concat in _concat_users(module, value)}


def _concat_users(module: Module, value: Value) -> list[Op]:
    """The concat ops ``value`` reaches through single-source data movement."""
    found: list[Op] = []
    pending = [value]
    while pending:
        for user in module.users(pending.pop()):
            if user.kind == "concat":
                found.append(user)
            elif user.kind in _SINGLE_SOURCE:
                pending.extend(user.results)
    return found


def _source(value: Value) -> Value:
    """The value ``value`` is read from through single-source data movement."""
    while value.producer is not None and value.producer.kind in _SINGLE_SOURCE:
        value = value.producer.operands[0]
    return value


def _is_float(value: Value | None) -> bool:
    return value is not None and isinstance(value.type.dtype, FloatType)


def _check_supported(module: Module) -> None:
    """Refuse, naming the op, anything the integer model cannot run (host regions run in
    onnxruntime, in float, whatever they hold)."""
    for op in module.ops:
        if op.kind == "host" or not any(_is_float(v) for v in op.operands + op.results):
            continue
        if op.kind in RECURRENT:
            _check_recurrent(op)
        elif op.kind not in ("linear", "const", "relu") + QUANTIZED_ELEMENTWISE + DATA_MOVEMENT:
            hint = " (the argmax of the logits is the same: export the logits without it)" if op.kind in (
                "softmax", "log_softmax") else ""
            raise PassError(f"{op.describe()} has no fixed-point form; quantize handles linear, lstm, gru, rnn, "
                            f"add, mul, sigmoid, tanh, relu and data movement ops{hint}")


RNN_ACTIVATIONS = ("Tanh", "Sigmoid", "Relu")
"""The RNN activations with a fixed-point form (a σ/tanh unit, or a max with 0)."""


def _check_recurrent(op: Op) -> None:
    activations = activation_names(op)
    if op.kind == "rnn":
        if len(set(activations)) > 1 or activations[0] not in RNN_ACTIVATIONS:
            raise PassError(f"{op.describe()}: activations {activations} have no fixed-point form; quantize "
                            f"supports one of {', '.join(RNN_ACTIVATIONS)} for all directions")
    elif activations != list(RECURRENT[op.kind].default_activations) * num_directions(op):
        defaults = ", ".join(RECURRENT[op.kind].default_activations)
        raise PassError(f"{op.describe()}: activations {op.attrs['activations']} have no fixed-point units; "
                        f"quantize supports the default {defaults}")
    if not _is_float(op.operands[0]):
        raise PassError(f"{op.describe()}: input %{op.operands[0].name} is {op.operands[0].type.dtype}, not float")


# --- planning --------------------------------------------------------------------------


@dataclass
class _Plan:
    """Everything ``quantize`` changes, computed before anything is changed."""

    formats: dict[int, FixedType]
    attrs: dict[int, dict[str, Any]]
    accumulators: list[tuple[str, int]]

    def apply(self, module: Module) -> None:
        for op in module.ops:
            op.attrs.update(self.attrs.get(id(op), {}))
        for value in module.values():
            fmt = self.formats.get(id(value))
            if fmt is not None:
                value.type = TensorType(value.type.shape, fmt)


class _Planner:
    """Walks the module in order, choosing formats and integer attributes."""

    def __init__(self, options: Quantize, module: Module, calibration: Calibration):
        self.options = options
        self.module = module
        self.calibration = calibration
        self.weight_bits, self.act_bits, self.state_bits = options.widths
        self.rounding = options.rounding
        self.result = _Plan({}, {}, [])
        self.demanded: dict[int, tuple[FixedType, str]] = {}

    def plan(self) -> _Plan:
        recurrent = recurrent_ops(self.module.ops)
        formats_of = {"lstm": self._lstm_formats, "gru": self._gru_formats, "rnn": self._rnn_formats}
        plan_recurrent = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}
        state_formats = {id(op): formats_of[op.kind](op) for op in recurrent}
        for op in recurrent:
            formats = state_formats[id(op)]
            for index, state in enumerate(RECURRENT[op.kind].states, start=2):
                if index < len(op.operands) and op.operands[index] is not None:
                    self._demand(op, index, formats["hidden" if state == "h" else "cell"])
        for value in self.module.inputs:
            if _is_float(value) and not _host_only(self.module, value):
                self._set(value, self._demanded_or(value, lambda: self._fit(value.name, self.act_bits)))
        for op in self.module.ops:
            if op.kind == "host":
                self._host(op)
            elif op.kind == "const" and _is_float(op.result):
                self._const(op)
            elif op.kind == "linear":
                self._linear(op)
            elif op.kind in RECURRENT:
                plan_recurrent[op.kind](op, state_formats[id(op)])
            elif op.kind in ("add", "mul") and any(_is_float(v) for v in op.operands):
                self._elementwise(op)
            elif op.kind in ("sigmoid", "tanh"):
                self._activation(op)
            elif any(id(v) in self.result.formats for v in op.inputs):
                self._passthrough(op)
        return self.result

    # -- helpers

    def _fit(self, name: str, width: int) -> FixedType:
        rng = self.calibration.ranges.get(name)
        return fit_format(0.0 if rng is None else rng.max_abs, width, self.rounding)

    def _fit_joined(self, value: Value, width: int) -> FixedType:
        """The format of a linear op's result ``value``: fitted to its range, or, where it
        is concatenated with other linear results (a grouped linear layer, one op per
        group), to the largest range among them, so that the concat's operands agree."""
        partners = {value.name} | {
            source.name for concat in _concat_users(self.module, value) for source in map(_source, concat.inputs)
            if source.producer is not None and source.producer.kind == "linear"}
        ranges = [self.calibration.ranges.get(name) for name in partners]
        return fit_format(max((r.max_abs for r in ranges if r is not None), default=0.0), width, self.rounding)

    def _fit_within(self, max_abs: float, largest: float, width: int) -> FixedType:
        """The format of a part of a map (a tensor, a step result) whose largest part
        reaches ``largest``: a part below ``2^-width · largest`` is negligible at this
        width and gets the format of that floor (its codes are then near zero) rather
        than fraction bits that would misalign the map's sums by dozens of bits."""
        return fit_format(max(max_abs, math.ldexp(largest, -width)), width, self.rounding)

    def _set(self, value: Value, fmt: FixedType) -> None:
        self.result.formats[id(value)] = fmt

    def _format_of(self, value: Value, op: Op) -> FixedType:
        fmt = self.result.formats.get(id(value))
        if fmt is None:
            raise PassError(f"{op.describe()}: operand %{value.name} ({value.type.dtype}) has no fixed-point format")
        return fmt

    def _demand(self, op: Op, index: int, fmt: FixedType) -> None:
        """The initial state ``op.operands[index]`` must arrive in ``fmt``: give it to the
        module input or constant it comes from through data movement."""
        value = _source(op.operands[index])
        if value.producer is not None and value.producer.kind != "const":
            raise PassError(f"{op.describe()}: its initial state is computed by {value.producer.describe()}; "
                            "quantize takes initial states that are module inputs, constants or zero")
        previous = self.demanded.setdefault(id(value), (fmt, op.describe()))
        if previous[0] != fmt:
            raise PassError(f"%{value.name} is an initial state in {previous[0]} for {previous[1]} and in {fmt} "
                            f"for {op.describe()}; give each its own value")

    def _demanded_or(self, value: Value, default) -> FixedType:
        demanded = self.demanded.get(id(value))
        return demanded[0] if demanded else default()

    def _check_bound(self, name: str, bound: int) -> None:
        if bound >= ACCUMULATOR_LIMIT:
            raise PassError(f"the accumulator of {name} needs {signed_width(bound)} bits, more than the 63 the "
                            "golden model allows; lower weight-bits, act-bits or state-bits")
        self.result.accumulators.append((name, signed_width(bound)))

    def _quantize_map(self, linear_map: LinearMap, name: str, x_fmt: FixedType) -> tuple[IntegerMap, LinearMap]:
        """Integer codes and formats of one map (its steps' formats from calibration);
        the accumulator of every step is checked."""
        tensors = linear_map.tensors()
        width = self.weight_bits
        largest = {key: float(np.abs(t).max(initial=0.0)) for key, t in tensors.items()}
        if self.options.per == "tensor":
            common = fit_format(max(largest.values()), width, self.rounding)
            formats = {key: common for key in tensors}
        else:
            formats = {key: self._fit_within(value, max(largest.values()), width) for key, value in largest.items()}
        codes = type(linear_map).from_parts(linear_map.meta(), {key: quantize(t, formats[key], self.rounding)
                                                                for key, t in tensors.items()})
        steps: tuple = ()
        if not isinstance(linear_map, DenseMap):
            maxima = self.calibration.steps.get(name, [])
            top = max((value for network in maxima for value in network), default=0.0)
            steps = tuple(
                tuple(self._fit_within(maxima[k][i] if k < len(maxima) else 0.0, top,
                                       self.weight_bits if step.weights_only else self.act_bits)
                      for i, step in enumerate(plan.steps[:-1]))
                for k, plan in enumerate(network_plans(linear_map)))
        integer = IntegerMap(codes, MapQuant.for_map(codes, formats, steps), self.rounding)
        try:
            _, _, step_bounds = integer.bound(x_fmt)
        except OverflowError as exc:
            raise PassError(f"the accumulator of {name} needs {exc.args[0]} bits, more than the 63 the golden "
                            "model allows; lower weight-bits, act-bits or state-bits") from None
        for index, bound in enumerate(step_bounds):
            self._check_bound(f"{name} step {index}" if len(step_bounds) > 1 else name, bound)
        return integer, codes

    def _bias(self, bias: np.ndarray, frac: int, owner: str) -> tuple[np.ndarray, FixedType]:
        """Bias codes at the accumulator's ``frac``, as wide as they need."""
        largest = float(np.abs(round_float(np.ldexp(np.asarray(bias, np.float64), frac), self.rounding)).max(
            initial=0.0))
        width = max(2, signed_width(int(largest)))
        if width > MAX_FLOAT_WIDTH:
            raise PassError(f"the bias of {owner} needs {width} bits at the accumulator's {frac} fraction bits")
        fmt = FixedType(width, frac)
        return quantize(bias, fmt, self.rounding), fmt

    # -- ops

    def _const(self, op: Op) -> None:
        """A float constant as an initial state takes the state's format; one that only
        ``add`` and ``mul`` read, the format of its largest ``|value|`` at ``weight-bits``."""
        demanded = self.demanded.get(id(op.result))
        users = self.module.users(op.result)
        if demanded is None and users and all(user.kind in ("add", "mul") for user in users):
            demanded = (fit_format(float(np.abs(op.attrs["value"]).max(initial=0.0)), self.weight_bits,
                                   self.rounding), "")
        if demanded is None:
            described = ", ".join(user.describe() for user in users)
            raise PassError(f"{op.describe()}: a float constant feeding {described} has no fixed-point form; "
                            "quantize takes float constants as initial states of recurrent ops and operands of "
                            "add and mul")
        fmt = demanded[0]
        self._set(op.result, fmt)
        self.result.attrs[id(op)] = {"value": np.asarray(quantize(op.attrs["value"], fmt, self.rounding), np.int64),
                                   "quant": {"results": [str(fmt)]}}

    def _host(self, op: Op) -> None:
        """A host region computes in float: its results that tensorgate ops read are
        quantized at the boundary to formats from calibration; the others (read by host
        regions, or module outputs) stay float."""
        formats = [self._fit(v.name, self.act_bits) if _is_float(v) and any(
            user.kind != "host" for user in self.module.users(v)) else None for v in op.results]
        if not any(formats):
            return
        for value, fmt in zip(op.results, formats):
            if fmt is not None:
                self._set(value, fmt)
        self.result.attrs[id(op)] = {"quant": {"rounding": self.rounding, "results": [
            str(fmt or value.type.dtype) for value, fmt in zip(op.results, formats)]}}

    def _elementwise(self, op: Op) -> None:
        """``add`` / ``mul`` (``fixedpoint.programs.ElementwiseProgram``): the result's
        format from calibration, the exact sum or product's bound checked."""
        a, b = (self._format_of(v, op) for v in op.operands)
        if op.kind == "mul":
            bound = code_min(a) * code_min(b)
        else:
            bound = _aligned_bound([(-code_min(a), a.frac), (-code_min(b), b.frac)])
        self._check_bound(op.result.name, bound)
        out = self._fit(op.result.name, self.act_bits)
        self.result.attrs[id(op)] = {"quant": {"rounding": self.rounding, "results": [str(out)]}}
        self._set(op.result, out)

    def _activation(self, op: Op) -> None:
        """A ``sigmoid`` or ``tanh`` of its own: a unit from the operand's format to ``fix<A, A-1>``."""
        x_fmt = self._format_of(op.operands[0], op)
        out = FixedType(self.act_bits, self.act_bits - 1)
        self.result.attrs[id(op)] = {"quant": {"rounding": self.rounding, "results": [str(out)],
                                               "unit": self._unit(op.kind, x_fmt, out)}}
        self._set(op.result, out)

    def _passthrough(self, op: Op) -> None:
        """Data movement and relu: results take the format of the (fixed-point) data."""
        formats = {self._format_of(v, op) for v in op.inputs if _is_float(v)}
        if len(formats) > 1:
            raise PassError(f"{op.describe()}: operands arrive in different formats "
                            f"({', '.join(sorted(map(str, formats)))})")
        (fmt,) = formats
        for result in op.results:
            if _is_float(result):
                self._set(result, fmt)

    def _linear(self, op: Op) -> None:
        name = op.results[0].name
        x_fmt = self._format_of(op.operands[0], op)
        integer, codes = self._quantize_map(op.attrs["weight"], f"{name}.weight", x_fmt)
        bound, frac, _ = integer.bound(x_fmt)
        terms = [(bound, frac)]
        attrs: dict[str, Any] = {"weight": codes}
        quant: dict[str, Any] = {"rounding": self.rounding, "weight": integer.quant.to_attr(), "bias": None}
        if op.attrs["bias"] is not None:
            bias, bias_fmt = self._bias(op.attrs["bias"], frac, op.describe())
            attrs["bias"] = bias
            quant["bias"] = str(bias_fmt)
            terms.append((int(np.abs(bias).max(initial=0)), bias_fmt.frac))
        self._check_bound(name, _aligned_bound(terms))
        out = self._fit_joined(op.result, self.act_bits)
        quant["results"] = [str(out)]
        attrs["quant"] = quant
        self.result.attrs[id(op)] = attrs
        self._set(op.result, out)

    def _lstm_formats(self, op: Op) -> dict[str, FixedType]:
        """The formats of the module docstring; ``h`` takes the format of ``c`` when the two
        share a tensor (initial states read from one value, as silero's ``state[0]`` and
        ``state[1]``, or final states concatenated into one), which has one format."""
        name, a = op.results[0].name, self.act_bits
        gate = FixedType(a, a - 2)
        cell = self._fit(f"{name}.cell", self.state_bits)
        return {"gates_x": self._fit(f"{name}.gates_x", a),
                "pre_sigmoid": self._fit_pre(op, "sigmoid", gate), "pre_tanh": self._fit_pre(op, "tanh", gate),
                "gate": gate, "cell": cell, "hidden": cell if _states_share_a_tensor(self.module, op) else
                FixedType(a, a - 1)}

    def _fit_pre(self, op: Op, function: str, gate: FixedType, tensor: str | None = None) -> FixedType:
        """The pre-activation format of a gate (calibrated as ``tensor``, by default
        ``pre_<function>``): its calibrated range, but no wider than ``clip`` or the input
        beyond which ``function`` is flat to a quarter LSB of ``gate`` (saturating there
        changes the unit's output by less than that)."""
        rng = self.calibration.ranges.get(f"{op.results[0].name}.{tensor or f'pre_{function}'}")
        limits = [0.0 if rng is None else rng.max_abs, saturation_input(function, gate)]
        if op.attrs["clip"] is not None:
            limits.append(float(op.attrs["clip"]))
        return fit_format(min(limits), self.act_bits, self.rounding)

    def _unit(self, function: str, input_fmt: FixedType, output_fmt: FixedType) -> dict[str, Any]:
        size = self.options.segments if self.options.activation == "pwl" else self.options.table_size
        return build_unit(function, self.options.activation, input_fmt, output_fmt, self.rounding, size).to_attr()

    def _lstm(self, op: Op, formats: dict[str, FixedType]) -> None:
        attrs, name = op.attrs, op.results[0].name
        x_fmt = self._format_of(op.operands[0], op)
        gate, cell, hidden = formats["gate"], formats["cell"], formats["hidden"]
        w_maps, w_quant, w_terms = self._maps(attrs["w"], f"{name}.w", x_fmt)
        r_maps, r_quant, r_terms = self._maps(attrs["r"], f"{name}.r", hidden)
        new_attrs: dict[str, Any] = {"w": w_maps, "r": r_maps}
        quant: dict[str, Any] = {"rounding": self.rounding, "w": w_quant, "r": r_quant, "bias": None,
                                 "peepholes": None, **{key: str(fmt) for key, fmt in formats.items()}}
        if attrs["bias"] is not None:
            bias = np.asarray(attrs["bias"], np.float64)
            if bias.shape[1] == 8 * op.attrs["hidden_size"]:
                bias = bias[:, :4 * op.attrs["hidden_size"]] + bias[:, 4 * op.attrs["hidden_size"]:]
            new_attrs["bias"], quant["bias"] = self._projection_bias(op, bias, w_terms)
        else:
            self._projection_bias(op, None, w_terms)
        pre_terms = [(-code_min(formats["gates_x"]), formats["gates_x"].frac)]
        if attrs["peepholes"] is not None:
            peep = np.asarray(attrs["peepholes"], np.float64)
            peep_fmt = fit_format(float(np.abs(peep).max(initial=0.0)), self.weight_bits, self.rounding)
            new_attrs["peepholes"] = quantize(peep, peep_fmt, self.rounding)
            quant["peepholes"] = str(peep_fmt)
            pre_terms.append((int(np.abs(new_attrs["peepholes"]).max(initial=0)) * -code_min(cell),
                              peep_fmt.frac + cell.frac))
        for k, term in enumerate(r_terms):
            self._check_bound(f"{name}.pre (r{k})", _aligned_bound([term] + pre_terms))
        self._check_bound(f"{name}.cell", _aligned_bound([(code_min(gate) * code_min(cell), gate.frac + cell.frac),
                                                          (code_min(gate) ** 2, 2 * gate.frac)]))
        self._check_bound(f"{name}.hidden", code_min(gate) ** 2)
        quant["sigmoid"] = self._unit("sigmoid", formats["pre_sigmoid"], gate)
        quant["tanh"] = self._unit("tanh", formats["pre_tanh"], gate)
        quant["tanh_cell"] = self._unit("tanh", cell, gate)
        quant["results"] = [str(hidden), str(hidden), str(cell)]
        new_attrs["quant"] = quant
        self.result.attrs[id(op)] = new_attrs
        for result, fmt in zip(op.results, (hidden, hidden, cell)):
            self._set(result, fmt)

    def _maps(self, maps: list[LinearMap], prefix: str, x_fmt: FixedType):
        """Quantize the maps of a recurrent op's attribute: their integer maps, formats and the
        ``(bound, fraction bits)`` of each one's output accumulator."""
        codes, formats, terms = [], [], []
        for k, linear_map in enumerate(maps):
            integer, quantized = self._quantize_map(linear_map, f"{prefix}{k}", x_fmt)
            codes.append(quantized)
            formats.append(integer.quant.to_attr())
            terms.append(integer.bound(x_fmt)[:2])
        return codes, formats, terms

    def _projection_bias(self, op: Op, bias: np.ndarray | None, w_terms: list[tuple[int, int]]):
        """The input projection's bias ``[dirs, gates·H]`` (folded, float) as codes, each
        map's rows at the fraction bits of that map's accumulator, and their formats; the
        ``gates_x`` accumulator of every map of ``w`` (``w_terms``) is checked with them."""
        name = op.results[0].name
        terms = [[term] for term in w_terms]
        codes, formats = None, None
        if bias is not None:
            blocks = np.split(bias.reshape(-1), len(w_terms))
            quantized = [self._bias(block, frac, f"{op.describe()} w[{k}]")
                         for k, (block, (_, frac)) in enumerate(zip(blocks, w_terms))]
            codes = np.concatenate([c for c, _ in quantized]).reshape(bias.shape)
            formats = [str(fmt) for _, fmt in quantized]
            for map_terms, (block, fmt) in zip(terms, quantized):
                map_terms.append((int(np.abs(block).max(initial=0)), fmt.frac))
        for k, map_terms in enumerate(terms):
            self._check_bound(f"{name}.gates_x (w{k})", _aligned_bound(map_terms))
        return codes, formats

    def _gru_formats(self, op: Op) -> dict[str, FixedType | None]:
        name, a = op.results[0].name, self.act_bits
        gate = FixedType(a, a - 2)
        candidate = self._fit(f"{name}.candidate", a) if op.attrs["linear_before_reset"] else None
        return {"gates_x": self._fit(f"{name}.gates_x", a),
                "pre_sigmoid": self._fit_pre(op, "sigmoid", gate), "pre_tanh": self._fit_pre(op, "tanh", gate),
                "gate": gate, "hidden": FixedType(a, a - 1), "candidate": candidate}

    def _gru(self, op: Op, formats: dict[str, FixedType | None]) -> None:
        """The integer GRU (``fixedpoint.programs.GRUProgram``): maps, biases, units and
        every accumulator's bound."""
        from ..interpreter.gru import gru_bias_parts

        attrs, name = op.attrs, op.results[0].name
        hidden, lbr = attrs["hidden_size"], attrs["linear_before_reset"]
        x_fmt = self._format_of(op.operands[0], op)
        gate, hidden_fmt, gx_fmt = formats["gate"], formats["hidden"], formats["gates_x"]
        candidate = formats["candidate"]
        w_maps, w_quant, w_terms = self._maps(attrs["w"], f"{name}.w", x_fmt)
        r_maps, r_quant, r_terms = self._maps(attrs["r"], f"{name}.r", hidden_fmt)
        new_attrs: dict[str, Any] = {"w": w_maps, "r": r_maps}
        quant: dict[str, Any] = {"rounding": self.rounding, "w": w_quant, "r": r_quant, "bias": None,
                                 "recurrent_bias": None,
                                 **{key: None if fmt is None else str(fmt) for key, fmt in formats.items()}}
        parts = [gru_bias_parts(None if attrs["bias"] is None else np.asarray(attrs["bias"][d], np.float64), hidden,
                                lbr) for d in range(num_directions(op))]
        input_bias = None if attrs["bias"] is None else np.stack([p[0] for p in parts])
        codes, quant["bias"] = self._projection_bias(op, input_bias, w_terms)
        gx_term = (-code_min(gx_fmt), gx_fmt.frac)
        for k, term in enumerate(r_terms):
            self._check_bound(f"{name}.pre (r{k})", _aligned_bound([term, gx_term]))
        rb_term = []
        if lbr and input_bias is not None:
            frac = max(f for _, f in r_terms)
            rb_codes, rb_fmt = self._bias(np.stack([p[1] for p in parts]), frac, f"{op.describe()} Rb_h")
            quant["recurrent_bias"] = str(rb_fmt)
            codes = np.concatenate([codes, np.zeros_like(codes[:, :2 * hidden]), rb_codes], axis=1)
            rb_term = [(int(np.abs(rb_codes).max(initial=0)), rb_fmt.frac)]
        if codes is not None:
            new_attrs["bias"] = codes
        gate_max = -code_min(gate)
        if lbr:
            for k, term in enumerate(r_terms):
                self._check_bound(f"{name}.candidate (r{k})", _aligned_bound([term] + rb_term))
            self._check_bound(f"{name}.pre_tanh",
                              _aligned_bound([(gate_max * -code_min(candidate), gate.frac + candidate.frac), gx_term]))
        else:
            self._check_bound(f"{name}.reset_hidden", gate_max * -code_min(hidden_fmt))
        one = 1 << gate.frac
        self._check_bound(f"{name}.hidden", _aligned_bound([((one + gate_max) * gate_max, 2 * gate.frac),
                                                            (gate_max * -code_min(hidden_fmt),
                                                             gate.frac + hidden_fmt.frac)]))
        quant["sigmoid"] = self._unit("sigmoid", formats["pre_sigmoid"], gate)
        quant["tanh"] = self._unit("tanh", formats["pre_tanh"], gate)
        quant["results"] = [str(hidden_fmt)] * 2
        new_attrs["quant"] = quant
        self.result.attrs[id(op)] = new_attrs
        for result in op.results:
            self._set(result, hidden_fmt)

    def _rnn_formats(self, op: Op) -> dict[str, FixedType]:
        """Tanh and sigmoid map the pre-activation onto ``H = fix<A, A-1>``; relu's
        pre-activation and ``h`` share the format of ``h``'s calibrated range."""
        name, a = op.results[0].name, self.act_bits
        function = activation_names(op)[0].lower()
        if function == "relu":
            rng = self.calibration.ranges.get(f"{name}.hidden")
            largest = 0.0 if rng is None else rng.max_abs
            if op.attrs["clip"] is not None:
                largest = min(largest, float(op.attrs["clip"]))
            hidden = fit_format(largest, a, self.rounding)
            return {"gates_x": self._fit(f"{name}.gates_x", a), "pre": hidden, "hidden": hidden}
        hidden = FixedType(a, a - 1)
        return {"gates_x": self._fit(f"{name}.gates_x", a), "pre": self._fit_pre(op, function, hidden, "pre"),
                "hidden": hidden}

    def _rnn(self, op: Op, formats: dict[str, FixedType]) -> None:
        """The integer RNN (``fixedpoint.programs.RNNProgram``)."""
        attrs, name, hidden = op.attrs, op.results[0].name, op.attrs["hidden_size"]
        x_fmt = self._format_of(op.operands[0], op)
        w_maps, w_quant, w_terms = self._maps(attrs["w"], f"{name}.w", x_fmt)
        r_maps, r_quant, r_terms = self._maps(attrs["r"], f"{name}.r", formats["hidden"])
        new_attrs: dict[str, Any] = {"w": w_maps, "r": r_maps}
        quant: dict[str, Any] = {"rounding": self.rounding, "w": w_quant, "r": r_quant,
                                 **{key: str(fmt) for key, fmt in formats.items()}}
        bias = None if attrs["bias"] is None else np.asarray(attrs["bias"], np.float64)
        if bias is not None and bias.shape[1] == 2 * hidden:
            bias = bias[:, :hidden] + bias[:, hidden:]
        codes, quant["bias"] = self._projection_bias(op, bias, w_terms)
        if codes is not None:
            new_attrs["bias"] = codes
        gx_fmt = formats["gates_x"]
        for k, term in enumerate(r_terms):
            self._check_bound(f"{name}.pre (r{k})", _aligned_bound([term, (-code_min(gx_fmt), gx_fmt.frac)]))
        function = activation_names(op)[0].lower()
        quant["activation"] = None if function == "relu" else self._unit(function, formats["pre"], formats["hidden"])
        quant["results"] = [str(formats["hidden"])] * 2
        new_attrs["quant"] = quant
        self.result.attrs[id(op)] = new_attrs
        for result in op.results:
            self._set(result, formats["hidden"])


def _aligned_bound(terms: list[tuple[int, int]]) -> int:
    """Bound of a sum of terms ``(largest |integer|, fraction bits)`` aligned to the largest
    fraction-bit count by left shifts."""
    frac = max(f for _, f in terms)
    return sum(bound << (frac - f) for bound, f in terms)
