"""Convenience for creating ops with fresh result names and inferred result types."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .core import Module, Op, Value
from .ops import OP_SPECS, const_values
from .types import TensorType


class Builder:
    """Creates ops in ``module``, appended at the end or before ``insert_before``."""

    def __init__(self, module: Module, insert_before: Op | None = None):
        self.module = module
        self.insert_before = insert_before
        self._taken = {v.name for v in module.values()}

    def name(self, hint: str) -> str:
        """``hint`` itself if unused, else ``hint_1``, ``hint_2``, ... (any string is a
        valid name; the printer quotes names that are not plain identifiers)."""
        base = hint or "v"
        name, counter = base, 0
        while name in self._taken:
            counter += 1
            name = f"{base}_{counter}"
        self._taken.add(name)
        return name

    def input(self, hint: str, type: TensorType) -> Value:
        value = Value(self.name(hint), type)
        self.module.inputs.append(value)
        return value

    def op(
        self,
        kind: str,
        operands: Sequence[Value | None] = (),
        attrs: dict[str, Any] | None = None,
        *,
        loc: str = "",
        names: Sequence[str] | None = None,
        types: Sequence[TensorType] | None = None,
    ) -> Op:
        """Create an op; result types are inferred unless ``types`` is given."""
        spec = OP_SPECS[kind]
        full_attrs = {k: v for k, v in spec.attrs.items() if k not in (attrs or {})}
        full_attrs.update(attrs or {})
        op = Op(kind, operands, [], full_attrs, loc)
        if types is None:
            consts = const_values(o.producer for o in op.inputs if o.producer is not None)
            types = spec.infer(op, consts)
        hints = names or [loc or kind] * len(types)
        op.results = [Value(self.name(h), t, op) for h, t in zip(hints, types)]
        if self.insert_before is None:
            self.module.ops.append(op)
        else:
            self.module.ops.insert(self.module.ops.index(self.insert_before), op)
        return op

    def const(self, array: np.ndarray, hint: str = "const", loc: str = "") -> Value:
        return self.op("const", [], {"value": np.asarray(array)}, loc=loc, names=[hint]).result
