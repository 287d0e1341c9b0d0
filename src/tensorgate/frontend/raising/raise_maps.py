"""Raise tensorized linear maps: an input contracted with constant cores through einsum
and matmul/reshape/transpose chains becomes one ``linear`` op holding a ``tt``, ``bt``
or ``ht`` map built from the cores themselves (no re-decomposition).

For every contraction with constants (``einsum``, ``matmul``, ``linear`` with a dense
matrix) the rewrite walks back through layout ops and contractions to the *root*, the
value the map is applied to, then forward through everything linear in the root: layout
ops, contractions with constants, sums of such values (the blocks of a BT map) and
constants added last (the bias).  That *region* must end in one value of shape
``root.shape[:-1] + [M]``; its tensor network (``network.Network``) is matched against
the formats (``formats.match_map``) and the region is replaced by ``linear(root)``,
whose result keeps the final value's name.  Maps equal to one raised before (the same
cores applied at every time step) are shared.

A region with more than one constant, or with an einsum, that cannot be raised stays as
it is (the generic ops run in the NumPy runtime) and yields a note saying why; plain
dense layers are left alone silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir.core import Module, Op, Value
from ...ir.linear_map import DenseMap, LinearMap
from .formats import match_map
from .network import Network, Traced, matmul_equation
from .notes import Notes, NotRaised, place_of
from .rewrite import LAYOUT_OPS, constant_array, remove_dead

CONTRACTIONS = ("einsum", "matmul", "linear")


def raise_maps(module: Module, notes: Notes) -> None:
    """Rewrite ``module`` in place; adds to ``notes`` the regions left as they were.

    The root is the earliest value on the walk back from a contraction that gives a
    clean raise (a layout op right after the true input, as in ``x[t:t+1].squeeze(0)``,
    is walked back over too); if none does, the earliest one's failures are noted."""
    raised: list[LinearMap] = []
    examined: set[int] = set()
    for op in list(module.ops):
        if id(op) in examined or op not in module.ops or _applied_operand(op) is None:
            continue
        regions = []
        for root in _roots_of(_applied_operand(op)):
            regions.append(_Region.grow(module, root))
            regions[-1].plan(raised)
            if regions[-1].maps and not regions[-1].failures:
                break
        region = regions[-1] if regions[-1].maps and not regions[-1].failures else regions[0]
        examined.update(id(o) for r in regions for o in r.ops)
        examined.add(id(op))
        region.apply(raised, notes)


def _applied_operand(op: Op) -> Value | None:
    """The one non-constant operand of a contraction whose other operands are constant."""
    if op.kind not in CONTRACTIONS:
        return None
    if op.kind == "linear":
        return op.operands[0] if isinstance(op.attrs["weight"], DenseMap) else None
    dynamic = [v for v in op.operands if constant_array(v) is None]
    return dynamic[0] if len(dynamic) == 1 and len(op.operands) > 1 else None


def _roots_of(value: Value) -> list[Value]:
    """The values met walking back through layout ops and contractions with
    constants, earliest first."""
    path = [value]
    while value.producer is not None:
        op = value.producer
        if op.kind in LAYOUT_OPS and constant_array(op.operands[0]) is None:
            value = op.operands[0]
        elif _applied_operand(op) is not None:
            value = _applied_operand(op)
        else:
            break
        path.append(value)
    return path[::-1]


