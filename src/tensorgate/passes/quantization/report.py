"""The quantization report: how a quantized module relates to its float original.

Per tensor: its format, the float range calibration saw, and how many of its values
saturated when the integer golden model ran on the same inputs (weights: when they
were quantized).  Per output: SQNR (dB) and the largest absolute error of the golden
model against the float model (float64), and, for classifier logits (outputs of a
``linear``), how often the top-1 class agrees.  Also the activation units with their
exact error bounds, and the width of every accumulator.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...fixedpoint.activations import ActivationUnit
from ...fixedpoint.formats import count_saturated
from ...interpreter import FixedExecutor, run_module
from ...ir.core import Module
from ...ir.linear_map import LinearMap
from ...ir.types import element_type
from .calibrate import Calibration, run_samples


UNITS = {"lstm": ("sigmoid", "tanh", "tanh_cell"), "gru": ("sigmoid", "tanh"), "rnn": ("activation",)}
"""The activation units in each quantized recurrent op's ``quant`` (an RNN with Relu has none)."""


@dataclass(frozen=True)
class TensorRow:
    name: str
    role: str
    format: str
    low: float
    high: float
    saturated: int
    count: int


@dataclass(frozen=True)
class OutputRow:
    name: str
    sqnr_db: float
    max_abs_error: float
    top1_agreement: float | None


@dataclass
class QuantReport:
    tensors: list[TensorRow] = field(default_factory=list)
    outputs: list[OutputRow] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    accumulators: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"tensors": [asdict(row) for row in self.tensors], "outputs": [asdict(row) for row in self.outputs],
                "activations": self.activations,
                "accumulators": [{"name": name, "bits": bits} for name, bits in self.accumulators]}

    def text(self) -> str:
        """Plain-text tables."""
        lines = ["tensors:"]
        rows = [("name", "role", "format", "range seen", "saturated")]
        rows += [(t.name, t.role, t.format, f"[{t.low:.4g}, {t.high:.4g}]", f"{t.saturated}/{t.count}")
                 for t in self.tensors]
        lines += _table(rows)
        lines += ["", "outputs:"]
        rows = [("name", "SQNR (dB)", "max |error|", "top-1 agreement")]
        rows += [(o.name, f"{o.sqnr_db:.2f}", f"{o.max_abs_error:.4g}",
                  "-" if o.top1_agreement is None else f"{o.top1_agreement:.4%}") for o in self.outputs]
        lines += _table(rows)
        lines += ["", "activations:"] + [f"  {line}" for line in self.activations]
        lines += ["", "accumulators:"] + _table([("sum", "bits")] + [(n, str(b)) for n, b in self.accumulators])
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        path = Path(path)
        text = json.dumps(self.as_dict(), indent=2) + "\n" if path.suffix == ".json" else self.text()
        path.write_text(text)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """``10 log10(Σ ref² / Σ (ref - approx)²)``; ``inf`` when they are equal."""
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - np.asarray(approximation, np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def top1_agreement(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Fraction of rows (all axes but the last) whose largest element is at the same index."""
    reference, approximation = np.asarray(reference), np.asarray(approximation)
    if reference.size == 0:
        return 1.0
    rows = reference.reshape(-1, reference.shape[-1])
    return float(np.mean(rows.argmax(axis=1) == approximation.reshape(rows.shape).argmax(axis=1)))


def compare_outputs(float_module: Module, reference: dict[str, np.ndarray],
                    approximation: dict[str, np.ndarray]) -> list[OutputRow]:
    """SQNR, max error and (for outputs of a ``linear``) top-1 agreement per output."""
    rows = []
    for value in float_module.outputs:
        ref, approx = np.asarray(reference[value.name], np.float64), np.asarray(approximation[value.name], np.float64)
        classifier = value.producer is not None and value.producer.kind == "linear" and ref.ndim >= 1
        rows.append(OutputRow(value.name, sqnr_db(ref, approx),
                              float(np.abs(ref - approx).max(initial=0.0)),
                              top1_agreement(ref, approx) if classifier else None))
    return rows


def build_report(float_module: Module, quant_module: Module, inputs: dict[str, np.ndarray],
                 calibration: Calibration, accumulators: list[tuple[str, int]]) -> QuantReport:
    """Run both modules on ``inputs`` and assemble the report (module docstring)."""
    stats: dict = {}
    executor = FixedExecutor(quant_module)
    approximation = run_samples(lambda _, feeds: executor.run(feeds, stats=stats), quant_module, inputs)
    reference = run_samples(lambda module, feeds: run_module(module, feeds, dtype=np.float64), float_module, inputs)
    report = QuantReport(accumulators=list(accumulators))
    for value in quant_module.inputs:
        if value.name in calibration.ranges:
            rng = calibration.ranges[value.name]
            fmt = value.type.dtype
            array = inputs[value.name]
            report.tensors.append(TensorRow(value.name, "input", str(fmt), rng.low, rng.high,
                                            count_saturated(array, fmt, executor.rounding), int(np.size(array))))
    float_ops = {op.results[0].name: op for op in float_module.ops if op.results}
    for op in quant_module.ops:
        quant = op.attrs.get("quant")
        if quant is None or op.kind == "const":
            continue
        report.tensors += _weight_rows(float_ops[op.results[0].name], op, quant)
        report.activations += [f"{op.results[0].name}.{key}: {ActivationUnit.from_attr(quant[key]).describe()}"
                               for key in UNITS.get(op.kind, ()) if quant.get(key) is not None]
    for name, record in stats.items():
        rng = calibration.ranges.get(name)
        low, high = (rng.low, rng.high) if rng is not None else (record.low, record.high)
        report.tensors.append(TensorRow(name, "activation", str(record.format), low, high, record.saturated,
                                        record.count))
    report.outputs = compare_outputs(float_module, reference, approximation)
    return report


def _weight_rows(float_op, op, quant: dict) -> list[TensorRow]:
    """One row per weight tensor of a quantized op, with the saturations of quantizing it."""
    name = op.results[0].name
    maps: list[tuple[str, LinearMap, dict]] = []
    if op.kind == "linear":
        maps.append((f"{name}.weight", float_op.attrs["weight"], quant["weight"]))
    else:
        for key in ("w", "r"):
            maps += [(f"{name}.{key}{k}", m, q) for k, (m, q) in enumerate(zip(float_op.attrs[key], quant[key]))]
    rounding = quant["rounding"]
    rows = [_array_row(f"{prefix}.{tensor_name}", element_type(map_quant["tensors"][tensor_name]), array, rounding)
            for prefix, linear_map, map_quant in maps for tensor_name, array in linear_map.tensors().items()]
    if quant.get("peepholes") is not None:
        rows.append(_array_row(f"{name}.peepholes", element_type(quant["peepholes"]), float_op.attrs["peepholes"],
                               rounding))
    return rows


def _array_row(name: str, fmt, array, rounding: str) -> TensorRow:
    """A weight's row; weights get the most fraction bits that keep them unsaturated, so
    their saturation count is 0 unless a format was forced."""
    array = np.asarray(array, np.float64)
    return TensorRow(name, "weight", str(fmt), float(array.min(initial=np.inf)), float(array.max(initial=-np.inf)),
                     count_saturated(array, fmt, rounding), int(array.size))
