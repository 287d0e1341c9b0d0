"""The ``select-ranks`` pass: choose the ranks of every decomposed map to meet one target.

Targets (exactly one): ``params=N`` — the decomposed maps store at most N parameters in
all; ``compression=X`` — their dense size over their stored size is at least X;
``macs=N`` — one vector through every decomposed map (one time step of an LSTM) costs
at most N multiply-accumulates, each map in its cheapest contraction order;
``cycles=N`` — it costs at most N PE-array cycles on ``pes`` lanes (each contraction
step ``⌈macs/pes⌉ + overhead``, each map in its fastest order, as
``order-contractions{cost=cycles}`` costs it).  Budgets keep the error as low as they
allow.  ``eps=E`` — the error is at most E, with as few parameters as the search finds.

The error is the relative Frobenius error of all decomposed weights together,
``√(Σ‖W − Ŵ‖²) / √(Σ‖W‖²)``, measured against the maps as the pass finds them.  With
``calibration=FILE.npz`` (the module's inputs, as for ``quantize``) it is instead the
relative error of the module's outputs on those inputs, run by the NumPy runtime in
float64, against the outputs of the module as the pass finds it.

Search (greedy, deterministic): every map starts at rank cap 1 — ``max-rank`` for tt and
ht maps, ``tucker-rank`` for bt maps with their number of blocks kept — and each step
raises by one the cap of the map whose raise lowers the squared error most per added
unit of the budget (parameters, MACs or cycles; parameters for ``eps``; a raise that
costs nothing goes first; ties: the first map in module order).  A budget target stops when no raise
fits the budget or lowers the error; ``eps`` stops as soon as the error is at most E.
Each map is re-decomposed from its dense matrix with its own format, factors, padding
and tree, so start from exact or generously truncated maps (``decompose`` without rank
options, or with a large ``max-rank``/small ``eps``); a schedule attached by
``order-contractions`` is dropped, so order contractions afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from ..errors import PassError, PipelineError
from ..ir.contraction.cost import CostModel
from ..ir.core import Module, Op
from ..ir.tensor_formats import BTMap, HTMap, TensorizedMap, TTMap
from .base import Pass, option
from .contraction.maps import search_map_schedule
from .decomposition import (
    Decomposition, Tensorization, bt_als, bt_rank_bounds, ht_rank_bounds, ht_svd, tt_rank_bounds, tt_svd,
)
from .fidelity import run_float64
from .quantization.calibrate import run_samples
from .quantize import load_calibration


@dataclass(frozen=True)
class SelectRanks(Pass):
    """Choose the rank caps of all decomposed maps by a greedy search (see the module doc)."""

    name: ClassVar[str] = "select-ranks"
    doc: ClassVar[str] = "Choose the ranks of every TT/BT/HT map to meet a parameter budget or an error bound."

    params: int | None = option(None, min=1, doc="budget: parameters stored by all decomposed maps together")
    compression: float | None = option(None, doc="budget: their dense size over their stored size, at least")
    macs: int | None = option(None, min=1, doc="budget: multiply-accumulates of one vector through all of them")
    cycles: int | None = option(None, min=1, doc="budget: PE-array cycles of one vector through all of them")
    pes: int = option(64, min=1, doc="multiply-accumulate lanes of the PE array (cycles)")
    overhead: int = option(8, min=0, doc="cycles each contraction step costs beyond ceil(macs/pes) (cycles)")
    eps: float | None = option(None, doc="bound on the relative error (weights, or outputs with calibration)")
    calibration: Path | None = option(None, doc="module inputs (.npz): measure the error on the model's outputs")
    max_rank: int | None = option(None, min=1, doc="the largest cap tried for any map (default: what it allows)")
    iters: int = option(10, min=0, doc="bt: HOOI sweeps per block")

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [key for key in TARGETS if getattr(self, key) is not None]
        if not given:
            raise PipelineError(f"pass '{self.name}': a target is required: params, compression, macs, cycles or eps")
        if len(given) > 1:
            raise PipelineError(f"pass '{self.name}': options {' and '.join(given)} are alternative targets; "
                                "give one")
        if self.compression is not None and self.compression <= 0:
            raise PipelineError(f"pass '{self.name}': option 'compression' must be positive, got {self.compression}")
        if self.eps is not None and not 0 < self.eps < 1:
            raise PipelineError(f"pass '{self.name}': option 'eps' must be in (0, 1), got {self.eps}")

    def run(self, module: Module) -> bool:
        from ..fixedpoint.quant_attrs import require_float

        require_float(module, f"pass '{self.name}'")
        sites = [_Site.of(op, key, index, linear_map, self.max_rank, self.iters)
                 for op, key, index, linear_map in decomposed_maps(module)]
        if not sites:
            return False
        error = self._error_measure(module, sites)
        budget = self._budget(sites)
        caps = greedy_caps(sites, error, budget, self.eps, self._cost())
        for site, cap in zip(sites, caps):
            site.install(site.decomposition(cap).map)
        return any(site.decomposition(cap).map != site.original for site, cap in zip(sites, caps))

    def _budget(self, sites: list["_Site"]) -> int | None:
        if self.compression is not None:
            return math.floor(sum(s.original.out_dim * s.original.in_dim for s in sites) / self.compression)
        return next((getattr(self, key) for key in ("params", "macs", "cycles") if getattr(self, key) is not None),
                    None)

    def _cost(self) -> "Cost":
        """What the budget counts for a site at a cap."""
        if self.macs is not None:
            return Cost("multiply-accumulates", lambda site, cap: site.step_cost(cap, CostModel("macs")))
        if self.cycles is not None:
            model = CostModel("cycles", self.pes, self.overhead)
            return Cost("cycles", lambda site, cap: site.step_cost(cap, model))
        return Cost("parameters", lambda site, cap: site.params(cap))

    def _error_measure(self, module: Module, sites: list["_Site"]) -> Callable[[list[int]], float]:
        if self.calibration is None:
            return WeightError(sites)
        return OutputError(module, sites, load_calibration(self.calibration, module))


TARGETS = ("params", "compression", "macs", "cycles", "eps")


@dataclass(frozen=True)
class Cost:
    """What a budget counts (``unit``), and its amount for a site at a cap."""

    unit: str
    of: Callable[["_Site", int], int]


def decomposed_maps(module: Module) -> list[tuple[Op, str, int | None, TensorizedMap]]:
    """``(op, attribute, list index or None, map)`` of every decomposed map, in module order."""
    found = []
    for op in module.ops:
        for key, value in op.attrs.items():
            if isinstance(value, TensorizedMap):
                found.append((op, key, None, value))
            elif isinstance(value, list):
                found.extend((op, key, i, m) for i, m in enumerate(value) if isinstance(m, TensorizedMap))
    return found


@dataclass
class _Site:
    """One decomposed map of the module, its dense matrix and its decompositions by cap."""

    op: Op
    key: str
    index: int | None
    original: TensorizedMap
    limit: int
    norm_sq: float
    decompose: Callable[[int], Decomposition]
    cache: dict[int, Decomposition] = field(default_factory=dict)

    @classmethod
    def of(cls, op: Op, key: str, index: int | None, linear_map: TensorizedMap, max_rank: int | None,
           iters: int) -> "_Site":
        if linear_map.dtype.kind != "f":
            where = f"{op.describe()}: map '{key}'" + ("" if index is None else f" #{index}")
            raise PassError(f"{where} holds {linear_map.dtype} codes: select ranks before quantize")
        meta = linear_map.meta()
        tensorization = Tensorization(tuple(meta["out_factors"]), tuple(meta["in_factors"]),
                                      meta.get("out_pad", 0), meta.get("in_pad", 0))
        dense = linear_map.astype(np.float64).to_dense()
        matrix = dense.astype(linear_map.dtype)  # the re-decomposed cores keep the map's dtype
        bound, decompose = _decomposer(linear_map, tensorization, iters)
        return cls(op, key, index, linear_map, min(bound, max_rank or bound), float(np.sum(dense**2)),
                   lambda cap: decompose(matrix, cap))

    def decomposition(self, cap: int) -> Decomposition:
        if cap not in self.cache:
            self.cache[cap] = self.decompose(cap)
        return self.cache[cap]

    def params(self, cap: int) -> int:
        return self.decomposition(cap).map.params()

    def step_cost(self, cap: int, model: CostModel) -> int:
        """MACs (``model`` macs) or cycles (cycles) of one vector through the map at ``cap``,
        in its cheapest contraction order under ``model``."""
        schedule = search_map_schedule(self.decomposition(cap).map, 1, 1, model, "never")
        if model.objective == "cycles":
            return sum(s.cycles(model.pes, model.overhead) for s in schedule.schedules)
        return schedule.macs_per_vector()

    def next_cap(self, cap: int) -> int | None:
        """The next cap above ``cap`` that changes the map (stores more), if any."""
        for higher in range(cap + 1, self.limit + 1):
            if self.params(higher) != self.params(cap):
                return higher
        return None

    def install(self, linear_map: TensorizedMap) -> None:
        if self.index is None:
            self.op.attrs[self.key] = linear_map
        else:
            maps = list(self.op.attrs[self.key])
            maps[self.index] = linear_map
            self.op.attrs[self.key] = maps


def _decomposer(linear_map: TensorizedMap, tensorization: Tensorization,
                iters: int) -> tuple[int, Callable[[np.ndarray, int], Decomposition]]:
    """The largest cap that can change ``linear_map``'s decomposition, and how to
    decompose a matrix like it (same format, factors, padding, tree, blocks) under a cap."""
    if isinstance(linear_map, TTMap):
        return max(tt_rank_bounds(tensorization)), lambda m, cap: tt_svd(m, tensorization, max_rank=cap)
    if isinstance(linear_map, HTMap):
        tree = linear_map.tree
        return (max(ht_rank_bounds(tensorization, tree)),
                lambda m, cap: ht_svd(m, tensorization, tree=tree, max_rank=cap))
    if isinstance(linear_map, BTMap):
        blocks = len(linear_map.blocks)
        return (max(bt_rank_bounds(tensorization)),
                lambda m, cap: bt_als(m, tensorization, blocks=blocks, tucker_rank=cap, iters=iters))
    raise PassError(f"select-ranks does not know the '{linear_map.format}' format")


class WeightError:
    """Relative Frobenius error of all decomposed weights together, for given caps."""

    def __init__(self, sites: list[_Site]):
        self.sites = sites
        self.total_sq = sum(site.norm_sq for site in sites)

    def __call__(self, caps: list[int]) -> float:
        if self.total_sq == 0:
            return 0.0
        lost = sum((site.decomposition(cap).error ** 2) * site.norm_sq for site, cap in zip(self.sites, caps))
        return math.sqrt(lost / self.total_sq)


class OutputError:
    """Relative error of the module's float outputs on calibration inputs, for given caps,
    against the module's outputs as the pass found it."""

    def __init__(self, module: Module, sites: list[_Site], inputs: dict[str, np.ndarray]):
        self.module, self.sites, self.inputs = module, sites, inputs
        self.reference = self._outputs()
        self.total_sq = sum(float(np.sum(y**2)) for y in self.reference)

    def _outputs(self) -> list[np.ndarray]:
        outputs = run_samples(run_float64, self.module, self.inputs)
        return [y for y in outputs.values() if y.dtype.kind == "f"]

    def __call__(self, caps: list[int]) -> float:
        for site, cap in zip(self.sites, caps):
            site.install(site.decomposition(cap).map)
        try:
            outputs = self._outputs()
        finally:
            for site in self.sites:
                site.install(site.original)
        if self.total_sq == 0:
            return 0.0
        lost = sum(float(np.sum((y - ref) ** 2)) for y, ref in zip(outputs, self.reference))
        return math.sqrt(lost / self.total_sq)


