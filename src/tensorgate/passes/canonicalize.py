"""Canonicalization: constant folding, identity removal, recurrent bias folding, type refinement.

Exported models carry shape arithmetic computed at run time (PyTorch's
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``) even when every shape is known,
plus no-op reshapes, casts and transposes.  This pass rewrites them away so later
passes and the backends see plain, statically shaped ops.  It leaves the ops it makes
unused in place; ``dce`` removes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import PassError
from ..interpreter import KERNELS, Kernel
from ..ir.core import Module, Op, Value
from ..ir.ops import OP_SPECS, RECURRENT, broadcast, const_of, const_values, gate_count, reshape_dims
from ..ir.types import BOOL, UNKNOWN, FixedType, TensorType, element_type
from .base import Pass

FOLD_ALWAYS_ELEMENTS = 1024
"""Folding never makes constants bigger than its operands, except up to this size."""

TO_THE_END = 2**31 - 1
"""A slice end at least this large takes a dimension of unknown size to its end."""


@dataclass(frozen=True)
class Canonicalize(Pass):
    """Rewrite to a fixed point:

    * an op whose operands are all constants becomes a constant, evaluated with the
      NumPy runtime's kernels (the executable definition of every op); ``shape`` of a
      value whose dims are static becomes a constant without evaluating anything;
    * identities are dropped: reshape to the same shape, transpose by the identity
      permutation, squeeze/unsqueeze of no axes, a slice that takes everything, an
      expand that does not broadcast, a concat of one operand, a cast to the same type,
      ``x + 0``, ``x - 0``, ``x * 1`` and ``x / 1`` where the constant does not
      broadcast ``x`` to a bigger shape (``-0.0 + 0`` is ``+0.0``: equal, not identical
      bits, the usual compiler liberty);
    * a recurrent op's bias (input then recurrent biases, as ONNX stores it) becomes
      their sum where the gates only ever see the sum: ``lstm`` ``[dirs, 8H]`` ->
      ``[dirs, 4H]``, ``rnn`` ``[dirs, 2H]`` -> ``[dirs, H]``, ``gru`` ``[dirs, 6H]`` ->
      ``[dirs, 3H]`` without ``linear_before_reset`` (with it, the reset gate multiplies
      ``R_h·h + Rb_h``, so ``Rb_h`` cannot join ``Wb_h`` and the bias stays as it is);
    * result types are refined where the constants now known make dims static.
    """

    name: ClassVar[str] = "canonicalize"
    doc: ClassVar[str] = "Fold constant shape arithmetic and recurrent biases, drop identity ops."

    def run(self, module: Module) -> bool:
        changed = False
        while self._sweep(module):
            changed = True
        return changed

    def _sweep(self, module: Module) -> bool:
        changed = False
        for op in list(module.ops):
            if _fold(module, op) or _drop_identity(module, op):
                changed = True
                continue
            changed |= _fold_recurrent_bias(op)
            changed |= _refine_result_types(op)
        return changed


# --- constant folding ---------------------------------------------------------------


def _fold(module: Module, op: Op) -> bool:
    """Replace ``op`` by constants if its results can be computed now."""
    if op.kind == "shape":
        dims = op.operands[0].type.shape[slice(op.attrs["start"], op.attrs["end"])]
        if all(isinstance(d, int) for d in dims):
            _replace_by_constants(module, op, [np.array(dims, dtype=np.int64)])
            return True
    if op.kind not in KERNELS or op.kind in ("const", "host") or not op.inputs:
        return False
    if any(const_of(v) is None for v in op.inputs):
        return False
    if any(isinstance(v.type.dtype, FixedType) for v in (*op.inputs, *op.results)):
        return False  # fixed-point arithmetic is defined by the integer runtime, not this one
    arrays = _evaluate(op, KERNELS[op.kind])
    operand_size = sum(const_of(v).size for v in op.inputs)
    if sum(a.size for a in arrays) > max(operand_size, FOLD_ALWAYS_ELEMENTS):
        return False
    _replace_by_constants(module, op, arrays)
    return True


def _evaluate(op: Op, kernel: Kernel) -> list[np.ndarray]:
    """The results of ``op`` on its constant operands, computed in float64 (integers
    stay integers) and rounded once to the result types' dtypes."""
    wide = np.dtype(np.float64)
    args = [None if v is None else _widened(const_of(v), wide) for v in op.operands]
    try:
        arrays = kernel(op, args, wide)
    except (ValueError, IndexError, TypeError) as exc:
        raise PassError(f"cannot evaluate {op.describe()} on its constant operands: {exc}") from exc
    return [np.asarray(a).astype(_numpy_dtype(v.type), copy=False) for a, v in zip(arrays, op.results)]


def _widened(array: np.ndarray, wide: np.dtype) -> np.ndarray:
    return array.astype(wide) if array.dtype.kind == "f" else array


def _numpy_dtype(type: TensorType) -> np.dtype:
    return np.dtype(np.bool_) if type.dtype == BOOL else type.dtype.numpy


