"""How far a compiled module's outputs are from a reference module's (the imported
model, usually) on the same inputs: the output error a compile reports and warns about.

Per output, over the data: the reference's range (``max − min``), the largest absolute
difference and the root mean square difference, each also as a share of the range;
for class scores (a ``[..., classes]`` output made by a ``linear``, or a softmax or
log-softmax of one), the top-1 agreement.  The *error* of an output is ``1 − agreement``
for class scores (what a classifier's user sees change) and ``max |Δ| / range`` for any
other output; the module's error is the largest.  A quantized module runs in the
integer golden model, a float one in the NumPy runtime (float64).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from ..fixedpoint.quant_attrs import is_quantized
from ..interpreter import run_fixed, run_module
from ..ir.core import Module, Value
from .base import Pass
from .quantization.calibrate import run_samples
from .quantization.report import top1_agreement

DEFAULT_WARN_ERROR = 0.05
"""The output error above which a compile warns: 5 % of an output's range (or 5 % of a
classifier's top-1 decisions changed)."""
CALIBRATED_PASSES = ("decompose", "select-ranks", "quantize")
"""Passes whose ``calibration`` option names module inputs a compile can measure on."""


@dataclass(frozen=True)
class OutputFidelity:
    """One output's difference from the reference (see the module docstring)."""

    name: str
    range: float
    max_abs_error: float
    rms_error: float
    agreement: float | None

    @property
    def relative_error(self) -> float:
        """``max |Δ| / range`` (0 for equal outputs; infinite for a changed constant one)."""
        if self.max_abs_error == 0:
            return 0.0
        return self.max_abs_error / self.range if self.range > 0 else math.inf

    @property
    def error(self) -> float:
        return 1.0 - self.agreement if self.agreement is not None else self.relative_error

    def describe(self) -> str:
        spread = f"max |Δ| {_percent(self.relative_error)} of range ({self.max_abs_error:.3g})"
        if self.agreement is None:
            return f"{self.name} {spread}"
        return f"{self.name} top-1 agreement {self.agreement:.2%}, {spread}"


@dataclass(frozen=True)
class Fidelity:
    """The outputs' differences from the reference on the inputs of ``data``."""

    data: str
    outputs: list[OutputFidelity]

    @property
    def error(self) -> float:
        return max((output.error for output in self.outputs), default=0.0)

    def exceeds(self, threshold: float) -> bool:
        return self.error > threshold

    def summary(self, reference: str = "the imported model") -> str:
        """One line: every output's error against ``reference`` on the data."""
        return f"output error against {reference} on {self.data}: " + "; ".join(o.describe() for o in self.outputs)

    def warning(self, threshold: float) -> str:
        worst = max(self.outputs, key=lambda output: output.error)
        measure = (f"{1 - worst.agreement:.2%} of its top-1 decisions changed" if worst.agreement is not None
                   else f"it moves by {_percent(worst.relative_error)} of its range")
        return (f"output '{worst.name}' is off the imported model's on {self.data}: {measure}, more than "
                f"{threshold:.0%}; fine-tune (finetune{{data=FILE.npz}}, labels optional) or keep higher ranks")

    def as_dict(self, threshold: float) -> dict:
        return {"measured": True, "data": self.data, "error": _rounded(self.error), "threshold": threshold,
                "warning": self.exceeds(threshold),
                "outputs": [{**{key: _rounded(value) for key, value in asdict(output).items()},
                             "relative_error": _rounded(output.relative_error)} for output in self.outputs]}


def unmeasured(reason: str) -> dict:
    """The manifest entry of a compile that had no data to measure on."""
    return {"measured": False, "reason": reason}


def run_float64(module: Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run_module(module, inputs, dtype=np.float64)


def measure_fidelity(reference: Module, module: Module, inputs: dict[str, np.ndarray], data: str) -> Fidelity:
    """The outputs of ``module`` against ``reference``'s on ``inputs`` (named ``data``),
    for every output name both have."""
    expected = run_samples(run_float64, reference, inputs)
    actual = run_samples(run_fixed if is_quantized(module) else run_float64, module, inputs)
    rows = []
    for value in module.outputs:
        if value.name not in expected or expected[value.name].dtype.kind != "f":
            continue
        ref = np.asarray(expected[value.name], np.float64)
        diff = np.asarray(actual[value.name], np.float64) - ref
        agreement = top1_agreement(ref, ref + diff) if class_scores(value) else None
        rows.append(OutputFidelity(value.name, float(np.ptp(ref)) if ref.size else 0.0,
                                   float(np.abs(diff).max(initial=0.0)),
                                   float(np.sqrt(np.mean(diff**2))) if diff.size else 0.0, agreement))
    return Fidelity(data, rows)


def class_scores(value: Value) -> bool:
    """Whether ``value`` holds class scores: ``[..., classes]`` from a ``linear`` head,
    or a softmax / log-softmax over its last axis of one."""
    producer = value.producer
    if producer is not None and producer.kind in ("softmax", "log_softmax") and \
            producer.attrs["axis"] % value.type.rank == value.type.rank - 1:
        producer = producer.operands[0].producer
    classes = value.type.shape[-1] if value.type.rank else 1
    return producer is not None and producer.kind == "linear" and not (isinstance(classes, int) and classes < 2)


def pipeline_calibration(passes: Iterable[Pass]):
    """The last ``calibration`` file named by a pass of ``CALIBRATED_PASSES``, or ``None``."""
    found = None
    for pass_ in passes:
        if pass_.name in CALIBRATED_PASSES and getattr(pass_, "calibration", None) is not None:
            found = pass_.calibration
    return found


def _percent(fraction: float) -> str:
    return "inf" if math.isinf(fraction) else f"{fraction:.1%}"


def _rounded(value):
    """A float for JSON: 9 decimals; ``None`` for an infinite one (a changed constant output)."""
    if not isinstance(value, float):
        return value
    return round(value, 9) if math.isfinite(value) else None
