"""Fixed-point arithmetic: the contract the accelerator's RTL must meet bit for bit.

Where each part is defined:

* ``formats``: ``fix<w,f>`` codes, rounding (nearest-even, half-away) as one add and one
  arithmetic shift, saturation, ``requantize`` (the single round-and-saturate of every
  narrowing), the accumulator-width rule and its proof;
* ``activations``: σ and tanh as integer PWL or table units, and their exact error bounds;
* ``maps``: linear maps as integer GEMMs / contraction steps, in the map's schedule;
* ``quant_attrs``: the ``quant`` attribute quantized ops carry in the IR;
* ``programs``: the integer ``linear``, ``lstm``, ``gru`` and ``rnn`` of one op (its
  docstring gives the arithmetic), shared by the golden model and the accelerator's
  lowering.

``passes/quantize.py`` chooses the formats (calibrating on float runs,
``passes/quantization``); ``interpreter/golden.py`` is the golden model that executes
them.
"""

from .activations import ActivationUnit, build_unit
from .formats import (
    ROUNDINGS, Rounding, accumulator_width, code_max, code_min, dequantize, fit_format, quantize,
    requantize, saturate, shift_round, step,
)

__all__ = [
    "ActivationUnit", "build_unit", "ROUNDINGS", "Rounding", "accumulator_width", "code_max", "code_min",
    "dequantize", "fit_format", "quantize", "requantize", "saturate", "shift_round", "step",
]
