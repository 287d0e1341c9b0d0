"""The ``order-contractions`` pass: choose and attach the contraction schedule of every
decomposed linear map.

Applying a TT / BT / HT map is a tensor-network contraction whose cost depends on the
order of its pairwise steps (for one FL-TT-LSTM gate: 2.1 M MACs per input vector in
the best order, 118 M left to right).  The order is also the program the accelerator
runs, so the pass writes it into the IR: each decomposed map gets a ``schedule`` meta
entry (``ir/contraction/map_schedule.py``) that the printer shows, the parser checks and
the NumPy runtime executes step by step.

Workload: one application of a recurrent op's (``lstm``, ``gru``, ``rnn``) input map
``w`` covers all time steps of the sequence (the runtime projects the whole input at
once), so it is costed for ``batch × time_steps`` input vectors; the recurrent map ``r``
runs once per time step for ``batch`` vectors; a map of any other op (``linear``) for
``batch`` vectors.
The rows matter: weight-only steps cost the same for any number of rows, data steps
scale with it, so the best order can change with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..ir.contraction.cost import CostModel
from ..ir.core import Module, Op
from ..ir.linear_map import LinearMap
from ..ir.ops import RECURRENT
from ..ir.tensor_formats import TensorizedMap
from .base import Pass, option
from .contraction.maps import search_map_schedule


@dataclass(frozen=True)
class OrderContractions(Pass):
    """For every decomposed map: search the order of its pairwise contractions under a
    cost model (exact dynamic programming on small networks, a documented heuristic
    beyond; see ``passes/contraction/search.py``) and attach it as the map's schedule.
    Dense maps are left alone; a map's previous schedule is replaced."""

    name: ClassVar[str] = "order-contractions"
    doc: ClassVar[str] = "Choose the contraction order of every TT/BT/HT map and attach it as its schedule."

    cost: Literal["macs", "memory", "cycles"] = option(
        "macs", doc="minimize MACs, the peak intermediate, or PE-array cycles")
    precontract: Literal["auto", "never", "always"] = option(
        "auto", doc="contract weight-only cores at compile time: where it lowers the cost, never, or all of them")
    batch: int = option(1, min=1, doc="sequences per batch the cost is computed for")
    time_steps: int | None = option(
        None, min=1, doc="time steps per recurrent input projection (default: the input's static length, else 1)")
    pes: int = option(64, min=1, doc="multiply-accumulate lanes of the PE array (cost=cycles)")
    overhead: int = option(8, min=0, doc="cycles each step costs beyond ceil(macs/pes) (cost=cycles)")

    def run(self, module: Module) -> bool:
        from ..fixedpoint.quant_attrs import require_float

        require_float(module, f"pass '{self.name}'")
        model = CostModel(self.cost, self.pes, self.overhead)
        changed = False
        for op in module.ops:
            for key, value in list(op.attrs.items()):
                maps = value if isinstance(value, list) else [value]
                if not any(is_decomposed(m) for m in maps):
                    continue
                steps = self._time_steps(op) if op.kind in RECURRENT and key == "w" else 1
                scheduled = [self._scheduled(m, steps, model) if is_decomposed(m) else m for m in maps]
                changed |= any(new.meta() != old.meta() for new, old in zip(scheduled, maps))
                op.attrs[key] = scheduled if isinstance(value, list) else scheduled[0]
        return changed

    def _scheduled(self, linear_map: LinearMap, time_steps: int, model: CostModel) -> LinearMap:
        schedule = search_map_schedule(linear_map, self.batch, time_steps, model, self.precontract)
        meta = {**linear_map.meta(), "schedule": schedule.to_meta()}
        scheduled = type(linear_map).from_parts(meta, linear_map.tensors())
        scheduled.schedule.search = schedule.search
        return scheduled

    def _time_steps(self, op: Op) -> int:
        if self.time_steps is not None:
            return self.time_steps
        shape = op.operands[0].type.shape
        length = shape[1] if op.attrs.get("layout", 0) else shape[0]
        return length if isinstance(length, int) else 1


def is_decomposed(value) -> bool:
    """A linear map applied as a tensor network (``tt``, ``bt``, ``ht``)."""
    return isinstance(value, TensorizedMap)
