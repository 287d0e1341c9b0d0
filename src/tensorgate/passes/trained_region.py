"""The part of a module that ``finetune`` trains, when host regions run around it.

A shipped model is partitioned into host regions (ONNX that onnxruntime runs: a CNN or
STFT front end, a post-processing head) and the tensorgate ops of its recurrent core.
Torch cannot backpropagate through onnxruntime, and it need not: a host region holds no
weights that tensorgate compiles.  ``trained_region`` splits the module in three:

* the *prefix*: every op whose results do not depend on a weight (host regions on the
  inputs, reshapes, gathers of a state input).  It computes the same values in every
  epoch, so it runs once, in the NumPy runtime (host regions in onnxruntime), and its
  results are the core's inputs;
* the *core*: the ops that depend on a weight (``is_weight``), plus the constants they
  read, and nothing behind a host region;
* the *suffix*: a host region that reads the core, and every op after it.

The core's outputs, the values the training matches to the teacher's, are the core's
results that the suffix or the module's outputs read.  The core shares its ``Op``
objects with the module, so weights trained on the core are the module's.  A module
without host regions is its own core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.core import Module, Op, Value
from ..ir.linear_map import LinearMap


def is_weight(op: Op, key: str, leaf) -> bool:
    """Whether attribute ``key`` (or one item ``leaf`` of a list attribute) of ``op`` is a
    weight the torch twin makes a parameter: a linear map, a bias or peepholes, a float
    constant of more than one element."""
    if isinstance(leaf, LinearMap):
        return True
    if not isinstance(leaf, np.ndarray):
        return False
    return key in ("bias", "peepholes") or (op.kind == "const" and key == "value" and leaf.dtype.kind == "f"
                                            and leaf.size > 1)


def has_weights(op: Op) -> bool:
    return any(is_weight(op, key, leaf) for key, value in op.attrs.items()
               for leaf in (value if isinstance(value, list) else [value]))


@dataclass(frozen=True)
class TrainedRegion:
    """``core``: the module's trained ops as a module of their own; ``prefix``: the module
    from the model's inputs to the core's inputs (``None`` when the core is the module)."""

    core: Module
    prefix: Module | None


def trained_region(module: Module) -> TrainedRegion:
    """The prefix, core and suffix of ``module`` (see the module docstring)."""
    if not module.ops_of("host"):
        return TrainedRegion(module, None)
    varying: set[int] = set()  # values that depend on a weight
    behind: set[int] = set()  # values a host region computes from the core, and all after them
    core_ops, frozen_ops = [], []
    for op in module.ops:
        operands = [id(v) for v in op.operands if v is not None]
        if any(v in behind for v in operands) or op.kind == "host" and any(v in varying for v in operands):
            behind.update(id(r) for r in op.results)
        elif has_weights(op) or any(v in varying for v in operands):
            varying.update(id(r) for r in op.results)
            core_ops.append(op)
        else:
            frozen_ops.append(op)
    core_ids = {id(r) for op in core_ops for r in op.results}
    constants = [op for op in frozen_ops if op.kind == "const" and any(
        any(v is r for r in op.results) for core in core_ops for v in core.operands)]
    core_ops = [op for op in module.ops if op in core_ops or op in constants]
    core_ids |= {id(r) for op in constants for r in op.results}
    inputs = _unique(v for op in core_ops for v in op.operands if v is not None and id(v) not in core_ids)
    read_after = [v for op in module.ops if op not in core_ops for v in op.operands if v is not None]
    outputs = _unique(v for v in read_after + list(module.outputs) if id(v) in core_ids)
    prefix = Module("prefix", module.inputs, [op for op in frozen_ops if op not in constants], inputs)
    return TrainedRegion(Module("core", inputs, core_ops, outputs), prefix)


def _unique(values) -> list[Value]:
    seen: dict[int, Value] = {}
    for value in values:
        seen.setdefault(id(value), value)
    return list(seen.values())
