"""The ``quantize`` pass: float module -> fixed-point module the integer golden model runs.

Every real-valued tensor gets a signed format ``fix<w,f>``; weights become int64 codes;
σ and tanh become integer units.  Widths: ``weight-bits`` for map tensors, cores,
precontracted weights and peepholes; ``act-bits`` for module inputs, contraction
intermediates, the LSTM's ``gates_x`` / pre-activations / gate outputs / ``h`` and ``linear``
outputs; ``state-bits`` for the cell state ``c``; each defaults to ``bits``.

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
* activations: from calibration ranges (``passes/quantization/calibrate.py``).  A gate's
  pre-activation range stops at ``clip`` and where σ (resp. tanh) is within a quarter
  output LSB of its limit: saturating beyond changes nothing.  The gate outputs
  ``G = fix<A, A-2>`` (1.0 is exact) and ``h`` ``H = fix<A, A-1>`` (|h| <= 1) are fixed.

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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ExecutionError, PassError, PipelineError
from ..fixedpoint.activations import build_unit, saturation_input
from ..fixedpoint.formats import MAX_FLOAT_WIDTH, code_min, fit_format, quantize, round_float, signed_width
from ..fixedpoint.maps import IntegerMap, MapQuant, network_plans
from ..fixedpoint.quant_attrs import is_quantized
from ..interpreter import check_inputs
from ..ir.core import Module, Op, Value
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import DATA_MOVEMENT, num_directions
from ..ir.types import FixedType, FloatType, TensorType
from .base import Pass, option
from .dce import DeadCodeElimination
from .quantization.calibrate import Calibration, calibrate

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


def load_calibration(path: Path, module: Module) -> dict[str, np.ndarray]:
    """The arrays of a calibration ``.npz``, checked against the module's inputs."""
    path = Path(path)
    if not path.is_file():
        raise PassError(f"calibration file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise PassError(f"calibration file '{path}' is not a readable .npz ({exc})") from None
    expected = [v.name for v in module.inputs]
    missing = [n for n in expected if n not in arrays]
    unknown = [n for n in arrays if n not in expected]
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown arrays {', '.join(unknown)}"
        raise PassError(f"calibration file '{path}' {problem} (the model's inputs are {', '.join(expected)})")
    try:
        check_inputs(module, arrays)
    except ExecutionError as exc:
        raise PassError(f"calibration file '{path}': {exc}") from None
    for value in module.inputs:
        array = arrays[value.name]
        if isinstance(value.type.dtype, FloatType) and array.dtype.kind not in "fiu" or not np.isfinite(
                array.astype(np.float64)).all():
            raise PassError(f"calibration file '{path}': array '{value.name}' must hold finite numbers")
    return arrays


# --- preparation ---------------------------------------------------------------------


def _align_gate_grouping(module: Module) -> None:
    """The integer LSTM adds W·x and R·h map by map into the same gate blocks, so W and R
    must be grouped alike (stacked, or one map per gate).  A dense W or R is regrouped to
    match the other, which changes no number; two decomposed maps grouped differently
    cannot be."""
    from .decompose import regroup_gates

    for op in module.ops_of("lstm"):
        dirs = num_directions(op)
        w, r = op.attrs["w"], op.attrs["r"]
        if len(w) == len(r):
            continue
        dense = next((key for key, maps in (("r", r), ("w", w)) if all(isinstance(m, DenseMap) for m in maps)), None)
        if dense is None:
            raise PassError(f"{op.describe()}: W has {len(w) // dirs} and R {len(r) // dirs} decomposed maps per "
                            "direction; decompose both with the same 'gates' option")
        stacked = len(op.attrs["w" if dense == "r" else "r"]) == dirs
        matrices = regroup_gates([m.to_dense() for m in op.attrs[dense]], dirs, stacked)
        op.attrs[dense] = [DenseMap(matrix) for matrix in matrices]


def _drop_zero_states(module: Module) -> None:
    """LSTM initial states that are zero by construction (a zero constant, moved around)
    become absent operands, which mean zeros; the ops computing them go."""
    dropped = False
    for op in module.ops_of("lstm"):
        for index in (2, 3):
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
    sources = []
    for index in (2, 3):
        value = op.operands[index] if index < len(op.operands) else None
        while value is not None and value.producer is not None and value.producer.kind in _SINGLE_SOURCE:
            value = value.producer.operands[0]
        sources.append(value)
    if sources[0] is not None and sources[0] is sources[1]:
        return True
    return bool(_concats_reached(module, op.results[1]) & _concats_reached(module, op.results[2]))


def _concats_reached(module: Module, value: Value) -> set[int]:
    """Ids of the concat ops ``value`` reaches through single-source data movement."""
    found: set[int] = set()
    pending = [value]
    while pending:
        for user in module.users(pending.pop()):
            if user.kind == "concat":
                found.add(id(user))
            elif user.kind in _SINGLE_SOURCE:
                pending.extend(user.results)
    return found


def _is_float(value: Value | None) -> bool:
    return value is not None and isinstance(value.type.dtype, FloatType)


def _check_supported(module: Module) -> None:
    """Refuse, naming the op, anything the integer model cannot run (host regions run in
    onnxruntime, in float, whatever they hold)."""
    for op in module.ops:
        if op.kind == "host" or not any(_is_float(v) for v in op.operands + op.results):
            continue
        if op.kind == "lstm":
            _check_lstm(op)
        elif op.kind not in ("linear", "const", "relu") + DATA_MOVEMENT:
            hint = " (the argmax of the logits is the same: export the logits without it)" if op.kind in (
                "softmax", "log_softmax") else ""
            raise PassError(f"{op.describe()} has no fixed-point form; quantize handles linear, lstm, relu and "
                            f"data movement ops{hint}")


def _check_lstm(op: Op) -> None:
    dirs = num_directions(op)
    activations = op.attrs["activations"]
    if activations is not None and list(activations) != ["Sigmoid", "Tanh", "Tanh"] * dirs:
        raise PassError(f"{op.describe()}: activations {activations} have no fixed-point units; quantize "
                        "supports the default Sigmoid, Tanh, Tanh")
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
        lstm_formats = {id(op): self._lstm_formats(op) for op in self.module.ops_of("lstm")}
        for op in self.module.ops_of("lstm"):
            hidden, cell = lstm_formats[id(op)]["hidden"], lstm_formats[id(op)]["cell"]
            for index, fmt in ((2, hidden), (3, cell)):
                if index < len(op.operands) and op.operands[index] is not None:
                    self._demand(op, index, fmt)
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
            elif op.kind == "lstm":
                self._lstm(op, lstm_formats[id(op)])
            elif any(id(v) in self.result.formats for v in op.inputs):
                self._passthrough(op)
        return self.result

    # -- helpers

    def _fit(self, name: str, width: int) -> FixedType:
        rng = self.calibration.ranges.get(name)
        return fit_format(0.0 if rng is None else rng.max_abs, width, self.rounding)

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
        value = op.operands[index]
        while value.producer is not None and value.producer.kind in _SINGLE_SOURCE:
            value = value.producer.operands[0]
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
        demanded = self.demanded.get(id(op.result))
        if demanded is None:
            users = ", ".join(user.describe() for user in self.module.users(op.result))
            raise PassError(f"{op.describe()}: a float constant feeding {users} has no fixed-point form; quantize "
                            "takes float constants only as LSTM initial states")
        fmt = demanded[0]
        self._set(op.result, fmt)
        self.result.attrs[id(op)] = {"value": quantize(op.attrs["value"], fmt, self.rounding),
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
        out = self._fit(name, self.act_bits)
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

    def _fit_pre(self, op: Op, function: str, gate: FixedType) -> FixedType:
        """The pre-activation format of a gate: its calibrated range, but no wider than
        ``clip`` or the input beyond which ``function`` is flat to a quarter LSB of
        ``gate`` (saturating there changes the unit's output by less than that)."""
        rng = self.calibration.ranges.get(f"{op.results[0].name}.pre_{function}")
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
        gates_x_terms = [[term] for term in w_terms]
        if attrs["bias"] is not None:
            new_attrs["bias"], bias_formats = self._lstm_bias(op, [frac for _, frac in w_terms])
            quant["bias"] = [str(fmt) for fmt in bias_formats]
            per_map = np.split(new_attrs["bias"].reshape(-1), len(w_maps))
            for terms, codes, fmt in zip(gates_x_terms, per_map, bias_formats):
                terms.append((int(np.abs(codes).max(initial=0)), fmt.frac))
        for k, terms in enumerate(gates_x_terms):
            self._check_bound(f"{name}.gates_x (w{k})", _aligned_bound(terms))
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
        """Quantize the maps of an LSTM attribute: their integer maps, formats and the
        ``(bound, fraction bits)`` of each one's output accumulator."""
        codes, formats, terms = [], [], []
        for k, linear_map in enumerate(maps):
            integer, quantized = self._quantize_map(linear_map, f"{prefix}{k}", x_fmt)
            codes.append(quantized)
            formats.append(integer.quant.to_attr())
            terms.append(integer.bound(x_fmt)[:2])
        return codes, formats, terms

    def _lstm_bias(self, op: Op, fracs: list[int]) -> tuple[np.ndarray, list[FixedType]]:
        """The folded bias ``[dirs, 4H]`` as codes, each map's rows at the fraction bits of
        that map's accumulator (``fracs``, one per map of ``w``)."""
        hidden = op.attrs["hidden_size"]
        bias = np.asarray(op.attrs["bias"], np.float64)
        if bias.shape[1] == 8 * hidden:
            bias = bias[:, :4 * hidden] + bias[:, 4 * hidden:]
        blocks = np.split(bias.reshape(-1), len(fracs))
        quantized = [self._bias(block, frac, f"{op.describe()} w[{k}]") for k, (block, frac) in
                     enumerate(zip(blocks, fracs))]
        codes = np.concatenate([c for c, _ in quantized]).reshape(bias.shape)
        return codes, [fmt for _, fmt in quantized]


def _aligned_bound(terms: list[tuple[int, int]]) -> int:
    """Bound of a sum of terms ``(largest |integer|, fraction bits)`` aligned to the largest
    fraction-bit count by left shifts."""
    frac = max(f for _, f in terms)
    return sum(bound << (frac - f) for bound, f in terms)
