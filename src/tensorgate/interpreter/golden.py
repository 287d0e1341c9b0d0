"""The integer golden model: executes a quantized module bit-exactly as the accelerator must.

Every real-valued tensor is an ``int64`` array of codes of its ``fix<w,f>`` type; nothing
is computed in floating point.  The arithmetic of each quantized op is
``fixedpoint.programs`` (its docstring spells it out); data-movement ops run the float
kernels unchanged on codes; ``relu`` is a max with 0.

A ``host`` op runs its region in onnxruntime on real values (``host.host_program``): the
only floats of a quantized module are the values that flow between host regions, module
inputs only host regions read, and outputs host regions make.

Module inputs of a fixed-point type take real values in any numeric dtype (quantized by
value with the module's rounding mode, saturating: an int64 3 is the real 3), or, with
``raw_input=True``, integer arrays of codes, which must fit.  Outputs are dequantized to
float64, or returned as codes with ``raw=True``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ExecutionError, VerifyError
from ..fixedpoint.formats import code_max, code_min, dequantize, quantize
from ..fixedpoint.programs import (ActivationProgram, ElementwiseProgram, GRUProgram, LinearProgram, LSTMProgram,
                                   Narrowing, Program, RNNProgram, TensorStats)
from ..fixedpoint.quant_attrs import is_quantized, module_rounding
from ..ir.core import Module, Op
from ..ir.ops import DATA_MOVEMENT
from ..ir.types import FixedType, FloatType
from .executor import check_inputs
from .host import host_program
from .kernels import KERNELS, check_result_size

PROGRAMS = {"linear": LinearProgram, "lstm": LSTMProgram, "gru": GRUProgram, "rnn": RNNProgram,
            "add": ElementwiseProgram, "mul": ElementwiseProgram, "sigmoid": ActivationProgram,
            "tanh": ActivationProgram}
"""The integer program of each quantized op kind that computes (``fixedpoint.programs``)."""


class FixedExecutor:
    """Runs one quantized module repeatedly; quantized weights and tables are prepared once."""

    def __init__(self, module: Module):
        if not is_quantized(module):
            raise ExecutionError("the fixed-point runtime runs quantized modules; this one has no "
                                 "fix<w,f> values (run the 'quantize' pass first)")
        self.module = module
        try:
            self.rounding = module_rounding(module)
            self._programs = [self._program(op) for op in module.ops]
        except VerifyError as exc:
            raise ExecutionError(str(exc)) from None

    def _program(self, op: Op) -> Program:
        if op.attrs.get("quant") is not None:
            if op.kind == "const":
                value = np.asarray(op.attrs["value"], np.int64)
                return lambda args, narrow: [value]
            if op.kind in PROGRAMS:
                return PROGRAMS[op.kind](op)
        if op.kind == "host":
            return host_program(op, self.rounding)
        fixed = [v for v in op.inputs + op.results if isinstance(v.type.dtype, FixedType)]
        floats = [v for v in op.inputs + op.results if isinstance(v.type.dtype, FloatType)]
        if floats:
            raise ExecutionError(f"{op.describe()}: %{floats[0].name} is {floats[0].type.dtype}; the fixed-point "
                                 "runtime computes on fix<w,f> and integer values only")
        if op.kind == "relu":
            return lambda args, narrow: [np.maximum(args[0], 0)]
        if fixed and op.kind not in DATA_MOVEMENT:
            raise ExecutionError(f"{op.describe()}: the fixed-point runtime has no kernel for this op on "
                                 f"fixed-point values")
        if op.kind not in KERNELS:
            raise ExecutionError(f"{op.describe()}: the runtime has no kernel for this op")
        kernel = KERNELS[op.kind]
        return lambda args, narrow: kernel(op, args, np.dtype(np.float64))

    def run(self, inputs: dict[str, np.ndarray], raw: bool = False,
            stats: dict[str, TensorStats] | None = None, raw_input: bool = False) -> dict[str, np.ndarray]:
        """Outputs by name: dequantized (float64), or integer codes with ``raw``.  ``stats``,
        if given, collects per narrowed tensor its saturations and range; ``raw_input``
        takes fixed-point inputs as integer codes (module docstring)."""
        return self.run_codes(self.input_codes(inputs, raw_input), raw=raw, stats=stats)

    def run_codes(self, codes: dict[str, np.ndarray], raw: bool = False,
                  stats: dict[str, TensorStats] | None = None) -> dict[str, np.ndarray]:
        """``run`` on inputs already in the form ``input_codes`` gives (codes for
        fixed-point inputs)."""
        narrow = Narrowing(self.rounding, stats)
        env = {id(v): codes[v.name] for v in self.module.inputs}
        for op, program in zip(self.module.ops, self._programs):
            args = [None if v is None else env[id(v)] for v in op.operands]
            try:
                check_result_size(op, args)
                results = program(args, narrow)
            except (ValueError, IndexError, TypeError) as exc:
                raise ExecutionError(f"{op.describe()} failed: {exc}") from exc
            for value, array in zip(op.results, results):
                env[id(value)] = np.asarray(array)
        return {v.name: self._output(v, env[id(v)], raw) for v in self.module.outputs}

    def input_codes(self, inputs: dict[str, np.ndarray], raw_input: bool = False) -> dict[str, np.ndarray]:
        """The inputs as the accelerator receives them: codes for fixed-point inputs
        (real values quantized, or with ``raw_input`` integer codes checked), other inputs
        unchanged."""
        check_inputs(self.module, inputs)
        return {v.name: self._input(v, inputs[v.name], raw_input) for v in self.module.inputs}

    def _input(self, value, array, raw_input: bool) -> np.ndarray:
        array = np.asarray(array)
        fmt = value.type.dtype
        if not isinstance(fmt, FixedType):
            return array
        if raw_input:
            return _checked_codes(value.name, array, fmt)
        if array.dtype.kind not in "biuf":
            raise ExecutionError(f"input '{value.name}' has dtype {array.dtype}; {fmt} takes real numbers "
                                 "(or integer codes with raw input)")
        real = array.astype(np.float64)
        if np.isnan(real).any():
            raise ExecutionError(f"input '{value.name}' contains NaN")
        return quantize(real, fmt, self.rounding)

    def run_op(self, op: Op, args: list) -> list[np.ndarray]:
        """One op of the module on its operands' codes (the prepared program of ``run``)."""
        index = next(k for k, candidate in enumerate(self.module.ops) if candidate is op)
        return [np.asarray(a) for a in self._programs[index](args, Narrowing(self.rounding))]

    @staticmethod
    def _output(value, array: np.ndarray, raw: bool) -> np.ndarray:
        if raw or not isinstance(value.type.dtype, FixedType):
            return array
        return dequantize(array, value.type.dtype)


def _checked_codes(name: str, array: np.ndarray, fmt: FixedType) -> np.ndarray:
    """``array`` as the int64 codes of ``fmt``: an integer array whose values fit."""
    if array.dtype.kind not in "iu":
        raise ExecutionError(f"input '{name}': raw input takes integer codes, not {array.dtype} values")
    if array.size and (array.min() < code_min(fmt) or array.max() > code_max(fmt)):
        raise ExecutionError(f"input '{name}': integer codes must lie in [{code_min(fmt)}, "
                             f"{code_max(fmt)}] for {fmt}")
    return array.astype(np.int64)


def run_fixed(module: Module, inputs: dict[str, np.ndarray], raw: bool = False,
              raw_input: bool = False) -> dict[str, np.ndarray]:
    """Execute a quantized ``module`` in integer arithmetic; outputs keyed by name
    (dequantized float64, or the integer codes with ``raw``); ``raw_input`` takes the
    fixed-point inputs as integer codes instead of real values."""
    return FixedExecutor(module).run(inputs, raw=raw, raw_input=raw_input)
