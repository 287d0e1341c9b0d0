"""Tiny quantized LSTM, GRU and RNN models for the accelerator tests (``from accel_models
import ...``): small enough (H <= 8, I <= 16, T <= 3) that a simulation takes milliseconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from decomposed import random_map
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.types import F32, I32, TensorType
from tensorgate.passes.manager import PassManager

FACTORS = {4: (2, 2), 6: (3, 2), 8: (2, 4), 12: (3, 4), 16: (4, 4), 24: (4, 6), 32: (4, 8), 128: (8, 16)}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


@dataclass(frozen=True)
class AccelCase:
    """One model: map format of W/R (and head), layers (``cell``: their kind, or one kind per
    layer joined by '+'), directions, steps, batch, bits."""

    fmt: str = "dense"
    hidden: int = 4
    inputs: int = 6
    steps: int = 3
    batch: int = 2
    layers: int = 1
    direction: str = "forward"
    head: str | None = None  # None (outputs Y, Y_h, Y_c), or the head map's format
    lens: bool = False
    initial: bool = False
    split_gates: bool = False
    input_forget: bool = False
    bits: int = 8
    activation: str = "pwl"
    rounding: str = "nearest-even"
    schedule: bool = False
    seed: int = 0
    cell: str = "lstm"
    linear_before_reset: int = 0
    rnn_activation: str = "Tanh"
    clip: float | None = None

    def kinds(self) -> list[str]:
        kinds = self.cell.split("+")
        return kinds * self.layers if len(kinds) == 1 else kinds


def _map(fmt: str, rng, rows: int, cols: int, pad: int = 0):
    if fmt == "dense":
        return random_map("dense", rng, (rows,), (cols,))
    out_factors = FACTORS[rows] if rows in FACTORS else (rows,)
    return random_map(fmt, rng, out_factors, FACTORS[cols], out_pad=0, in_pad=pad)


def _weights(case: AccelCase, rng, rows: int, cols: int, gates: int):
    if case.split_gates:
        return [_map(case.fmt, rng, rows // gates, cols) for _ in range(gates)]
    return [_map(case.fmt, rng, rows, cols)]


def build_module(case: AccelCase) -> Module:
    rng = np.random.default_rng(case.seed)
    module = Module("accel")
    b = Builder(module)
    hidden, dirs = case.hidden, 2 if case.direction == "bidirectional" else 1
    x = b.input("x", TensorType((case.steps, case.batch, case.inputs), F32))
    lens = b.input("lens", TensorType((case.batch,), I32)) if case.lens else None
    layer_input, size = x, case.inputs
    outputs = []
    for layer, kind in enumerate(case.kinds()):
        state = TensorType((dirs, case.batch, hidden), F32)
        gates = GATES[kind]
        h0 = b.input(f"h0_{layer}", state) if case.initial else None
        c0 = b.input(f"c0_{layer}", state) if case.initial and kind == "lstm" else None
        w = [m for _ in range(dirs) for m in _weights(case, rng, gates * hidden, size, gates)]
        r = [m for _ in range(dirs) for m in _weights(case, rng, gates * hidden, hidden, gates)]
        attrs = {"hidden_size": hidden, "direction": case.direction, "w": w, "r": r, "clip": case.clip,
                 "bias": (0.3 * rng.standard_normal((dirs, 2 * gates * hidden))).astype(np.float32)}
        names = [f"Y{layer}", f"Y_h{layer}"]
        operands = [layer_input, lens, h0]
        if kind == "lstm":
            attrs["input_forget"] = int(case.input_forget)
            names, operands = names + [f"Y_c{layer}"], operands + [c0]
        elif kind == "gru":
            attrs["linear_before_reset"] = case.linear_before_reset
        else:
            attrs["activations"] = [case.rnn_activation] * dirs
        recurrent = b.op(kind, operands, attrs, names=names)
        outputs = list(recurrent.results)
        if layer + 1 < len(case.kinds()):
            moved = b.op("transpose", [recurrent.results[0]], {"perm": [0, 2, 1, 3]}).result
            shape = b.const(np.array([case.steps, case.batch, dirs * hidden], np.int64), "shape")
            layer_input, size = b.op("reshape", [moved, shape]).result, dirs * hidden
    if case.head is not None:
        last = b.op("squeeze", [b.op("slice", [outputs[1]], {"starts": [-1], "ends": [dirs], "axes": [0]}).result],
                    {"axes": [0]}).result
        weight = _map(case.head, rng, 4, hidden) if case.head != "dense" else DenseMap(
            (0.5 * rng.standard_normal((3, hidden))).astype(np.float32))
        head = b.op("linear", [last], {"weight": weight, "bias": (0.1 * rng.standard_normal(weight.out_dim)).astype(
            np.float32)}, names=["logits"])
        outputs = [head.result]
    module.outputs = outputs
    return module


def feeds(case: AccelCase, module: Module, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    result = {}
    for value in module.inputs:
        shape = value.type.shape
        if value.type.dtype == I32:
            lengths = rng.integers(1, case.steps + 1, shape).astype(np.int32)
            lengths[-1] = max(1, case.steps - 1)
            result[value.name] = lengths
        else:
            result[value.name] = rng.standard_normal(shape) * (0.5 if value.name.startswith(("h0", "c0")) else 1.5)
    return result


def quantized(case: AccelCase, directory: Path) -> tuple[Module, dict[str, np.ndarray]]:
    """The case's module after [order-contractions,] quantize, calibrated on other inputs."""
    module = build_module(case)
    calibration = directory / "calibration.npz"
    np.savez(calibration, **feeds(case, module, seed=7))
    passes = ["order-contractions"] if case.schedule else []
    passes.append(f"quantize{{bits={case.bits} activation={case.activation} rounding={case.rounding} "
                  f"calibration={calibration}}}")
    PassManager.parse(",".join(passes)).run(module)
    return module, feeds(case, module)