def greedy_caps(sites: list[_Site], error: Callable[[list[int]], float], budget: int | None,
                eps: float | None, cost: Cost | None = None) -> list[int]:
    """The caps the greedy search settles on (see the module doc); ``cost`` is what the
    budget counts (default: parameters)."""
    cost = cost or Cost("parameters", lambda site, cap: site.params(cap))
    caps = [1] * len(sites)
    spent = sum(cost.of(site, 1) for site in sites)
    if budget is not None and spent > budget:
        raise PassError(f"the budget of {budget:,} {cost.unit} is below the {spent:,} that the decomposed maps "
                        "need at rank 1")
    current = error(caps)
    while eps is None or current > eps:
        best = None
        for i, site in enumerate(sites):
            higher = site.next_cap(caps[i])
            if higher is None:
                continue
            added = cost.of(site, higher) - cost.of(site, caps[i])
            if budget is not None and spent + added > budget:
                continue
            trial = caps[:i] + [higher] + caps[i + 1:]
            trial_error = error(trial)
            lowered = current**2 - trial_error**2
            gain = lowered / added if added > 0 else (math.inf if lowered > 0 else lowered)
            if best is None or gain > best[0]:
                best = (gain, trial, trial_error, added)
        if best is None or budget is not None and best[0] <= 0:
            break
        _, caps, current, added = best
        spent += added
    if eps is not None and current > eps:
        raise PassError(f"eps={eps} is out of reach: the error is still {current:.3g} with every map at its "
                        f"largest cap ({', '.join(str(s.limit) for s in sites)})")
    return caps
