"""The Verilog accelerator, simulated cycle by cycle with Verilator, on TT-LSTM models.

Models (seeded random weights, ``order-contractions`` then 8-bit ``quantize`` calibrated on
other seeded inputs, batch 1):

* ``tt-h32`` — input 32 = 4·8, hidden 32, one TT map of ranks [1,2,1] for the four gates' W
  (out 128 = 8·16), dense R, 3 steps:
  simulates in well under a second;
* ``fl-tt-lstm`` — the FL-TT-LSTM configuration: input 61056 = 16·8·9·53, hidden
  384 = 4·4·4·6, TT ranks [1,4,4,4,1] per gate on W, dense R, an 11-class dense head;
  1 step (``--steps`` for more; the cycles of a step do not depend on the step);
* ``fl-tt-lstm-stacked`` — the same with one TT map for the four gates' W
  (out 1536 = 4·4·4·24), the smaller schedule the issue names for comparison.

Per model and lane count P (one run each, every ratio from that run): cycles per step,
the MAC bound per step (MACs / P), their ratio, PE utilization over the GEMM cycles (the
contraction steps, from the accelerator's performance counters) and over the whole run,
the cycles per step spent in the cell unit, in elementwise epilogues and in instruction
fetch/sequencing, simulated cycles per second of wall time, on-chip memory bits, and
dense-equivalent GOPS at an assumed 200 MHz: 2 · (MACs per step of the dense model:
4H(I+H) + head) / (cycles per step / 200 MHz), next to the paper's 175.6 GOPS on an XCKU5P
(1,824 DSP slices).  Every run is checked bit for bit against the integer golden model.

Builds of P ≥ 32 have row groups (``isa.row_groups``): a GEMM of few columns runs several
rows at once, each lane group reading A from its own scratchpad replica, so the memory
column grows with them.  What stays serial is the drain: one result written per cycle, so
a GEMM step takes at least rows × columns cycles whatever P is.

Targets: cycles/step ≤ 1.25 × mac_bound + a fixed per-step cell overhead; GEMM
utilization ≥ 80 % at P = 16 and 64; ≥ 1M simulated cycles/s; ≥ 2 × 175.6 GOPS with at
most 128 PEs.

    python benchmarks/accelerator.py [--quick] [--steps T] [--pes 16 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.tensor_formats import TTMap
from tensorgate.ir.types import F32, TensorType
from tensorgate.passes.manager import PassManager
from tensorgate.interpreter import run_fixed
from tensorgate.runtime.simulator import Simulator

CLOCK_HZ = 200e6
PAPER_GOPS = 175.6
RATIO_TARGET, UTILIZATION_TARGET, SIM_SPEED_TARGET, GOPS_FACTOR_TARGET, MAX_PES = 1.25, 0.80, 1e6, 2.0, 128


@dataclass(frozen=True)
class Model:
    name: str
    in_factors: tuple[int, ...]
    out_factors: tuple[int, ...]  # of one gate's W (hidden), or of the four stacked
    rank: int
    steps: int
    stacked: bool = False
    classes: int = 0

    @property
    def inputs(self) -> int:
        return int(np.prod(self.in_factors))

    @property
    def hidden(self) -> int:
        return int(np.prod(self.out_factors)) // (4 if self.stacked else 1)

    def dense_macs_per_step(self) -> int:
        """MACs of one step of the same network with dense maps (W, R and the head)."""
        return 4 * self.hidden * (self.inputs + self.hidden) + self.classes * self.hidden


def tt_map(rng: np.random.Generator, out_factors, in_factors, rank: int) -> TTMap:
    ranks = [1] + [rank] * (len(out_factors) - 1) + [1]
    cores = [(rng.standard_normal((ranks[k], m, n, ranks[k + 1])) / np.sqrt(n * ranks[k])).astype(np.float32)
             for k, (m, n) in enumerate(zip(out_factors, in_factors))]
    return TTMap.from_cores(cores)


def build(model: Model, steps: int) -> Module:
    """``x[T, 1, I] -> lstm (TT W, dense R; both per gate or both stacked) -> [Y_h -> linear head]``."""
    rng = np.random.default_rng(0)
    module = Module(model.name)
    b = Builder(module)
    hidden = model.hidden
    x = b.input("x", TensorType((steps, 1, model.inputs), F32))
    gates = 1 if model.stacked else 4
    w = [tt_map(rng, model.out_factors, model.in_factors, model.rank) for _ in range(gates)]
    r = [DenseMap((rng.standard_normal((4 * hidden // gates, hidden)) / np.sqrt(hidden)).astype(np.float32))
         for _ in range(gates)]
    attrs = {"hidden_size": hidden, "direction": "forward", "w": w, "r": r,
             "bias": (0.1 * rng.standard_normal((1, 8 * hidden))).astype(np.float32)}
    lstm = b.op("lstm", [x, None, None, None], attrs, names=["Y", "Y_h", "Y_c"])
    module.outputs = list(lstm.results)
    if model.classes:
        last = b.op("squeeze", [lstm.results[1]], {"axes": [0]}).result
        head = DenseMap((rng.standard_normal((model.classes, hidden)) / np.sqrt(hidden)).astype(np.float32))
        module.outputs = [b.op("linear", [last], {"weight": head, "bias": np.zeros(model.classes, np.float32)},
                               names=["logits"]).result]
    return module


def quantized(model: Model, steps: int, directory: Path) -> tuple[Module, dict[str, np.ndarray]]:
    module = build(model, steps)
    calibration = directory / f"{model.name}-calibration.npz"
    np.savez(calibration, x=np.random.default_rng(7).standard_normal((steps, 1, model.inputs)).astype(np.float32))
    PassManager.parse(f"order-contractions,quantize{{bits=8 calibration={calibration}}}").run(module)
    return module, {"x": np.random.default_rng(1).standard_normal((steps, 1, model.inputs)).astype(np.float32)}


SMALL = Model("tt-h32", (4, 8), (8, 16), 2, 3, stacked=True)
FL = Model("fl-tt-lstm", (16, 8, 9, 53), (4, 4, 4, 6), 4, 1, classes=11)
FL_STACKED = Model("fl-tt-lstm-stacked", (16, 8, 9, 53), (4, 4, 4, 24), 4, 1, stacked=True, classes=11)


def measure(model: Model, steps: int, pes: int, directory: Path) -> dict:
    module, inputs = quantized(model, steps, directory)
    artifact = write_verilog_artifact(module, directory / f"{model.name}-P{pes}", "quantize", model.name, pes)
    started = time.perf_counter()
    outputs, stats = Simulator(artifact, progress=True).run(inputs, raw=True)
    stats["wall_seconds"] = time.perf_counter() - started
    expected = run_fixed(module, inputs, raw=True)
    stats["bit_exact"] = all(np.array_equal(outputs[k], expected[k]) for k in expected)
    per_step = stats["cycles"] / steps
    stats["gops"] = 2 * model.dense_macs_per_step() / (per_step / CLOCK_HZ) / 1e9
    return stats


def row(model: Model, steps: int, pes: int, stats: dict) -> list[str]:
    per_step = lambda key: stats[key] / steps  # noqa: E731
    bound = stats["mac_bound_cycles"]
    ratio = stats["cycles_per_step"] / bound
    cell_free = (stats["cycles"] - stats["cell_cycles"]) / steps / bound
    return [model.name, str(steps), str(pes), f"{stats['cycles_per_step']:,.0f}", f"{bound:,.0f}",
            f"{ratio:.2f} ({cell_free:.2f})", f"{stats['gemm_utilization']:.0%}", f"{stats['pe_utilization']:.0%}",
            f"{per_step('cell_cycles'):,.0f}", f"{per_step('ew_cycles'):,.0f}", f"{per_step('overhead_cycles'):,.0f}",
            f"{stats['cycles_per_second'] / 1e6:.2f}M", f"{stats['memory_bits'] / 8 / 1024:,.0f} KiB",
            f"{stats['gops']:,.1f} ({stats['gops'] / PAPER_GOPS:.2f}x)", "yes" if stats["bit_exact"] else "NO"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small model")
    parser.add_argument("--steps", type=int, default=None, help="time steps of the FL-TT-LSTM runs (default 1)")
    parser.add_argument("--pes", type=int, nargs="+", default=[16, 64, 128], help="lane counts of the FL runs")
    args = parser.parse_args()
    console = Console(width=200)
    runs = [(SMALL, SMALL.steps, p) for p in (1, 4, 16, 64)]
    if not args.quick:
        steps = args.steps or FL.steps
        runs += [(model, steps, p) for model in (FL, FL_STACKED) for p in args.pes]
    table = Table(title=f"Accelerator, 8-bit, batch 1, GOPS dense-equivalent at {CLOCK_HZ / 1e6:.0f} MHz "
                        f"(paper: {PAPER_GOPS} GOPS)")
    for column in ("model", "T", "P", "cycles/step", "MAC bound/step", "ratio (w/o cell)", "GEMM util",
                   "run util", "cell/step", "EW/step", "fetch/step", "sim cycles/s", "memory", "GOPS", "bit-exact"):
        table.add_column(column, justify="left" if column == "model" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for model, steps, pes in runs:
            stats = measure(model, steps, pes, Path(tmp))
            table.add_row(*row(model, steps, pes, stats))
            console.print(f"{model.name} P={pes}: {stats['cycles']:,} cycles in {stats['wall_seconds']:.1f} s "
                          f"(build {stats['build_seconds']:.1f} s)")
    console.print(table)
    console.print(f"Targets: ratio ≤ {RATIO_TARGET} (+ cell per step), GEMM util ≥ {UTILIZATION_TARGET:.0%} at "
                  f"P = 16 and 64, ≥ {SIM_SPEED_TARGET / 1e6:.0f}M cycles/s, ≥ {GOPS_FACTOR_TARGET:.0f}x "
                  f"{PAPER_GOPS} GOPS with P ≤ {MAX_PES}.")


if __name__ == "__main__":
    main()