def _replace_by_constants(module: Module, op: Op, arrays: list[np.ndarray]) -> None:
    """Put one ``const`` op per result where ``op`` was; the result values (names,
    uses) stay, their producer and (now exact) type change."""
    index = module.ops.index(op)
    constants = []
    for value, array in zip(op.results, arrays):
        value.type = TensorType.of(array)
        constants.append(Op("const", [], [value], {"value": array}, op.loc))
    module.ops[index:index + 1] = constants


# --- identities -------------------------------------------------------------------


def _drop_identity(module: Module, op: Op) -> bool:
    """Forward ``op``'s operand to its users if ``op`` computes the identity."""
    source = _identity_source(op)
    return source is not None and _forward(module, op, source)


def _identity_source(op: Op) -> Value | None:
    """The operand that ``op`` returns unchanged, if it does."""
    kind = op.kind
    if kind in ("add", "sub", "mul", "div"):
        return _arithmetic_identity(op)
    if kind == "concat":
        return op.operands[0] if len(op.operands) == 1 else None
    x = op.operands[0] if op.operands else None
    if kind == "transpose":
        unchanged = list(op.attrs["perm"]) == list(range(x.type.rank))
    elif kind in ("squeeze", "unsqueeze"):
        unchanged = not op.attrs["axes"]
    elif kind == "cast":
        unchanged = element_type(op.attrs["to"]) == x.type.dtype
    elif kind == "slice":
        unchanged = _slice_takes_all(op, x.type.shape)
    elif kind == "reshape":
        target = const_of(op.operands[1])
        unchanged = target is not None and reshape_dims(op, x.type.shape, [int(d) for d in target]) == x.type.shape
    elif kind == "expand":
        target = const_of(op.operands[1])
        unchanged = target is not None and broadcast(op, x.type.shape, tuple(int(d) for d in target)) == x.type.shape
    else:
        unchanged = False
    return x if unchanged else None


_NEUTRAL = {"add": (0, True), "sub": (0, False), "mul": (1, True), "div": (1, False)}


def _arithmetic_identity(op: Op) -> Value | None:
    """``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x``, ``x / 1`` where the
    constant broadcasts into ``x``'s shape without growing it."""
    neutral, commutative = _NEUTRAL[op.kind]
    a, b = op.operands
    candidates = [(a, b), (b, a)] if commutative else [(a, b)]
    for x, other in candidates:
        constant = const_of(other)
        if (constant is not None and constant.size and np.all(constant == neutral)
                and broadcast(op, x.type.shape, constant.shape) == x.type.shape):
            return x
    return None


def _slice_takes_all(op: Op, shape: tuple) -> bool:
    starts, ends = op.attrs["starts"], op.attrs["ends"]
    axes = op.attrs["axes"] or range(len(starts))
    steps = op.attrs["steps"] or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        dim = shape[axis]
        if step != 1:
            return False
        if isinstance(dim, int):
            if start > -dim and start != 0 or end < dim:
                return False
        elif start != 0 or end < TO_THE_END:
            return False
    return True


def _forward(module: Module, op: Op, source: Value) -> bool:
    """Remove ``op`` and let its users read ``source`` instead.  When ``op``'s result is
    a module output, ``source`` takes over its name so the interface stays the same;
    that is impossible (and nothing happens) when ``source`` is itself an input or
    output of the module."""
    result = op.result
    if any(v is result for v in module.outputs):
        if source.producer is None or any(v is source for v in module.outputs):
            return False
        module.ops.remove(op)
        module.replace_all_uses(result, source)
        source.name = result.name
    else:
        module.ops.remove(op)
        module.replace_all_uses(result, source)
    return True


# --- recurrent bias -----------------------------------------------------------------


def _fold_recurrent_bias(op: Op) -> bool:
    """Bias ``[dirs, 2·gates·H]`` (Wb then Rb) -> ``Wb + Rb`` of shape ``[dirs, gates·H]``
    where every gate sees only the sum (not a GRU with ``linear_before_reset``).  Float
    biases only: adding quantized biases would change their fixed-point format."""
    if op.kind not in RECURRENT or op.attrs["bias"] is None or op.attrs["bias"].dtype.kind != "f":
        return False
    if op.attrs.get("linear_before_reset"):
        return False
    bias = op.attrs["bias"]
    gates = gate_count(op) * op.attrs["hidden_size"]
    if bias.shape[-1] != 2 * gates:
        return False
    op.attrs["bias"] = bias[:, :gates] + bias[:, gates:]
    return True


# --- type refinement ----------------------------------------------------------------


def _refine_result_types(op: Op) -> bool:
    """Make result dims static (or symbolic where unknown) when inference now knows them."""
    consts = const_values(v.producer for v in op.inputs if v.producer is not None)
    inferred = OP_SPECS[op.kind].infer(op, consts)
    changed = False
    for value, want in zip(op.results, inferred):
        if value.type.rank != want.rank:
            continue
        shape = tuple(_sharper(have, new) for have, new in zip(value.type.shape, want.shape))
        if shape != value.type.shape:
            value.type = value.type.with_shape(shape)
            changed = True
    return changed


def _sharper(have, new):
    """The more specific of two compatible dims: a static size beats a name, a name
    beats unknown."""
    if isinstance(have, str) and isinstance(new, int):
        return new
    if have == UNKNOWN and new != UNKNOWN:
        return new
    return have
