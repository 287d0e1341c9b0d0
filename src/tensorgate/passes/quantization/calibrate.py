"""Calibration: the float64 ranges of every tensor ``quantize`` gives a format to.

``calibrate(module, inputs)`` runs the float module once over the calibration inputs
and records, under the names the integer golden model narrows them by:

* each float module input (``x``), host region result and ``add`` / ``mul`` result (by
  its name);
* each ``linear``: its output (``{name}``) and its map's step results (``{name}.weight``);
* each ``lstm``: ``{name}.gates_x`` (``W x + b``, all gates), the pre-activations
  before ``clip`` of the σ gates i, o, f (``{name}.pre_sigmoid``) and of the tanh gate c
  (``{name}.pre_tanh``), ``{name}.cell`` (c), ``{name}.hidden`` (h), and the step
  results of maps ``{name}.w{k}`` / ``{name}.r{k}``;
* each ``gru``: ``{name}.gates_x``, the pre-activations before ``clip`` of z and r
  (``{name}.pre_sigmoid``) and of the candidate (``{name}.pre_tanh``), with
  ``linear_before_reset`` ``R_h·h + Rb_h`` (``{name}.candidate``), ``{name}.hidden``,
  and the maps' step results;
* each ``rnn``: ``{name}.gates_x``, the pre-activation before ``clip``
  (``{name}.pre``), ``{name}.hidden``, and the maps' step results.

The recurrent ops are run in the same structure as the integer model (projection of
all steps, then the recurrence, maps applied in their contraction steps and as often
as the integer model applies them) with exact activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ExecutionError, PassError
from ...fixedpoint.maps import apply_float_steps
from ...interpreter import KERNELS, check_inputs
from ...interpreter.gru import gru_bias_parts
from ...interpreter.kernels import sigmoid
from ...interpreter.recurrent import clipped, initial_state, run_directions, sweep
from ...ir.core import Module, Op
from ...ir.npz import read_npz as load_npz
from ...ir.ops import activation_names, num_directions
from ...ir.types import FloatType


@dataclass
class Range:
    """Smallest and largest value seen."""

    low: float = float("inf")
    high: float = float("-inf")

    def update(self, array: np.ndarray) -> None:
        if np.size(array):
            self.low = min(self.low, float(np.min(array)))
            self.high = max(self.high, float(np.max(array)))

    @property
    def max_abs(self) -> float:
        """``max(|low|, |high|)``, 0 when nothing was seen."""
        return max(abs(self.low), abs(self.high)) if self.low <= self.high else 0.0


@dataclass
class Calibration:
    """Ranges by tensor name, and per map the largest ``|value|`` of each step result
    (per network, per step but the last)."""

    ranges: dict[str, Range] = field(default_factory=dict)
    steps: dict[str, list[list[float]]] = field(default_factory=dict)

    def record(self, name: str, array: np.ndarray) -> None:
        self.ranges.setdefault(name, Range()).update(array)

    def apply_map(self, name: str, linear_map, x: np.ndarray) -> np.ndarray:
        """``linear_map`` applied to ``x`` in float64, its step maxima recorded under ``name``."""
        y, maxima = apply_float_steps(linear_map, x)
        seen = self.steps.setdefault(name, [[0.0] * len(network) for network in maxima])
        for network_seen, network in zip(seen, maxima):
            network_seen[:] = [max(a, b) for a, b in zip(network_seen, network)]
        return y


def calibrate(module: Module, inputs: dict[str, np.ndarray]) -> Calibration:
    """Run ``module`` in float64 on ``inputs`` and record the ranges (module docstring);
    a model of fixed input shapes runs sample by sample (``sample_feeds``)."""
    calibration = Calibration()
    for feeds in sample_feeds(module, inputs):
        _calibrate_call(module, feeds, calibration)
    return calibration


def _calibrate_call(module: Module, inputs: dict[str, np.ndarray], calibration: Calibration) -> None:
    """One run of ``module`` on ``inputs``, its ranges recorded into ``calibration``."""
    check_inputs(module, inputs)
    dtype = np.dtype(np.float64)
    env = {}
    for value in module.inputs:
        array = np.asarray(inputs[value.name])
        if array.dtype.kind == "f":
            array = array.astype(np.float64)
            calibration.record(value.name, array)
        env[id(value)] = array
    for op in module.ops:
        args = [None if v is None else env[id(v)] for v in op.operands]
        try:
            if op.kind == "linear":
                results = [_linear(op, args, calibration)]
            elif op.kind in RECORDING_KERNELS:
                results = RECORDING_KERNELS[op.kind](op, args, calibration)
            else:
                results = KERNELS[op.kind](op, args, dtype)
                if op.kind == "host" or op.kind in ("add", "mul"):
                    for value, array in zip(op.results, results):
                        if array.dtype.kind == "f":
                            calibration.record(value.name, array)
        except (ValueError, IndexError, TypeError) as exc:
            raise ExecutionError(f"{op.describe()} failed on the calibration inputs: {exc}") from exc
        for value, array in zip(op.results, results):
            array = np.asarray(array)
            env[id(value)] = array.astype(np.float64) if array.dtype.kind == "f" else array


def sample_feeds(module: Module, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The calls ``module`` runs on for the data ``arrays`` (by input name): the arrays
    themselves where they fit its inputs; else, for a model imported with fixed input
    shapes (a model exported at batch 1, say), one call per sample, the samples running
    along an axis the model fixes at 1 (8 samples of a ``[1, 6, F]`` input as ``[8, 6, F]``)
    or along an extra leading axis (as ``[8, 1, 6, F]``).  Inputs whose array fits as it
    is are shared by every call.  ``ExecutionError`` when the data fit neither way."""
    try:
        check_inputs(module, arrays)
        return [arrays]
    except ExecutionError as exc:
        misfit = exc
    axes = {value.name: _sample_axis(value, np.asarray(arrays[value.name])) for value in module.inputs
            if value.name in arrays}
    split = {name: axis for name, axis in axes.items() if axis != "shared"}
    if len(axes) != len(module.inputs) or not split or None in split.values():
        raise misfit
    counts = {name: arrays[name].shape[0 if axis == "stacked" else axis] for name, axis in split.items()}
    if len(set(counts.values())) != 1:
        raise ExecutionError("the inputs hold different numbers of samples: "
                             + ", ".join(f"{name} {count}" for name, count in counts.items()))
    feeds = [{name: _sample(np.asarray(arrays[name]), axes[name], index) for name in axes}
             for index in range(next(iter(counts.values())))]
    check_inputs(module, feeds[0])
    return feeds


