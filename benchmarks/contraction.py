"""Contraction ordering on the reference configurations: MACs per time step, side by side.

For each decomposed map (the input map of one LSTM gate unless stated) and each
workload (``rows`` input vectors per application: the batch, times the time steps
when the input projection of a whole sequence runs as one batched step):

* naive: the operands contracted left to right as written, ``((G1 G2) … Gd) x``
  (it rebuilds W on every application);
* chosen: ``order-contractions`` with ``cost=macs``, without and with precontraction;
* opt_einsum: the MACs of opt_einsum's ``optimal`` path (exhaustive search);
* dense: the MACs of the uncompressed matrix product;
* peak: the largest intermediate of the chosen order; params: the weights it stores;
* search: wall time of the search (target: under 1 s per map).

opt_einsum reports FLOPs: 2 per MAC for a step that sums an index, and its "naive"
figure is one single einsum over all indices at once (the 7.5 GFLOP of the issue),
not a pairwise order; both are printed below the table for reference.

    python benchmarks/contraction.py [--batch B] [--steps T]
"""

from __future__ import annotations

import argparse
import sys

import opt_einsum
from rich.console import Console
from rich.table import Table

from tensorgate.ir.contraction import (
    CostModel, TensorNetwork, naive_schedule, network_for_bt, network_for_ht, network_for_tt,
)
from tensorgate.passes.contraction import opt_einsum_schedule, order_contractions

SEARCH_BUDGET_S = 1.0
FL_TT = ([4, 4, 4, 6], [16, 8, 9, 53], [1, 4, 4, 4, 1])
HT_RANKS = {(0,): 4, (1,): 4, (2,): 4, (3,): 4, (0, 1): 4, (2, 3): 4}


def configurations(rows: int) -> list[tuple[str, TensorNetwork]]:
    """(name, network) for the paper configurations at ``rows`` input vectors per application."""
    return [
        ("FL-TT-LSTM gate 384x61056 TT r4", network_for_tt(*FL_TT, batch=rows)),
        ("TT-LSTM 1024x57600 TT r4", network_for_tt([16, 4, 4, 4], [8, 20, 20, 18], [1, 4, 4, 4, 1], rows)),
        ("BT-LSTM 1024x57600 BT R4 N2", network_for_bt([16, 4, 4, 4], [8, 20, 20, 18], [4] * 4, 2, rows)),
        ("HT 1024x57600 r4 (balanced)", network_for_ht([16, 4, 4, 4], [8, 20, 20, 18], [[0, 1], [2, 3]],
                                                       HT_RANKS, rows)),
    ]


def fmt(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="sequences per batch for the batched workload")
    parser.add_argument("--steps", type=int, default=6, help="time steps (UCF11 models use 6 frames)")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 160))
    table = Table(title="MACs per time step (lower is better)")
    for column in ("map", "rows", "precontract", "naive", "chosen", "opt_einsum optimal", "dense",
                   "peak", "params", "search ms"):
        table.add_column(column, justify="left" if column in ("map", "precontract") else "right")
    slowest = 0.0
    workloads = [(1, 1), (args.batch * args.steps, args.steps)]
    for rows, steps in workloads:
        for name, network in configurations(rows):
            optimal = opt_einsum_schedule(network, "optimal")
            for precontract in ("never", "auto"):
                result = order_contractions(network, CostModel("macs"), precontract)
                slowest = max(slowest, result.seconds)
                chosen = result.schedule
                table.add_row(name, str(rows), precontract, fmt(naive_schedule(network).macs / steps),
                              fmt(chosen.macs / steps), fmt(optimal.macs / steps),
                              fmt(network.dense_macs() / steps), fmt(chosen.peak), fmt(chosen.params),
                              f"{result.seconds * 1e3:.1f}")
        table.add_section()
    console.print(table)
    network = configurations(1)[0][1]
    shapes = [network.shape(i) for i in range(len(network.tensors))]
    _, info = opt_einsum.contract_path(network.einsum_equation(), *shapes, shapes=True, optimize="optimal")
    console.print(f"FL-TT-LSTM gate, one input vector, opt_einsum's own figures: optimal path "
                  f"{fmt(int(info.opt_cost))}FLOP, one-shot einsum {fmt(int(info.naive_cost))}FLOP")
    console.print("FL-TT-LSTM gate schedule (cost=macs, precontract=never):")
    for line in order_contractions(network, CostModel("macs"), "never").schedule.describe():
        console.print("  " + line, markup=False)
    verdict = "within" if slowest < SEARCH_BUDGET_S else "OVER"
    console.print(f"slowest search: {slowest * 1e3:.1f} ms ({verdict} the {SEARCH_BUDGET_S:.0f} s budget per map)")
    return 0 if slowest < SEARCH_BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
