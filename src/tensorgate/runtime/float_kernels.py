"""The float runtime with a choice of recurrent kernel: NumPy, or onnxruntime as a
compiled kernel.

A small recurrent layer's time step is a dozen NumPy calls of a microsecond or two each,
where onnxruntime's LSTM/GRU/RNN kernel runs the whole step in a few microseconds; a
batch of 32 runs onnxruntime's own GEMMs instead of NumPy's BLAS.  So ``float_executor``
can run each ``lstm``, ``gru`` and ``rnn`` op of a module through onnxruntime: the op
alone, lowered as the ``onnx`` target lowers it (``onnx_form``: the ONNX node for dense
maps, every attribute included; the ``Scan`` for a decomposed W), in one session built
when the executor is made and reused by every run.  Every other op runs its NumPy kernel.

``kernel``:

* ``numpy``: every op its NumPy kernel (``interpreter``), the executable definition.
* ``onnxruntime``: every recurrent op in onnxruntime (float32 runs only: onnxruntime's
  recurrent ops do not run float64).
* ``auto`` (the default): onnxruntime for the recurrent ops it runs as one ONNX node
  (dense stacked W and R) in a float32 run, NumPy for the rest.  A decomposed W stays
  with NumPy: measured on the UCF11 and FL-TT-LSTM shapes (``benchmarks/deploy_speed.py``),
  the Scan, the node fed a NumPy projection through an identity W, and the node fed
  onnxruntime's projection were none faster than the NumPy kernel, the identity costing
  a ``(gates·H)²`` product per step.

The sessions run on ``threads`` intra-op threads (default 1: a recurrent layer's step is
small, and NumPy's kernel keeps such products on one BLAS thread too).
"""

from __future__ import annotations

import functools

import numpy as np
import onnxruntime

from ..backend.onnx_export import export_onnx
from ..errors import ExecutionError, UsageError
from ..interpreter import Executor, Kernel
from ..ir.core import Module, Op, Value
from ..onnx_form import numpy_dtype
from ..onnx_form.recurrent import recurrent_strategy

KERNEL_CHOICES = ("auto", "numpy", "onnxruntime")
DEFAULT_KERNEL = "auto"
RECURRENT_KINDS = ("lstm", "gru", "rnn")


def float_executor(module: Module, dtype=np.float32, kernel: str = DEFAULT_KERNEL, threads: int = 1) -> Executor:
    """An ``Executor`` of ``module`` whose recurrent ops run the ``kernel`` chosen (see the
    module docstring); onnxruntime sessions are built here, once per op."""
    if kernel not in KERNEL_CHOICES:
        raise UsageError(f"kernel '{kernel}' is not one of {', '.join(KERNEL_CHOICES)}")
    return Executor(module, dtype, functools.partial(_chosen_kernel, kernel=kernel, threads=threads))


def run_float(module: Module, inputs: dict[str, np.ndarray], dtype=np.float32,
              kernel: str = DEFAULT_KERNEL) -> dict[str, np.ndarray]:
    """Run ``module`` once on ``inputs`` with the ``kernel`` chosen; outputs keyed by name."""
    return float_executor(module, dtype, kernel).run(inputs)


def _chosen_kernel(op: Op, dtype: np.dtype, kernel: str, threads: int) -> Kernel | None:
    """The onnxruntime kernel of ``op`` where ``kernel`` sends it there, else ``None`` (NumPy)."""
    if kernel == "numpy" or op.kind not in RECURRENT_KINDS:
        return None
    float32 = np.dtype(dtype) == np.float32
    if kernel == "auto":
        return OnnxruntimeRecurrent(op, threads) if float32 and recurrent_strategy(op) == "native" else None
    if not float32:
        raise ExecutionError(f"{op.describe()}: the onnxruntime kernel runs float32 only (onnxruntime's recurrent "
                             f"ops do not run {np.dtype(dtype)}); use kernel 'numpy' or 'auto'")
    return OnnxruntimeRecurrent(op, threads)


class OnnxruntimeRecurrent:
    """A ``Kernel`` running one recurrent op in onnxruntime: the op alone as an ONNX model
    (its operands the model's inputs, its results the outputs), in a session made once."""

    def __init__(self, op: Op, threads: int):
        self.feeds = _distinct_operands(op)
        model = export_onnx(Module(f"{op.kind}_kernel", [value for _, value in self.feeds], [op], list(op.results)))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 4  # a failure is raised as an ExecutionError, not logged too
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, op: Op, args: list, dtype: np.dtype) -> list[np.ndarray]:
        feeds = {value.name: np.asarray(args[index], numpy_dtype(value)) for index, value in self.feeds}
        try:
            return self.session.run(None, feeds)
        except Exception as exc:  # onnxruntime's run-time failures (shapes, values) have no common base
            raise ExecutionError(f"{op.describe()}: onnxruntime's kernel failed: {' '.join(str(exc).split())}") from None


def _distinct_operands(op: Op) -> list[tuple[int, Value]]:
    """The op's present operands, each value once, with its position: the model's inputs."""
    distinct: dict[int, tuple[int, Value]] = {}
    for index, value in enumerate(op.operands):
        if value is not None:
            distinct.setdefault(id(value), (index, value))
    return list(distinct.values())
