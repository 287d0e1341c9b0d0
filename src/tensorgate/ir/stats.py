"""Model statistics shared by `inspect`, the manifest and the benchmarks: parameters,
the linear maps, what their contraction schedules cost, and the partition into
tensorgate and host regions with their multiply-accumulates.

Parameter counts follow the papers' convention: the model's weights count (linear
maps, biases, peepholes, real-valued ``const`` tensors a computation uses as weights,
such as a MatMul head's; float, or their integer codes once quantized); what an
exporter adds to run the graph does not: integer tensors
(shapes, indices), float scalars (fill values, scale constants) and tensors that only
feed a recurrent op's initial state (torch writes ``h0 = c0 = 0`` as constants when
the batch is static), directly or through data movement.  ``dense`` counts each linear
map as its full matrix, ``compressed`` as the map's own storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .contraction.map_schedule import MapSchedule
from .core import Module, Op, Value
from .linear_map import LinearMap
from .ops import DATA_MOVEMENT, OP_SPECS, RECURRENT, applies_stacked_r_twice
from .types import FixedType, FloatType


@dataclass
class MapInfo:
    """One linear map of the module, named ``<op result>.<attr>[.<dir>][.<gate>]``."""

    name: str
    op: Op
    map: LinearMap

    def as_dict(self) -> dict:
        dense = self.map.out_dim * self.map.in_dim
        meta = self.map.meta()
        info = {
            "name": self.name,
            "format": self.map.format,
            "shape": [self.map.out_dim, self.map.in_dim],
            "factors": {"out": meta.get("out_factors", [self.map.out_dim]),
                        "in": meta.get("in_factors", [self.map.in_dim])},
            "ranks": meta.get("ranks", []),
            "padding": {"out": meta.get("out_pad", 0), "in": meta.get("in_pad", 0)},
            "params": self.map.params(),
            "compression": round(dense / max(self.map.params(), 1), 3),
            "rel_error": 0.0 if self.map.format == "dense" else getattr(self.map, "rel_error", None),
            "macs": self.map.macs(),
        }
        schedule = getattr(self.map, "schedule", None)
        if schedule is not None:
            scheduled = schedule.report(self.map)
            info["macs_per_step"] = scheduled["macs_per_step"]
            info["peak_intermediate"] = scheduled["peak"]
            info["stored_params"] = scheduled["params"]["stored"]
        return info


@dataclass
class ModelStats:
    maps: list[MapInfo] = field(default_factory=list)
    params_dense: int = 0
    params_compressed: int = 0

    @property
    def compression(self) -> float:
        return self.params_dense / max(self.params_compressed, 1)


WEIGHT_ATTRS = ("value", "bias", "peepholes")
STATE_OPERAND_PREFIX = "initial_"
"""Operands named so (``initial_h``, ``initial_c``) take a recurrence's starting state, not a weight."""
MOVED_OPERANDS = ("x", "xs*")
"""The operands whose elements a data-movement op moves (not its shape or indices)."""


def _weight_count(op: Op, uses: "_Uses") -> int:
    """Weights an op stores outside its linear maps: its biases and peepholes (float, or
    integer codes once quantized), or a ``const``'s real-valued tensor (not a scalar, not
    an integer shape or index tensor, not only an initial state)."""
    if op.kind == "const":
        if not isinstance(op.results[0].type.dtype, (FloatType, FixedType)) or uses.only_initial_state(op.results[0]):
            return 0
        arrays = [op.attrs.get("value")]
    else:
        arrays = [op.attrs.get(key) for key in WEIGHT_ATTRS[1:]]
    return sum(int(a.size) for a in arrays if isinstance(a, np.ndarray) and a.ndim > 0)


