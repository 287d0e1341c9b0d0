"""What a contraction order costs, and the baseline order.

A ``CostModel`` says what ``order-contractions`` minimizes (see
``passes.contraction.search``) and is recorded with every schedule the IR holds, so a
report can cost the schedule again without searching.  ``naive_schedule`` is the
left-to-right order that reports compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UsageError
from .network import TensorNetwork
from .schedule import Schedule, Tree

OBJECTIVES = ("macs", "memory", "cycles")
PRECONTRACT_MODES = ("auto", "never", "always")


@dataclass(frozen=True)
class CostModel:
    """What the search minimizes: ``macs``, ``memory`` (the peak intermediate) or
    ``cycles`` on ``pes`` lanes with ``overhead`` cycles per step (the objectives are
    spelled out in ``passes.contraction.search``)."""

    objective: str = "macs"
    pes: int = 64
    overhead: int = 8

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise UsageError(f"contraction cost '{self.objective}' is not one of {', '.join(OBJECTIVES)}")
        if self.pes < 1 or self.overhead < 0:
            raise UsageError(f"contraction cost model needs pes >= 1 and overhead >= 0, "
                             f"got pes={self.pes} overhead={self.overhead}")

    def step_cycles(self, macs: int) -> int:
        return -(-macs // self.pes) + self.overhead

    def key(self, schedule: Schedule) -> tuple[int, ...]:
        """The value the search minimizes, compared lexicographically."""
        tail = (schedule.params, schedule.compile_macs)
        if self.objective == "macs":
            return (schedule.macs, *tail)
        if self.objective == "memory":
            return (schedule.peak, schedule.macs, *tail)
        return (schedule.cycles(self.pes, self.overhead), schedule.macs, *tail)


def naive_tree(network: TensorNetwork) -> Tree:
    """Left to right over the tensors as listed: ``((t0 t1) t2) …``."""
    tree: Tree = 0
    for index in range(1, len(network.tensors)):
        tree = (tree, index)
    return tree


def naive_schedule(network: TensorNetwork) -> Schedule:
    """The naive order, every step at run time (for a TT map: rebuild W, then multiply)."""
    return Schedule.from_tree(network, naive_tree(network), fold_weights=False)