def _sample_axis(value, array: np.ndarray) -> int | str | None:
    """``"shared"`` if ``array`` fits ``value``'s type; ``"stacked"`` if it stacks arrays
    that do along a new leading axis; the axis it runs along where the type fixes it at
    1 and the array is longer; ``None`` if none of these."""
    dims = value.type.shape

    def fits(shape) -> bool:
        return len(shape) == len(dims) and all(not isinstance(d, int) or d == n for d, n in zip(dims, shape))

    if fits(array.shape):
        return "shared"
    if array.ndim == len(dims) + 1 and fits(array.shape[1:]):
        return "stacked"
    if array.ndim == len(dims):
        off = [axis for axis, (dim, size) in enumerate(zip(dims, array.shape)) if isinstance(dim, int) and dim != size]
        if len(off) == 1 and dims[off[0]] == 1:
            return off[0]
    return None


def _sample(array: np.ndarray, axis: int | str, index: int) -> np.ndarray:
    if axis == "shared":
        return array
    if axis == "stacked":
        return array[index]
    return np.take(array, [index], axis=axis)


def run_samples(run, module: Module, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``run(module, feeds)``'s outputs on the data ``arrays``, called once per sample
    where ``sample_feeds`` splits them, the outputs then stacked along a new leading axis."""
    feeds = sample_feeds(module, arrays)
    if len(feeds) == 1 and feeds[0] is arrays:
        return run(module, arrays)
    outputs = [run(module, call) for call in feeds]
    return {name: np.stack([output[name] for output in outputs]) for name in outputs[0]}


def _linear(op: Op, args, calibration: Calibration) -> np.ndarray:
    name = op.results[0].name
    y = calibration.apply_map(f"{name}.weight", op.attrs["weight"], args[0])
    if op.attrs["bias"] is not None:
        y = y + np.asarray(op.attrs["bias"], np.float64)
    calibration.record(name, y)
    return y


def _lstm(op: Op, args, calibration: Calibration) -> list[np.ndarray]:
    """The float LSTM (sigmoid/tanh, the only activations ``quantize`` accepts), recording."""
    x, seq_lens, h0, c0 = (list(args) + [None] * 4)[:4]
    attrs, name = op.attrs, op.results[0].name
    if attrs["layout"]:
        x = np.swapaxes(x, 0, 1)
        h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
        c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
    dirs, hidden = num_directions(op), attrs["hidden_size"]
    steps, batch, _ = x.shape
    lens = np.full(batch, steps, np.int64) if seq_lens is None else np.asarray(seq_lens, np.int64)
    per_dir = len(attrs["w"]) // dirs
    ys, hs, cs = [], [], []
    for d in range(dirs):
        maps = range(d * per_dir, (d + 1) * per_dir)
        rows = x.reshape(steps * batch, -1)
        gx = np.concatenate([calibration.apply_map(f"{name}.w{k}", attrs["w"][k], rows) for k in maps], axis=-1)
        bias = attrs["bias"]
        if bias is not None:
            b = np.asarray(bias[d], np.float64)
            gx = gx + (b[:4 * hidden] + b[4 * hidden:] if b.size == 8 * hidden else b)
        calibration.record(f"{name}.gates_x", gx)
        gx = gx.reshape(steps, batch, 4 * hidden)
        peep = None if attrs["peepholes"] is None else np.split(np.asarray(attrs["peepholes"][d], np.float64), 3)
        h = np.zeros((batch, hidden)) if h0 is None else np.asarray(h0[d], np.float64)
        c = np.zeros((batch, hidden)) if c0 is None else np.asarray(c0[d], np.float64)
        y = np.zeros((steps, batch, hidden))
        reverse = attrs["direction"] == "reverse" or d == 1
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            pre = np.concatenate([calibration.apply_map(f"{name}.r{k}", attrs["r"][k], h) for k in maps], axis=-1)
            pre = pre + gx[t]
            pre_i, pre_o, pre_f, pre_c = np.split(pre, 4, axis=-1)
            if peep is not None:
                pre_i, pre_f = pre_i + peep[0] * c, pre_f + peep[2] * c
            calibration.record(f"{name}.pre_sigmoid", np.concatenate([pre_i, pre_f], axis=-1))
            calibration.record(f"{name}.pre_tanh", pre_c)
            clip = attrs["clip"]
            if clip is not None:
                pre_i, pre_f, pre_c = (np.clip(p, -clip, clip) for p in (pre_i, pre_f, pre_c))
            i = sigmoid(pre_i)
            f = 1 - i if attrs["input_forget"] else sigmoid(pre_f)
            c_new = f * c + i * np.tanh(pre_c)
            if peep is not None:
                pre_o = pre_o + peep[1] * c_new
            calibration.record(f"{name}.pre_sigmoid", pre_o)
            o = sigmoid(pre_o if clip is None else np.clip(pre_o, -clip, clip))
            h_new = o * np.tanh(c_new)
            active = (t < lens)[:, None]
            h, c = np.where(active, h_new, h), np.where(active, c_new, c)
            calibration.record(f"{name}.cell", c)
            calibration.record(f"{name}.hidden", h)
            y[t] = np.where(active, h_new, 0)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y, h, c = np.stack(ys, axis=1), np.stack(hs), np.stack(cs)
    if attrs["layout"]:
        return [np.transpose(y, (2, 0, 1, 3)), np.swapaxes(h, 0, 1), np.swapaxes(c, 0, 1)]
    return [y, h, c]


def _gru(op: Op, args, calibration: Calibration) -> list[np.ndarray]:
    """The float GRU (sigmoid/tanh, the only activations ``quantize`` accepts), recording;
    R is applied as ``fixedpoint.programs.GRUProgram`` applies it."""
    attrs, name = op.attrs, op.results[0].name
    hidden, lbr, clip = attrs["hidden_size"], attrs["linear_before_reset"], attrs["clip"]

    def direction(d, x, lens, reverse, initial):
        maps = _direction_maps(op, "r", d)
        input_bias, recurrent_bias = gru_bias_parts(
            None if attrs["bias"] is None else np.asarray(attrs["bias"][d], np.float64), hidden, lbr)
        gx = _projection(op, d, x, input_bias, calibration)

        def apply(positions, value):
            return np.concatenate([calibration.apply_map(f"{name}.r{k}", attrs["r"][k], value)
                                   for k in (maps[i] for i in positions)], axis=-1)

        def step(t, states):
            (h,) = states
            rows = apply(range(2) if len(maps) == 3 and not lbr else range(len(maps)), h)
            pre_zr = rows[:, :2 * hidden] + gx[t, :, :2 * hidden]
            calibration.record(f"{name}.pre_sigmoid", pre_zr)
            zr = sigmoid(clipped(pre_zr, clip))
            z, r = zr[:, :hidden], zr[:, hidden:]
            if lbr:
                rn = rows[:, 2 * hidden:] + (0 if recurrent_bias is None else recurrent_bias)
                calibration.record(f"{name}.candidate", rn)
                candidate = r * rn
            else:
                candidate = apply(range(len(maps)) if len(maps) == 1 else range(2, 3), r * h)[:, -hidden:]
            pre_h = gx[t, :, 2 * hidden:] + candidate
            calibration.record(f"{name}.pre_tanh", pre_h)
            h_new = (1 - z) * np.tanh(clipped(pre_h, clip)) + z * h
            calibration.record(f"{name}.hidden", h_new)
            return [h_new]

        y, (h,) = sweep(x.shape[0], lens, reverse, [initial_state(initial[0], x.shape[1], hidden, np.float64)], step)
        return y, h

    return run_directions(op, [_float64(a) for a in args], direction)


RNN_FUNCTIONS = {"Tanh": np.tanh, "Sigmoid": sigmoid, "Relu": lambda x: np.maximum(x, 0)}
"""The RNN activations ``quantize`` accepts."""


def _rnn(op: Op, args, calibration: Calibration) -> list[np.ndarray]:
    """The float RNN (tanh, sigmoid or relu), recording."""
    attrs, name = op.attrs, op.results[0].name
    hidden = attrs["hidden_size"]
    functions = [RNN_FUNCTIONS[activation] for activation in activation_names(op)]

    def direction(d, x, lens, reverse, initial):
        bias = None if attrs["bias"] is None else np.asarray(attrs["bias"][d], np.float64)
        if bias is not None and bias.size == 2 * hidden:
            bias = bias[:hidden] + bias[hidden:]
        gx = _projection(op, d, x, bias, calibration)
        maps = _direction_maps(op, "r", d)
        if initial[0] is not None:  # with relu, h's format is fitted to its range: h0 must fit too
            calibration.record(f"{name}.hidden", initial[0])

        def step(t, states):
            pre = np.concatenate([calibration.apply_map(f"{name}.r{k}", attrs["r"][k], states[0]) for k in maps],
                                 axis=-1) + gx[t]
            calibration.record(f"{name}.pre", pre)
            h_new = functions[d](clipped(pre, attrs["clip"]))
            calibration.record(f"{name}.hidden", h_new)
            return [h_new]

        y, (h,) = sweep(x.shape[0], lens, reverse, [initial_state(initial[0], x.shape[1], hidden, np.float64)], step)
        return y, h

    return run_directions(op, [_float64(a) for a in args], direction)


def _direction_maps(op: Op, key: str, d: int) -> list[int]:
    """The positions in ``op.attrs[key]`` of direction ``d``'s maps."""
    per_dir = len(op.attrs[key]) // num_directions(op)
    return list(range(d * per_dir, (d + 1) * per_dir))


def _projection(op: Op, d: int, x: np.ndarray, bias: np.ndarray | None, calibration: Calibration) -> np.ndarray:
    """``W x + bias`` of direction ``d`` for every step ``[T, B, gates·H]``, recorded as ``gates_x``."""
    name = op.results[0].name
    steps, batch, _ = x.shape
    rows = x.reshape(steps * batch, -1)
    gx = np.concatenate([calibration.apply_map(f"{name}.w{k}", op.attrs["w"][k], rows)
                         for k in _direction_maps(op, "w", d)], axis=-1)
    if bias is not None:
        gx = gx + bias
    calibration.record(f"{name}.gates_x", gx)
    return gx.reshape(steps, batch, -1)


def _float64(array):
    """Float operands in float64; integers (sequence lengths) as they are."""
    return array if array is None or array.dtype.kind != "f" else array.astype(np.float64)


RECORDING_KERNELS = {"lstm": _lstm, "gru": _gru, "rnn": _rnn}
"""The ops whose float run records more than their results (module docstring)."""


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``; ``what`` names the file in errors
    (``calibration file``)."""
    path = Path(path)
    if not path.is_file():
        raise PassError(f"{what} '{path}' does not exist")
    return load_npz(path, what, PassError)


def load_calibration(path: Path, module: Module) -> dict[str, np.ndarray]:
    """The arrays of a calibration ``.npz``, checked against the module's inputs (whole,
    or sample by sample for a model of fixed input shapes: ``sample_feeds``)."""
    path = Path(path)
    arrays = read_npz(path, "calibration file")
    expected = [v.name for v in module.inputs]
    missing = [n for n in expected if n not in arrays]
    unknown = [n for n in arrays if n not in expected]
    if missing or unknown:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown arrays {', '.join(unknown)}"
        raise PassError(f"calibration file '{path}' {problem} (the model's inputs are {', '.join(expected)})")
    try:
        sample_feeds(module, arrays)
    except ExecutionError as exc:
        raise PassError(f"calibration file '{path}': {exc}") from None
    for value in module.inputs:
        array = arrays[value.name]
        if isinstance(value.type.dtype, FloatType) and array.dtype.kind not in "fiu" or not np.isfinite(
                array.astype(np.float64)).all():
            raise PassError(f"calibration file '{path}': array '{value.name}' must hold finite numbers")
    return arrays