class _Uses:
    """Where each value of a module is used: ``(op, operand position)`` pairs, and
    whether the module returns it."""

    def __init__(self, module: Module):
        self.by_value: dict[int, list[tuple[Op, int]]] = {}
        for op in module.ops:
            for position, operand in enumerate(op.operands):
                if operand is not None:
                    self.by_value.setdefault(id(operand), []).append((op, position))
        self.returned = {id(v) for v in module.outputs}

    def only_initial_state(self, value: Value) -> bool:
        """Whether ``value`` is used, and only as an initial state, directly or through data movement."""
        uses = self.by_value.get(id(value), [])
        if not uses or id(value) in self.returned:
            return False
        for op, position in uses:
            if op.kind in DATA_MOVEMENT and _operand_name(op, position) in MOVED_OPERANDS:
                if not all(self.only_initial_state(result) for result in op.results):
                    return False
            elif not _operand_name(op, position).startswith(STATE_OPERAND_PREFIX):
                return False
        return True


def _operand_name(op: Op, position: int) -> str:
    """The spec's name of operand ``position`` (a variadic tail's name for all its operands)."""
    names = OP_SPECS[op.kind].operands if op.kind in OP_SPECS else ()
    if names and names[-1].endswith("*") and position >= len(names) - 1:
        return names[-1]
    return names[position] if position < len(names) else ""


def module_maps(module: Module) -> list[MapInfo]:
    """Every linear map held by an op, with a stable descriptive name."""
    infos = []
    for op in module.ops:
        base = op.results[0].name if op.results else op.kind
        for key, value in op.attrs.items():
            if isinstance(value, LinearMap):
                infos.append(MapInfo(f"{base}.{key}", op, value))
            elif isinstance(value, list) and value and isinstance(value[0], LinearMap):
                infos.extend(MapInfo(f"{base}.{key}.{suffix}", op, m)
                             for suffix, m in zip(_map_suffixes(op, len(value)), value))
    return infos


def _map_suffixes(op: Op, count: int) -> list[str]:
    """A recurrent op's maps by direction (``fwd``, ``rev``, ``bwd``) and, per gate, by
    the gate's ONNX name (LSTM ``i o f c``, GRU ``z r h``); other ops' by position."""
    if op.kind not in RECURRENT:
        return [str(i) for i in range(count)]
    names = {"forward": ["fwd"], "reverse": ["rev"], "bidirectional": ["fwd", "bwd"]}[op.attrs["direction"]]
    if count == len(names):
        return names
    return [f"{d}.{gate}" for d in names for gate in RECURRENT[op.kind].gates]


def model_stats(module: Module) -> ModelStats:
    stats = ModelStats(maps=module_maps(module))
    for info in stats.maps:
        stats.params_dense += info.map.out_dim * info.map.in_dim
        stats.params_compressed += info.map.params()
    uses = _Uses(module)
    other = sum(_weight_count(op, uses) for op in module.ops)
    stats.params_dense += other
    stats.params_compressed += other
    return stats


def recurrent_macs_per_step(op: Op) -> int:
    """MACs of one time step of a recurrent op (``lstm``, ``gru``, ``rnn``) for one batch
    row, all directions: one application of each map of W and of R, two of R where a
    GRU needs them (``ir.ops.applies_stacked_r_twice``)."""
    r_applications = 2 if applies_stacked_r_twice(op) else 1
    return sum(m.macs() for m in op.attrs["w"]) + r_applications * sum(m.macs() for m in op.attrs["r"])


def contraction_report(module: Module) -> dict[str, Any]:
    """``{"maps": [per-map entries], "total": {...}}`` over the scheduled maps of ``module``.

    For every decomposed map that carries a schedule (``order-contractions``), per time
    step: the MACs of the naive left-to-right order, of the schedule, and of the dense
    product (``macs_per_step = {naive, scheduled, dense}``), the peak intermediate and the
    parameters stored before and after precontraction, all read from the schedule the IR
    holds.  Where this process chose the schedule, the entry adds the search's method
    and time (``search_seconds``); a schedule read back from text has no timings.
    """
    entries = []
    for info in module_maps(module):
        schedule = getattr(info.map, "schedule", None)
        if not isinstance(schedule, MapSchedule):
            continue
        entry = {"name": info.name, "format": info.map.format, **schedule.report(info.map)}
        if schedule.search is not None:
            entry["search_seconds"] = schedule.search.seconds
            entry["method"] = schedule.search.method
        entries.append(entry)
    return {"maps": entries, "total": _contraction_total(entries)}


