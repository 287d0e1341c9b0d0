"""The IR: a Module is a list of ops over typed SSA values.

* ``Value``: a name (unique in its module, printed ``%name``), a ``TensorType`` and the
  op that produces it (``None`` for module inputs).
* ``Op``: a ``kind`` (see ``ops.OP_SPECS``), operands (``Value`` or ``None`` for an
  absent optional operand), results, attributes and ``loc``, the name of the source
  node it came from (used in error messages).
* Attribute values are ``int``, ``float``, ``str``, ``bool``, ``None``, lists of
  those, ``np.ndarray`` (tensors) and ``LinearMap`` (or lists of them).

Ops are kept in a valid execution order (every operand is defined before use).
Arrays held in attributes are treated as immutable: passes replace them, never
write into them, so ``Module.copy`` can share them.
"""

from __future__ import annotations

import copy as _copy
import itertools
from typing import Any, Iterable, Iterator

from .types import TensorType


class Value:
    """An SSA value."""

    __slots__ = ("name", "type", "producer")

    def __init__(self, name: str, type: TensorType, producer: "Op | None" = None):
        self.name = name
        self.type = type
        self.producer = producer

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Op:
    """One operation."""

    def __init__(
        self,
        kind: str,
        operands: Iterable["Value | None"],
        results: Iterable[Value],
        attrs: dict[str, Any] | None = None,
        loc: str = "",
    ):
        self.kind = kind
        self.operands: list[Value | None] = list(operands)
        self.results: list[Value] = list(results)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.loc = loc
        for result in self.results:
            result.producer = self

    @property
    def inputs(self) -> list[Value]:
        """The operands that are present."""
        return [v for v in self.operands if v is not None]

    @property
    def result(self) -> Value:
        """The single result (error if the op has several)."""
        if len(self.results) != 1:
            raise ValueError(f"'{self.kind}' has {len(self.results)} results")
        return self.results[0]

    def describe(self) -> str:
        """Short human reference for error messages: kind, first result, source node."""
        where = f" (from node '{self.loc}')" if self.loc else ""
        first = f" %{self.results[0].name}" if self.results else ""
        return f"'{self.kind}'{first}{where}"

    def __repr__(self) -> str:
        return f"<Op {self.describe()}>"


class Module:
    """A function: inputs, ops in execution order, outputs.

    ``notes`` are one-line remarks from the stage that built the module (the frontend
    lists there the parts of a model it left as generic ops, and why; ``decompose`` the
    maps it left dense); ``warnings`` are one-line warnings from it (a declared shape it
    did not follow, a recurrent op it left to a host region).  Neither is part of the IR
    text.  ``imported`` is the module as a pass pipeline first received it, set by the
    pass manager: the reference that distillation and the output-error report compare
    with (in memory only).
    """

    def __init__(self, name: str = "main", inputs=(), ops=(), outputs=()):
        self.name = name
        self.inputs: list[Value] = list(inputs)
        self.ops: list[Op] = list(ops)
        self.outputs: list[Value] = list(outputs)
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.imported: Module | None = None

    def values(self) -> Iterator[Value]:
        yield from self.inputs
        for op in self.ops:
            yield from op.results

    def ops_of(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]

    def users(self, value: Value) -> list[Op]:
        return [op for op in self.ops if any(v is value for v in op.operands)]

    def use_counts(self) -> dict[int, int]:
        """``id(value) -> number of uses`` (operands and module outputs)."""
        counts: dict[int, int] = {}
        for v in itertools.chain((v for op in self.ops for v in op.inputs), self.outputs):
            counts[id(v)] = counts.get(id(v), 0) + 1
        return counts

    def replace_all_uses(self, old: Value, new: Value) -> None:
        for op in self.ops:
            op.operands = [new if v is old else v for v in op.operands]
        self.outputs = [new if v is old else v for v in self.outputs]

    def fresh_name(self, prefix: str = "v") -> str:
        """A value name not used in this module."""
        taken = {v.name for v in self.values()}
        for i in itertools.count():
            name = f"{prefix}{i}" if i or prefix in taken or not prefix else prefix
            if name not in taken:
                return name
        raise AssertionError("unreachable")

    def copy(self, replace: dict[int, "Value"] | None = None) -> "Module":
        """Deep copy of the structure; tensors and maps (immutable) are shared.  ``replace``
        maps ids of values to the values that stand for them in the copy."""
        memo: dict[int, Any] = dict(replace or {})
        if self.imported is not None:
            memo[id(self.imported)] = self.imported
        for op in self.ops:
            for value in op.attrs.values():
                for leaf in value if isinstance(value, list) else [value]:
                    if not isinstance(leaf, (int, float, str, bool, type(None))):
                        memo[id(leaf)] = leaf
        return _copy.deepcopy(self, memo)
