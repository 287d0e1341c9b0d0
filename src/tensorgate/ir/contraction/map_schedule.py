"""Schedules attached to decomposed linear maps (``tt``, ``bt``, ``ht``).

A decomposed map is one tensor network (TT, HT) or one per block (BT), as its
``networks()`` gives them.  ``map_networks`` turns those into ``TensorNetwork``s
with readable labels — ``b`` the batch, ``m1 … md`` the output modes, ``n1 … nd``
the input modes, ``r1, r2, …`` the ranks in order of first appearance — and the
tensors in the map's own order, the input ``x`` last.  Operand ids of the steps
count in that order: ``0 … n-2`` the map's tensors, ``n-1`` the input.

A ``MapSchedule`` is what the map carries in its meta under ``schedule``: plain
data that prints in the IR text and parses back::

    schedule = {batch = 1, time_steps = 6, cost = "macs", precontract = "auto",
                steps = [[[4, 3, ["n4"], ["b", "n1", "n2", "n3", "r3", "m4"], 1465344, 27648, "run"], …]]}

One application covers ``time_steps`` time steps of ``batch`` sequences
(``rows = batch × time_steps`` input vectors: the input projection of a whole
sequence runs as one batched product); ``steps`` lists, per network, the pairwise
steps as ``Step.to_list`` writes them.  Reading it back checks every step against
the map's networks, so an edited schedule is either consistent or rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ...errors import VerifyError
from .cost import OBJECTIVES, PRECONTRACT_MODES, CostModel, naive_schedule
from .network import BATCH, INPUT, NetworkTensor, TensorNetwork
from .schedule import Schedule, Step, execute, fold_weights

META_KEYS = ("batch", "time_steps", "cost", "precontract", "pes", "overhead", "steps")


def map_networks(linear_map, rows: int = 1) -> list[TensorNetwork]:
    """The networks of a decomposed map (``networks()``), relabelled, costed for ``rows`` input vectors."""
    result = []
    for network in linear_map.networks():
        batch, *outputs = network.output
        names = {batch: BATCH}
        names.update((label, f"m{k + 1}") for k, label in enumerate(outputs))
        names.update((label, f"n{k + 1}") for k, label in enumerate(network.terms[0][1:]))
        for term in network.terms[1:]:
            for label in term:
                names.setdefault(label, f"r{len(names) - 2 * len(outputs)}")
        tensors = [NetworkTensor(name, tuple(names[label] for label in term))
                   for name, term in zip(network.names[1:], network.terms[1:])]
        tensors.append(NetworkTensor(INPUT, tuple(names[label] for label in network.terms[0])))
        sizes = {names[label]: size for label, size in network.sizes.items()}
        result.append(TensorNetwork(tensors, {**sizes, BATCH: rows}, [names[label] for label in network.output]))
    return result


@dataclass(frozen=True)
class SearchRecord:
    """How the search that chose a schedule went: ``exact`` or ``heuristic``, and its
    time.  Known only in the process that ran ``order-contractions``: the IR text holds
    no timings, so it stays deterministic."""

    method: str
    seconds: float


class MapSchedule:
    """The schedules of one map's networks and the workload and search options behind them
    (``search``: the record of the search that chose them, when this process ran it)."""

    def __init__(self, schedules: list[Schedule], batch: int, time_steps: int, cost: CostModel,
                 precontract: str, search: SearchRecord | None = None):
        self.schedules = list(schedules)
        self.batch = batch
        self.time_steps = time_steps
        self.cost = cost
        self.precontract = precontract
        self.search = search
        self._stored: list[dict[int, np.ndarray]] | None = None

    @property
    def rows(self) -> int:
        return self.batch * self.time_steps

    def to_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"batch": self.batch, "time_steps": self.time_steps, "cost": self.cost.objective,
                                "precontract": self.precontract}
        if self.cost.objective == "cycles":
            meta.update(pes=self.cost.pes, overhead=self.cost.overhead)
        meta["steps"] = [[step.to_list() for step in schedule.steps] for schedule in self.schedules]
        return meta

    @classmethod
    def from_meta(cls, linear_map, meta: Any) -> "MapSchedule":
        """Read the meta entry back, checking it against the map's networks."""
        where = f"{linear_map.format} map: schedule"
        if not isinstance(meta, Mapping):
            raise VerifyError(f"{where} must be a dictionary, got {meta!r}")
        unknown = sorted(set(meta) - set(META_KEYS))
        missing = [key for key in ("batch", "time_steps", "cost", "precontract", "steps") if key not in meta]
        if unknown or missing:
            raise VerifyError(f"{where}: " + (f"unknown entries {unknown}" if unknown else f"missing {missing}"))
        batch, time_steps = meta["batch"], meta["time_steps"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (batch, time_steps)):
            raise VerifyError(f"{where}: batch {batch!r} and time_steps {time_steps!r} must be positive integers")
        if meta["cost"] not in OBJECTIVES or meta["precontract"] not in PRECONTRACT_MODES:
            raise VerifyError(f"{where}: cost {meta['cost']!r} must be one of {', '.join(OBJECTIVES)} and "
                              f"precontract {meta['precontract']!r} one of {', '.join(PRECONTRACT_MODES)}")
        try:
            cost = CostModel(meta["cost"], **{k: meta[k] for k in ("pes", "overhead") if k in meta})
        except (TypeError, ValueError) as exc:
            raise VerifyError(f"{where}: {exc}") from None
        networks = map_networks(linear_map, batch * time_steps)
        steps = meta["steps"]
        if not isinstance(steps, list) or len(steps) != len(networks):
            raise VerifyError(f"{where}: steps must list one schedule per network ({len(networks)})")
        try:
            schedules = [Schedule(network, [Step.from_list(item) for item in items])
                         for network, items in zip(networks, steps)]
        except VerifyError as exc:
            raise VerifyError(f"{where}: {exc}") from None
        return cls(schedules, batch, time_steps, cost, meta["precontract"])

    def apply(self, linear_map, tensor: np.ndarray) -> np.ndarray:
        """``x[rows, n1 … nd]`` contracted as scheduled; compile steps run once and are kept."""
        if self._stored is None:
            self._stored = [fold_weights(schedule, dict(zip(network.names[1:], network.arrays)))
                            for schedule, network in zip(self.schedules, linear_map.networks())]
        results = [execute(schedule, {INPUT: tensor}, stored)
                   for schedule, stored in zip(self.schedules, self._stored)]
        return sum(results[1:], results[0])

    def macs_per_vector(self) -> int:
        """MACs of the run steps for a single input vector."""
        return sum(schedule.with_batch(1).macs for schedule in self.schedules)

    def report(self, linear_map) -> dict[str, Any]:
        """Per-step costs of this schedule next to the naive order and the dense product.

        Per time step means per ``rows / time_steps = batch`` input vectors, rounded up.
        """
        def per_step(macs: int) -> int:
            return math.ceil(macs / self.time_steps)

        naive = sum(naive_schedule(s.network).macs for s in self.schedules)
        report = {
            "batch": self.batch, "time_steps": self.time_steps, "cost": self.cost.objective,
            "precontract": self.precontract,
            "macs_per_step": {"naive": per_step(naive),
                              "scheduled": per_step(sum(s.macs for s in self.schedules)),
                              "dense": linear_map.out_dim * linear_map.in_dim * self.batch},
            "peak": max(s.peak for s in self.schedules),
            "params": {"map": linear_map.params(), "stored": sum(s.params for s in self.schedules)},
            "compile_macs": sum(s.compile_macs for s in self.schedules),
        }
        if self.cost.objective == "cycles":
            cycles = sum(s.cycles(self.cost.pes, self.cost.overhead) for s in self.schedules)
            report["cycles_per_step"] = per_step(cycles)
        return report
