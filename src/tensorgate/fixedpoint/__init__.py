"""Fixed-point arithmetic of the hardware contract: formats, rounding, saturation,
accumulator widths (``formats``) and integer σ/tanh units (``activations``)."""

from .activations import ActivationUnit, build_unit
from .formats import (
    ROUNDINGS, Rounding, accumulator_width, code_max, code_min, dequantize, fit_format, quantize,
    requantize, saturate, shift_round, step,
)

__all__ = [
    "ActivationUnit", "build_unit", "ROUNDINGS", "Rounding", "accumulator_width", "code_max", "code_min",
    "dequantize", "fit_format", "quantize", "requantize", "saturate", "shift_round", "step",
]
