"""The float kernels: the executable definition of every IR op, in NumPy.

Each kernel in ``KERNELS`` takes the op and its operand arrays (``None`` for an absent
optional operand) and the run's float dtype, and returns the list of result arrays.
Floating tensors are computed in that dtype; integer tensors (shapes, indices, sequence
lengths) stay int64.  The recurrent ops' kernels are in ``interpreter.lstm``, ``.gru``
and ``.rnn`` (their shared sweep in ``interpreter.recurrent``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ExecutionError
from ..ir.core import Op
from ..ir.types import MAX_ELEMENTS, FloatType, element_type, shapes_compatible
from ..registry import registrar

Kernel = Callable[[Op, list, np.dtype], list]
KERNELS: dict[str, Kernel] = {}


kernel = registrar(KERNELS)


def _elementwise(fn):
    return lambda op, args, dtype: [fn(*args)]


for _kind, _fn in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "relu": lambda x: np.maximum(x, 0).astype(x.dtype), "tanh": np.tanh, "neg": np.negative,
    "exp": np.exp, "matmul": np.matmul,
}.items():
    KERNELS[_kind] = _elementwise(_fn)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function as 0.5·(1 + tanh(x/2)): exact, overflow-free, one transcendental."""
    return (0.5 * np.tanh(0.5 * x) + 0.5).astype(x.dtype, copy=False)


KERNELS["sigmoid"] = _elementwise(sigmoid)


def div_kernel(op, args, dtype):
    a, b = args
    if a.dtype.kind in "iu":
        return [np.trunc(a / b).astype(a.dtype)]  # ONNX integer Div truncates
    return [a / b]


KERNELS["div"] = div_kernel


@kernel("const")
def _const(op, args, dtype):
    return [as_float(op.attrs["value"], dtype)]


@kernel("linear")
def _linear(op, args, dtype):
    y = op.attrs["weight"].apply(args[0])
    bias = op.attrs["bias"]
    return [y if bias is None else y + bias]


@kernel("einsum")
def _einsum(op, args, dtype):
    return [np.einsum(op.attrs["equation"], *args, optimize=True)]


@kernel("softmax")
def _softmax(op, args, dtype):
    x = args[0]
    e = np.exp(x - x.max(axis=op.attrs["axis"], keepdims=True))
    return [e / e.sum(axis=op.attrs["axis"], keepdims=True)]


@kernel("log_softmax")
def _log_softmax(op, args, dtype):
    x = args[0]
    shifted = x - x.max(axis=op.attrs["axis"], keepdims=True)
    return [shifted - np.log(np.exp(shifted).sum(axis=op.attrs["axis"], keepdims=True))]


@kernel("reshape")
def _reshape(op, args, dtype):
    x, target = args
    dims = [int(d) for d in target]
    if not op.attrs["allowzero"]:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return [x.reshape(dims)]


@kernel("transpose")
def _transpose(op, args, dtype):
    return [np.transpose(args[0], op.attrs["perm"])]


@kernel("slice")
def _slice(op, args, dtype):
    x = args[0]
    starts, ends = op.attrs["starts"], op.attrs["ends"]
    axes = op.attrs["axes"] or range(len(starts))
    steps = op.attrs["steps"] or [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return [x[tuple(index)]]


@kernel("gather")
def _gather(op, args, dtype):
    return [np.take(args[0], args[1], axis=op.attrs["axis"])]


@kernel("concat")
def _concat(op, args, dtype):
    return [np.concatenate(args, axis=op.attrs["axis"])]


@kernel("split")
def _split(op, args, dtype):
    cuts = np.cumsum(op.attrs["sizes"])[:-1]
    return list(np.split(args[0], cuts, axis=op.attrs["axis"]))


@kernel("squeeze")
def _squeeze(op, args, dtype):
    return [np.squeeze(args[0], axis=tuple(op.attrs["axes"]))]


@kernel("unsqueeze")
def _unsqueeze(op, args, dtype):
    return [np.expand_dims(args[0], axis=tuple(op.attrs["axes"]))]


@kernel("flatten")
def _flatten(op, args, dtype):
    x = args[0]
    axis = op.attrs["axis"] + x.ndim if op.attrs["axis"] < 0 else op.attrs["axis"]
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@kernel("shape")
def _shape(op, args, dtype):
    return [np.array(args[0].shape[slice(op.attrs["start"], op.attrs["end"])], dtype=np.int64)]


@kernel("cast")
def _cast(op, args, dtype):
    target = element_type(op.attrs["to"])
    return [args[0].astype(dtype if isinstance(target, FloatType) else target.numpy)]


def check_result_size(op: Op, args: list) -> None:
    """``ExecutionError`` before an op whose result size comes from an operand's contents
    (``expand``) would allocate a result other than its declared type, or one of more
    than ``MAX_ELEMENTS`` elements; called by both runtimes before the kernel."""
    if op.kind != "expand":
        return
    x, shape = args
    try:
        result = np.broadcast_shapes(np.shape(x), tuple(int(d) for d in np.asarray(shape).reshape(-1)))
    except (ValueError, TypeError, OverflowError) as exc:
        raise ExecutionError(f"{op.describe()} failed: cannot expand {list(np.shape(x))} to {shape}: {exc}") from None
    declared = op.results[0].type
    if not shapes_compatible(result, declared.shape) or np.prod(result, dtype=object) > MAX_ELEMENTS:
        raise ExecutionError(f"{op.describe()}: expanding to {list(result)} would not give its declared type "
                             f"{declared} (or more than {MAX_ELEMENTS:,} elements)")


@kernel("expand")
def _expand(op, args, dtype):
    x, shape = args
    return [np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))).copy()]


def as_float(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return array.astype(dtype, copy=False) if array.dtype.kind == "f" else array
