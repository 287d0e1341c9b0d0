"""A module cut into the ops before a compiled core, the core, and the ops after it.

The ``verilog`` target runs its core as one accelerator program, start to done; what the
accelerator has no hardware for (host regions, run by onnxruntime; ops such as ``relu``
that the golden model runs on the host) can run before it starts and after it is done,
not in between.  ``split_stages(module, on_core)`` makes that cut, ``on_core(op)`` saying
which ops the core can run: the *prefix* is the other ops no core op precedes, the
*suffix* those a core op precedes, the *core* a module of its own holding every core op,
whose inputs are the module inputs and prefix results it reads and whose outputs are the
values the suffix or the module's outputs take from it.  Constants belong to whichever
stage reads them, and data movement and the elementwise ops of ``FOLLOWERS`` fed only by
ops off the core run with them (the Unsqueeze between a head's Relu and its Conv, the
``add`` of an offset after a head's sigmoid).  An op off the core that a core op precedes and another follows (a
host region between two parts of the core) is refused, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import VerifyError
from .core import Module, Op, Value
from .ops import DATA_MOVEMENT


FOLLOWERS = DATA_MOVEMENT + ("add", "mul", "relu", "sigmoid", "tanh")
"""Ops that run off the core, with what feeds them, when only ops off the core feed them."""


@dataclass
class Stages:
    prefix: list[Op]
    core: Module
    suffix: list[Op]


def split_stages(module: Module, on_core: Callable[[Op], bool]) -> Stages:
    """The cut of the module docstring (``core`` is ``module`` itself if every op is on it)."""
    off_ids: set[int] = set()
    for op in module.ops:
        if op.kind != "const" and not on_core(op) or op.kind in FOLLOWERS and _fed_only_by(op, off_ids):
            off_ids.add(id(op))
    if not off_ids:
        return Stages([], module, [])
    off = [op for op in module.ops if id(op) in off_ids]
    core_ops = [op for op in module.ops if id(op) not in off_ids]
    after = _after_core(module, core_ops)
    before = _before_core(module, core_ops)
    for op in off:
        if id(op) in after and id(op) in before:
            what = "host region" if op.kind == "host" else "op"
            raise VerifyError(f"{what} {op.describe()} reads values the accelerator computes and feeds the "
                              "accelerator in turn; the accelerator runs its ops as one program between what "
                              "runs before it and what runs after it, so this module needs the numpy or onnx target")
    prefix = [op for op in off if id(op) not in after]
    suffix = [op for op in off if id(op) in after]
    return Stages(prefix, _core_module(module, core_ops, off), suffix)


def _fed_only_by(op: Op, ops: set[int]) -> bool:
    """Every operand of ``op`` that is not a constant comes from one of ``ops`` (and one does)."""
    sources = [v.producer for v in op.inputs if v.producer is None or v.producer.kind != "const"]
    return bool(sources) and all(p is not None and id(p) in ops for p in sources)


def _after_core(module: Module, core_ops: list[Op]) -> set[int]:
    """Ids of the off-core ops some core op (other than a constant) precedes."""
    core = {id(op) for op in core_ops}
    late: set[int] = set()  # ids of values computed by a core op or after one
    found: set[int] = set()
    for op in module.ops:
        if id(op) not in core and any(id(v) in late for v in op.inputs):
            found.add(id(op))
        if id(op) in core and op.kind != "const" or id(op) in found:
            late.update(id(v) for v in op.results)
    return found


def _before_core(module: Module, core_ops: list[Op]) -> set[int]:
    """Ids of the off-core ops some core op follows."""
    core = {id(op) for op in core_ops}
    needed: set[int] = set()  # ids of values a core op needs, directly or through off-core ops
    found: set[int] = set()
    for op in reversed(module.ops):
        if id(op) in core:
            needed.update(id(v) for v in op.inputs)
        elif any(id(v) in needed for v in op.results):
            found.add(id(op))
            needed.update(id(v) for v in op.inputs)
    return found


def _core_module(module: Module, ops: list[Op], off: list[Op]) -> Module:
    computed = {id(v) for op in ops for v in op.results}
    inputs: dict[int, Value] = {}
    for op in ops:
        for value in op.inputs:
            if id(value) not in computed:
                inputs.setdefault(id(value), value)
    off_reads = {id(v) for op in off for v in op.inputs}
    outputs: dict[int, Value] = {}
    for value in [*module.outputs, *(v for op in ops for v in op.results if id(v) in off_reads)]:
        if id(value) in computed and value.producer.kind != "const":
            outputs.setdefault(id(value), value)
    fresh = {id(v): Value(v.name, v.type) for v in inputs.values()}  # the copy's inputs have no producer
    return Module(module.name, list(inputs.values()), ops, list(outputs.values())).copy(fresh)
