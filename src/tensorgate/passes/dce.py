"""Dead code elimination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..ir.core import Module
from .base import Pass


@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove ops none of whose results is used by another op or a module output.

    Every op is free of side effects, so an unused op can go; removing it may leave
    its operands' producers unused, which one backward sweep also removes.  Module
    inputs stay even when unused: they are the module's interface.
    """

    name: ClassVar[str] = "dce"
    doc: ClassVar[str] = "Remove ops whose results are never used."

    def run(self, module: Module) -> bool:
        uses = module.use_counts()
        kept = []
        for op in reversed(module.ops):
            if any(uses.get(id(result), 0) for result in op.results):
                kept.append(op)
                continue
            for operand in op.inputs:
                uses[id(operand)] -= 1
        if len(kept) == len(module.ops):
            return False
        module.ops = kept[::-1]
        return True