def _contraction_total(entries: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        "macs_per_step": {key: sum(e["macs_per_step"][key] for e in entries) for key in ("naive", "scheduled", "dense")},
        "peak": max((e["peak"] for e in entries), default=0),
        "params": {key: sum(e["params"][key] for e in entries) for key in ("map", "stored")},
    }
    if entries and all("search_seconds" in e for e in entries):
        total["search_seconds"] = sum(e["search_seconds"] for e in entries)
    return total


@dataclass
class Region:
    """One region of a partitioned module: ``host`` (one ``host`` op, run by onnxruntime)
    or ``tensorgate`` (a connected group of compiled ops), and its multiply-accumulates
    per call of the module at its static shapes (``None`` where a shape is symbolic)."""

    kind: str
    ops: list[Op]
    macs: int | None


def op_macs(op: Op) -> int | None:
    """Multiply-accumulates of one call of ``op`` at its static shapes (``None`` if they are not)."""
    if op.kind == "host":
        return op.attrs["macs"]
    if op.kind not in ("linear", "matmul", "einsum") and op.kind not in RECURRENT:
        return 0
    shapes = [v.type.shape for v in op.inputs] + [v.type.shape for v in op.results]
    if not all(isinstance(d, int) for shape in shapes for d in shape):
        return None
    if op.kind == "linear":
        return math.prod(op.operands[0].type.shape[:-1]) * op.attrs["weight"].macs()
    if op.kind in RECURRENT:
        x = op.operands[0].type.shape
        return x[0] * x[1] * recurrent_macs_per_step(op)
    if op.kind == "matmul":
        return math.prod(op.results[0].type.shape) * op.operands[0].type.shape[-1]
    equation = op.attrs["equation"]
    if "." in equation:
        return None
    sizes: dict[str, int] = {}
    for term, value in zip(equation.split("->")[0].split(","), op.operands):
        sizes.update(zip(term, value.type.shape))
    return math.prod(sizes.values())


def partition_regions(module: Module) -> list[Region]:
    """The module's host ops, one region each, and its other ops (constants aside) grouped
    into connected tensorgate regions, in module order of their first op."""
    compiled = [op for op in module.ops if op.kind not in ("host", "const")]
    group = {id(op): id(op) for op in compiled}

    def find(key: int) -> int:
        while group[key] != key:
            group[key] = group[group[key]]
            key = group[key]
        return key

    producer = {id(v): op for op in compiled for v in op.results}
    for op in compiled:
        for value in op.inputs:
            if id(value) in producer:
                group[find(id(producer[id(value)]))] = find(id(op))
    members: dict[int, list[Op]] = {}
    for op in compiled:
        members.setdefault(find(id(op)), []).append(op)
    regions = [Region("host", [op], op.attrs["macs"]) for op in module.ops if op.kind == "host"]
    for ops in members.values():
        counts = [op_macs(op) for op in ops]
        regions.append(Region("tensorgate", ops, None if None in counts else sum(counts)))
    position = {id(op): k for k, op in enumerate(module.ops)}
    return sorted(regions, key=lambda r: position[id(r.ops[0])])


def recurrent_steps(module: Module) -> int | None:
    """The sequence length of the module's first recurrent op (its time steps per call), if static."""
    for op in (op for op in module.ops if op.kind in RECURRENT):
        x = op.operands[0].type.shape
        steps = x[1] if op.attrs["layout"] else x[0]
        return steps if isinstance(steps, int) else None
    return None
