"""The float executor: ``run_module(module, inputs)`` runs a module in float32 (default)
or float64 with the kernels of ``interpreter.kernels``, the executable definition of
every op."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ExecutionError
from ..fixedpoint.quant_attrs import is_quantized
from ..ir.core import Module, Op
from ..ir.linear_map import LinearMap
from ..ir.types import TensorType
from .kernels import KERNELS, Kernel, as_float, check_result_size


def check_inputs(module: Module, inputs: dict[str, np.ndarray]) -> None:
    """Raise ``ExecutionError`` unless ``inputs`` names every module input once with a
    fitting rank, static dims, and consistent symbolic dims."""
    expected = [v.name for v in module.inputs]
    missing = [name for name in expected if name not in inputs]
    extra = [name for name in inputs if name not in expected]
    if missing or extra:
        problems = ([f"missing input(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown input(s) {', '.join(extra)}"] if extra else [])
        raise ExecutionError(f"{'; '.join(problems)} (the model takes: {', '.join(expected)})")
    bound: dict[str, int] = {}
    for value in module.inputs:
        _check_values(value.name, inputs[value.name])
        _check_shape(value.name, value.type, np.shape(inputs[value.name]), bound)


def _check_values(name: str, data) -> None:
    """An input holds real numbers (booleans, integers or floats), at least one, none of
    them NaN or infinite."""
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        kind = {"c": "complex numbers", "U": "strings", "S": "strings", "O": "Python objects"}.get(
            array.dtype.kind, f"{array.dtype} values")
        raise ExecutionError(f"input '{name}' holds {kind} ({array.dtype}); the model takes real numbers")
    if array.size == 0:
        raise ExecutionError(f"input '{name}' is empty (shape {list(array.shape)}): every dim must be at least 1")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = ~np.isfinite(array)
        index = [int(i) for i in np.argwhere(bad)[0]]
        raise ExecutionError(f"input '{name}' holds {array[tuple(index)]} at {index} ({int(bad.sum())} of "
                             f"{array.size} entries are not finite)")


def _check_shape(name: str, type: TensorType, shape: tuple[int, ...], bound: dict[str, int]) -> None:
    def mismatch() -> ExecutionError:
        want = "[" + ",".join(str(d) for d in type.shape) + "]"
        return ExecutionError(f"input '{name}' has shape {list(shape)}, expected {want}")

    if len(shape) != type.rank:
        raise mismatch()
    for dim, size in zip(type.shape, shape):
        if isinstance(dim, int) and dim != size:
            raise mismatch()
        if isinstance(dim, str) and dim != "?":
            if bound.setdefault(dim, size) != size:
                raise ExecutionError(f"input '{name}' has {dim}={size}, but another input has "
                                     f"{dim}={bound[dim]}")


KernelChooser = Callable[[Op, np.dtype], Kernel | None]
"""Given an op of the module and the run's dtype, the kernel to run it with instead of its
NumPy one, or ``None`` for the NumPy kernel.  Called once per op when the executor is
made, so a kernel may build what it needs (an onnxruntime session) there, not per run."""


class Executor:
    """Runs one module repeatedly; weights are converted to the run's dtype once.

    ``choose_kernel`` lets a runtime above the interpreter run some ops with a compiled
    kernel of its own (``runtime.float_kernels``); every op defaults to its NumPy kernel."""

    def __init__(self, module: Module, dtype=np.float32, choose_kernel: KernelChooser | None = None):
        self.module = module
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ExecutionError(f"the float runtime runs in float32 or float64, not {self.dtype}")
        if is_quantized(module):
            raise ExecutionError("this module is quantized: run it with the integer golden model "
                                 "(tensorgate.interpreter.run_fixed, or `tensorgate run`)")
        self._ops = [self._prepared(op) for op in module.ops]
        self._kernels = [self._kernel_of(op, choose_kernel) for op in module.ops]

    def _prepared(self, op: Op) -> Op:
        """The op with its float tensors and maps converted to the run's dtype."""
        if op.kind not in KERNELS:
            raise ExecutionError(f"{op.describe()}: the NumPy runtime has no kernel for this op")
        attrs = {key: _convert(value, self.dtype) for key, value in op.attrs.items()}
        return Op(op.kind, op.operands, [], attrs, op.loc)

    def _kernel_of(self, op: Op, choose_kernel: KernelChooser | None) -> Kernel:
        chosen = None if choose_kernel is None else choose_kernel(op, self.dtype)
        return KERNELS[op.kind] if chosen is None else chosen

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_inputs(self.module, inputs)
        env: dict[int, np.ndarray] = {
            id(v): as_float(np.asarray(inputs[v.name]), self.dtype) for v in self.module.inputs
        }
        with np.errstate(all="ignore"):  # an overflow is the model's arithmetic: NaN outputs are reported
            for op, prepared, kernel in zip(self.module.ops, self._ops, self._kernels):
                self._run_op(op, prepared, kernel, env)
        return {v.name: env[id(v)] for v in self.module.outputs}

    def _run_op(self, op: Op, prepared: Op, kernel: Kernel, env: dict[int, np.ndarray]) -> None:
        args = [None if v is None else env[id(v)] for v in op.operands]
        try:
            check_result_size(op, args)
            results = kernel(prepared, args, self.dtype)
        except (ValueError, IndexError, TypeError) as exc:
            raise ExecutionError(f"{op.describe()} failed: {exc}") from exc
        for value, array in zip(op.results, results):
            env[id(value)] = as_float(np.asarray(array), self.dtype)


def _convert(value, dtype):
    if isinstance(value, LinearMap):
        return value if value.dtype == dtype else value.astype(dtype)
    if isinstance(value, np.ndarray):
        return as_float(value, dtype)
    if isinstance(value, list):
        return [_convert(v, dtype) for v in value]
    return value


def run_module(module: Module, inputs: dict[str, np.ndarray], dtype=np.float32) -> dict[str, np.ndarray]:
    """Execute ``module`` on ``inputs`` (keyed by input name); outputs keyed by name."""
    return Executor(module, dtype).run(inputs)
