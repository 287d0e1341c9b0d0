"""The kernel of the ``host`` op: its embedded ONNX region, run by onnxruntime.

A host region holds the nodes of a model that tensorgate does not compile (a CNN or STFT
front end, post-processing); we do not interpret ONNX ourselves, onnxruntime does.  This
is the one module of the interpreter that knows an engine (ARCHITECTURE.md, exceptions).

The region computes in the element types its graph declares (float32 for the models
seen so far): operands are cast to them on entry and results to the run's dtype on exit.
Sessions run on one thread, so a region gives the same bits on every run, which the
bit-exact comparison of ``simulate`` with ``run`` relies on.  In the integer golden model
(``host_program``) fixed-point operands enter as their real values and results that feed
tensorgate's ops leave quantized to their formats (the module's rounding, saturating):
the quantize/dequantize at the region boundary.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..errors import ExecutionError
from ..fixedpoint.formats import dequantize, quantize
from ..ir.core import Op
from ..ir.ops import host_signature
from ..ir.types import FixedType
from .kernels import kernel

SESSION_CACHE_SIZE = 32
_SESSIONS: OrderedDict[int, tuple[np.ndarray, object]] = OrderedDict()


def host_session(op: Op):
    """The onnxruntime session of ``op``'s region, created once per region bytes."""
    model = op.attrs["model"]
    cached = _SESSIONS.get(id(model))
    if cached is not None and cached[0] is model:
        _SESSIONS.move_to_end(id(model))
        return cached[1]
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(model.tobytes(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types, one per failure kind
        raise ExecutionError(f"{op.describe()}: onnxruntime cannot load the host region: "
                             f"{' '.join(str(exc).split())}") from None
    _SESSIONS[id(model)] = (model, session)
    if len(_SESSIONS) > SESSION_CACHE_SIZE:
        _SESSIONS.popitem(last=False)
    return session


def run_region(op: Op, args: list[np.ndarray]) -> list[np.ndarray]:
    """The region's outputs for real-valued (or integer) ``args``, as onnxruntime gives them."""
    inputs = host_signature(op, "inputs")
    feeds = {name: np.asarray(arg).astype(want.dtype.numpy, copy=False) for arg, (name, want) in zip(args, inputs)}
    names = [name for name, _ in host_signature(op, "outputs")]
    try:
        results = host_session(op).run(names, feeds)
    except ExecutionError:
        raise
    except Exception as exc:  # onnxruntime's run-time failures (shapes, values) have no common base
        raise ExecutionError(f"{op.describe()}: onnxruntime failed in the host region: "
                             f"{' '.join(str(exc).split())}") from None
    for array, value in zip(results, op.results):
        if np.ndim(array) != value.type.rank or any(
                isinstance(d, int) and d != n for d, n in zip(value.type.shape, np.shape(array))):
            raise ExecutionError(f"{op.describe()}: the host region returned {list(np.shape(array))} for "
                                 f"%{value.name}, which the IR types {value.type}")
    return results


@kernel("host")
def _host(op, args, dtype):
    return [array.astype(dtype, copy=False) if array.dtype.kind == "f" else array for array in run_region(op, args)]


def host_program(op: Op, rounding: str):
    """The golden model's ``host`` op: dequantize fixed-point operands, run the region,
    quantize the results whose types are fixed point."""

    def program(args, narrow) -> list[np.ndarray]:
        reals = [dequantize(a, v.type.dtype) if isinstance(v.type.dtype, FixedType) else a
                 for a, v in zip(args, op.operands)]
        results = run_region(op, reals)
        return [quantize(np.asarray(r, np.float64), v.type.dtype, rounding) if isinstance(v.type.dtype, FixedType)
                else r for r, v in zip(results, op.results)]

    return program