@dataclass
class _Region:
    """The ops linear in ``root`` and what each of their results is (``Traced``)."""

    module: Module
    root: Value
    traced: dict[int, Traced] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    failure: NotRaised | None = None
    maps: list[tuple[Value, LinearMap, np.ndarray | None]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (place, reason)

    @classmethod
    def grow(cls, module: Module, root: Value) -> "_Region":
        region = cls(module, root)
        try:
            region.traced[id(root)] = Traced([Network.start(root.type)])
        except NotRaised as exc:
            region.failure = NotRaised(str(exc), root.producer)
            return region
        symbolic = {dim: f"batch{k}" for k, dim in enumerate(root.type.shape[:-1])
                    if isinstance(dim, str) and dim != "?"}
        for op in module.ops:
            if not any(id(v) in region.traced for v in op.inputs):
                continue
            try:
                result = region._step(op, symbolic)
            except NotRaised as exc:
                region.failure = region.failure or NotRaised(str(exc), op)
                continue
            if result is not None:
                region.traced[id(op.results[0])] = result
                region.ops.append(op)
        return region

    def _step(self, op: Op, symbolic: dict[str, str]) -> Traced | None:
        """What ``op``'s result is, or ``None`` if ``op`` is not linear in the root."""
        ins = [self.traced.get(id(v)) if v is not None else None for v in op.operands]
        x = ins[0]
        if op.kind in ("reshape", "flatten") and x is not None:
            return x.map(lambda net: net.reshape(list(op.results[0].type.shape), symbolic))
        if op.kind == "transpose":
            return x.map(lambda net: net.transpose(op.attrs["perm"]))
        if op.kind == "squeeze":
            return x.map(lambda net: net.squeeze(op.attrs["axes"]))
        if op.kind == "unsqueeze":
            return x.map(lambda net: net.unsqueeze(op.attrs["axes"]))
        if op.kind == "linear" and isinstance(op.attrs["weight"], DenseMap):
            matrix = op.attrs["weight"].matrix
            y = x.map(lambda net: net.einsum("...k,jk->...j", [None, matrix]))
            return y if op.attrs["bias"] is None else y.plus_bias(op.attrs["bias"].reshape(-1))
        if op.kind in ("einsum", "matmul"):
            return self._contraction(op, ins)
        if op.kind == "add":
            if all(t is not None for t in ins):
                return ins[0].plus(ins[1])
            value = x if x is not None else ins[1]
            constant = constant_array(op.operands[1] if x is not None else op.operands[0])
            return value.plus_bias(constant) if constant is not None else None
        return None

    def _contraction(self, op: Op, ins: list[Traced | None]) -> Traced | None:
        if sum(t is not None for t in ins) > 1:
            raise NotRaised("a contraction takes the input twice", op)
        arrays = [None if t is not None else constant_array(v) for t, v in zip(ins, op.operands)]
        if sum(a is None for a in arrays) > 1:
            return None
        (x,) = [t for t in ins if t is not None]
        if op.kind == "einsum":
            equation = op.attrs["equation"]
        else:
            equation = matmul_equation(*(v.type.shape for v in op.operands))
        return x.map(lambda net: net.einsum(equation, arrays))

    def exits(self) -> list[Value]:
        """The traced values (other than the root) used outside the region."""
        inside = {id(op) for op in self.ops}
        used = [v for op in self.module.ops if id(op) not in inside for v in op.inputs] + self.module.outputs
        exits: list[Value] = []
        for value in used:
            if id(value) in self.traced and value is not self.root and value not in exits:
                exits.append(value)
        return exits

    def slice_of(self, value: Value) -> list[Op]:
        """The region's ops ``value`` depends on, in order."""
        needed = {id(value)}
        ops = []
        for op in reversed(self.ops):
            if any(id(r) in needed for r in op.results):
                ops.append(op)
                needed.update(id(v) for v in op.inputs)
        return ops[::-1]

    def plan(self, raised: list[LinearMap]) -> None:
        """Find the map of each value the region computes for the rest of the graph
        (``maps``) and why the others are not maps (``failures``); nothing changes yet."""
        if self.failure is not None:
            if _looks_tensorized(self.ops + [self.failure.where]):
                self.failures.append((place_of(self.ops + [self.failure.where]), str(self.failure)))
            return
        for result in self.exits():
            ops = self.slice_of(result)
            if not _looks_tensorized(ops):
                continue
            try:
                self.maps.append((result, *self._map_of(result, raised)))
            except NotRaised as exc:
                self.failures.append((place_of(ops), str(exc)))

    def _map_of(self, result: Value, raised: list[LinearMap]) -> tuple[LinearMap, np.ndarray | None]:
        traced = self.traced[id(result)]
        linear_map = match_map(traced)
        if linear_map.in_dim != self.root.type.shape[-1] or (linear_map.out_dim,) != result.type.shape[-1:]:
            raise NotRaised(f"the map is {linear_map.out_dim}x{linear_map.in_dim}, applied to "
                            f"{self.root.type} it gives {result.type}")
        linear_map = next((m for m in raised if m == linear_map), linear_map)
        bias = None if traced.bias is None else np.asarray(traced.bias, linear_map.dtype)
        return linear_map, bias

    def apply(self, raised: list[LinearMap], notes: Notes) -> None:
        """Put ``linear(root)`` in the place of each planned value's producer (maps equal
        to one raised before share it) and note the failures."""
        for place, reason in self.failures:
            notes.add("tensorized map", place, reason)
        replaced = []
        for result, linear_map, bias in self.maps:
            if all(m is not linear_map for m in raised):
                raised.append(linear_map)
            producer = result.producer
            self.module.ops[self.module.ops.index(producer)] = Op(
                "linear", [self.root], [result], {"weight": linear_map, "bias": bias}, producer.loc)
            replaced.append(producer)
        if replaced:
            remove_dead(self.module, self.ops + [v.producer for op in replaced for v in op.inputs
                                                 if v.producer is not None])


def _looks_tensorized(ops: list[Op | None]) -> bool:
    """More than one contraction with constants, or an einsum: a note is worth it."""
    ops = [op for op in ops if op is not None]
    return sum(op.kind in CONTRACTIONS for op in ops) > 1 or any(op.kind == "einsum" for op in ops)
