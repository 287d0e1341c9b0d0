"""Calibration: the float64 ranges of every tensor ``quantize`` gives a format to.

``calibrate(module, inputs)`` runs the float module once over the calibration inputs
and records, under the names the integer golden model narrows them by:

* each float module input (``x``) and host region result (by its name);
* each ``linear``: its output (``{name}``) and its map's step results (``{name}.weight``);
* each ``lstm``: ``{name}.gates_x`` (``W x + b``, all gates), the pre-activations
  before ``clip`` of the σ gates i, o, f (``{name}.pre_sigmoid``) and of the tanh gate c
  (``{name}.pre_tanh``), ``{name}.cell`` (c), ``{name}.hidden`` (h), and the step
  results of maps ``{name}.w{k}`` / ``{name}.r{k}``.

The LSTM is run in the same structure as the integer model (projection of all steps,
then the recurrence, maps applied in their contraction steps) with exact σ/tanh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import ExecutionError
from ...fixedpoint.maps import apply_float_steps
from ...interpreter import KERNELS, check_inputs
from ...interpreter.kernels import sigmoid
from ...ir.core import Module, Op
from ...ir.ops import num_directions


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
    """Run ``module`` in float64 on ``inputs`` and record the ranges (module docstring)."""
    check_inputs(module, inputs)
    calibration = Calibration()
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
            elif op.kind == "lstm":
                results = _lstm(op, args, calibration)
            else:
                results = KERNELS[op.kind](op, args, dtype)
                if op.kind == "host":
                    for value, array in zip(op.results, results):
                        if array.dtype.kind == "f":
                            calibration.record(value.name, array)
        except (ValueError, IndexError, TypeError) as exc:
            raise ExecutionError(f"{op.describe()} failed on the calibration inputs: {exc}") from exc
        for value, array in zip(op.results, results):
            array = np.asarray(array)
            env[id(value)] = array.astype(np.float64) if array.dtype.kind == "f" else array
    return calibration


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
