"""Small graph utilities the raising rewrites share: constants seen through layout
ops, removal of the ops a rewrite left unused, and a stable topological order."""

from __future__ import annotations

import numpy as np

from ...interpreter import KERNELS
from ...ir.core import Module, Op, Value

LAYOUT_OPS = ("reshape", "transpose", "squeeze", "unsqueeze", "flatten")
"""Ops that only move elements: a constant seen through them is still the stored data."""


def constant_array(value: Value | None) -> np.ndarray | None:
    """The contents of ``value`` if it is a ``const`` or layout ops of one (evaluated
    with the interpreter's kernels, which only move elements), else ``None``."""
    if value is None or value.producer is None:
        return None
    op = value.producer
    if op.kind == "const":
        return op.attrs["value"]
    if op.kind not in LAYOUT_OPS:
        return None
    args = [constant_array(v) for v in op.operands]
    if any(a is None for a in args):
        return None
    return np.asarray(KERNELS[op.kind](op, args, None)[0])


def remove_dead(module: Module, candidates: list[Op]) -> None:
    """Remove the ``candidates`` nothing uses any more, then the producers of their
    operands that this leaves unused, and so on.  Other dead ops stay."""
    pending = {id(op): op for op in candidates}
    while pending:
        uses = module.use_counts()
        dead = {key: op for key, op in pending.items()
                if op in module.ops and not any(uses.get(id(r), 0) for r in op.results)}
        if not dead:
            return
        module.ops = [op for op in module.ops if id(op) not in dead]
        pending = {id(v.producer): v.producer for op in dead.values() for v in op.inputs if v.producer is not None}


def topological_order(module: Module) -> None:
    """Reorder ``module.ops`` so every operand is defined before use, moving as few ops
    as possible (each op goes to the earliest place its operands allow, ties kept in
    the current order)."""
    position = {id(op): k for k, op in enumerate(module.ops)}
    producers = {id(r): op for op in module.ops for r in op.results}
    placed: set[int] = set()
    order: list[Op] = []

    def place(op: Op) -> None:
        stack = [(op, False)]
        while stack:
            current, ready = stack.pop()
            if id(current) in placed:
                continue
            if ready:
                placed.add(id(current))
                order.append(current)
                continue
            stack.append((current, True))
            needed = [producers[id(v)] for v in current.inputs if id(v) in producers]
            for dep in sorted(needed, key=lambda o: -position[id(o)]):
                if id(dep) not in placed:
                    stack.append((dep, False))

    for op in module.ops:
        place(op)
    module.ops = order
