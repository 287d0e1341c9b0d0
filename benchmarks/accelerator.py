"""The Verilog accelerator, simulated cycle by cycle with Verilator, on TT-LSTM and TT-GRU models.

Models (seeded random weights, ``order-contractions`` then 8-bit ``quantize`` calibrated on
other seeded inputs, batch 1):

* ``tt-h32`` — input 32 = 4·8, hidden 32, one TT map of ranks [1,2,1] for the four gates' W
  (out 128 = 8·16), dense R, 3 steps:
  simulates in well under a second;
* ``fl-tt-lstm`` — the FL-TT-LSTM configuration: input 61056 = 16·8·9·53, hidden
  384 = 4·4·4·6, TT ranks [1,4,4,4,1] per gate on W, dense R, an 11-class dense head;
  1 step (``--steps`` for more; the cycles of a step do not depend on the step);
* ``fl-tt-lstm-stacked`` — the same with one TT map for the four gates' W
  (out 1536 = 4·4·4·24), the smaller schedule the issue names for comparison;
* ``tt-gru-h32`` / ``tt-gru-lbr0`` — ``tt-h32`` as a GRU (one TT map for the three
  gates' W, out 96 = 8·12), with ``linear_before_reset`` 1 (torch's form) and 0 (r ⊙ h is
  a cell step before the candidate's R_h GEMM);
* ``fl-tt-gru`` — the FL-TT-LSTM configuration as a GRU (``linear_before_reset=1``): TT
  ranks [1,4,4,4,1] per gate on W, dense R, the 11-class head.

Per model and lane count P (one run each, every ratio from that run): cycles per step,
the MAC bound per step (MACs / P), their ratio, PE utilization over the GEMM cycles (the
contraction steps, from the accelerator's performance counters) and over the whole run,
the cycles per step spent in the cell unit, in elementwise epilogues and in instruction
fetch/sequencing and the INPUT instructions' stream (``fetch/step``: a streamed step's
input codes, up to 4 a cycle, ``isa.input_pack``), simulated cycles per second of wall time, on-chip memory bits, and
dense-equivalent GOPS at an assumed 200 MHz: 2 · (MACs per step of the dense model:
gH(I+H) + head, g = 4 gates for an LSTM, 3 for a GRU) / (cycles per step / 200 MHz), next
to the paper's 175.6 GOPS on an XCKU5P (1,824 DSP slices).  Every run is checked bit for
bit against the integer golden model.

Builds of P ≥ 16 have row groups and builds of P ≥ 64 drain lanes (``isa.row_groups``,
``isa.drain_lanes``): a GEMM of few columns runs several rows at once on groups of P/G lanes
that take its columns in tiles, each group reading A through its own read port of the
banked scratchpad, and the drain narrows and writes up to 4 results a cycle through its
write ports, so a step of 16-24 columns fills the lanes and a K of 36 does not wait on the
drain.  The memory column counts the scratchpad once per copy (operand and init reads),
whatever the groups.

Targets: cycles/step ≤ 1.25 × mac_bound + a fixed per-step cell overhead; GEMM
utilization ≥ 80 % at P = 16 and 64; ≥ 1M simulated cycles/s; ≥ 2 × 175.6 GOPS with at
most 128 PEs.

``--synth`` adds the hardware that is real (``tensorgate synth``): the demo accelerator at
P = 16 (the demo's LSTM 8->16 compressed as the demo does, TT rank 4, 8-bit; not
fine-tuned, which changes weights, not the build) placed and routed on an ECP5-85k by
nextpnr at ``--freq``, and the FL-TT-LSTM exported with T = 6 frames at P = 16 and 64
synthesized by yosys for the XCKU5P.  No place-and-route for the XCKU5P is available
here, so its clock is the ECP5 Fmax of the same RTL, a floor.  The closing table gives
per build the resources, the fit, the clock, the simulated cycles per step and the
dense-equivalent GOPS at that measured clock; the GOPS column of the first table becomes
"at the measured floor clock" beside "at an assumed 200 MHz".  Syntheses of the FL builds
take many minutes; ``--synth-dir DIR`` keeps the artifacts and their ``synth.json``, and a
build whose ``synth.json`` is there is not synthesized again.

    python benchmarks/accelerator.py [--quick] [--steps T] [--pes 16 64] [--models NAME ..] [--synth [--synth-dir DIR]]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.demo import COMPRESS_PIPELINE, HARDWARE_PIPELINE, demo_files
from tensorgate.explore import without_trailing_softmax
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_fixed
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.tensor_formats import TTMap
from tensorgate.ir.types import F32, TensorType
from tensorgate.passes.manager import PassManager
from tensorgate.runtime.simulator import Simulator
from tensorgate.runtime.synthesis import (
    DEVICES,
    SYNTH_JSON,
    SynthOptions,
    kind_counts,
    summary_table,
    synthesize,
    timing_lines,
)

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
    cell: str = "lstm"
    linear_before_reset: int = 1

    @property
    def gates(self) -> int:
        return 4 if self.cell == "lstm" else 3

    @property
    def inputs(self) -> int:
        return int(np.prod(self.in_factors))

    @property
    def hidden(self) -> int:
        return int(np.prod(self.out_factors)) // (self.gates if self.stacked else 1)

    def dense_macs_per_step(self) -> int:
        """MACs of one step of the same network with dense maps (W, R and the head)."""
        return self.gates * self.hidden * (self.inputs + self.hidden) + self.classes * self.hidden


def tt_map(rng: np.random.Generator, out_factors, in_factors, rank: int) -> TTMap:
    ranks = [1] + [rank] * (len(out_factors) - 1) + [1]
    cores = [(rng.standard_normal((ranks[k], m, n, ranks[k + 1])) / np.sqrt(n * ranks[k])).astype(np.float32)
             for k, (m, n) in enumerate(zip(out_factors, in_factors))]
    return TTMap.from_cores(cores)


def build(model: Model, steps: int) -> Module:
    """``x[T, 1, I] -> lstm or gru (TT W, dense R; both per gate or both stacked) -> [Y_h -> linear head]``."""
    rng = np.random.default_rng(0)
    module = Module(model.name)
    b = Builder(module)
    hidden = model.hidden
    x = b.input("x", TensorType((steps, 1, model.inputs), F32))
    maps = 1 if model.stacked else model.gates
    w = [tt_map(rng, model.out_factors, model.in_factors, model.rank) for _ in range(maps)]
    r = [DenseMap((rng.standard_normal((model.gates * hidden // maps, hidden)) / np.sqrt(hidden)).astype(np.float32))
         for _ in range(maps)]
    attrs = {"hidden_size": hidden, "direction": "forward", "w": w, "r": r,
             "bias": (0.1 * rng.standard_normal((1, 2 * model.gates * hidden))).astype(np.float32)}
    if model.cell == "lstm":
        recurrent = b.op("lstm", [x, None, None, None], attrs, names=["Y", "Y_h", "Y_c"])
    else:
        attrs["linear_before_reset"] = model.linear_before_reset
        recurrent = b.op("gru", [x, None, None], attrs, names=["Y", "Y_h"])
    module.outputs = list(recurrent.results)
    if model.classes:
        last = b.op("squeeze", [recurrent.results[1]], {"axes": [0]}).result
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
FL_FRAMES = 6
"""Frames of the FL-TT-LSTM as the paper runs it (and torch exports it): the synthesized builds."""
FL_STACKED = Model("fl-tt-lstm-stacked", (16, 8, 9, 53), (4, 4, 4, 24), 4, 1, stacked=True, classes=11)
SMALL_GRU = Model("tt-gru-h32", (4, 8), (8, 12), 2, 3, stacked=True, cell="gru")
SMALL_GRU_LBR0 = Model("tt-gru-lbr0", (4, 8), (8, 12), 2, 3, stacked=True, cell="gru", linear_before_reset=0)
FL_GRU = Model("fl-tt-gru", (16, 8, 9, 53), (4, 4, 4, 6), 4, 1, classes=11, cell="gru")


SMALL_MODELS = (SMALL, SMALL_GRU, SMALL_GRU_LBR0)
FL_MODELS = (FL, FL_STACKED, FL_GRU)


def measure(model: Model, steps: int, pes: int, directory: Path) -> dict:
    module, inputs = quantized(model, steps, directory)
    artifact = write_verilog_artifact(module, directory / f"{model.name}-P{pes}", "quantize", model.name, pes)
    stats = simulate(artifact, module, inputs)
    stats["gops"] = gops(model.dense_macs_per_step(), stats["cycles"] / steps, CLOCK_HZ)
    return stats


def simulate(artifact: Path, module: Module, inputs: dict[str, np.ndarray]) -> dict:
    """One simulation of ``artifact``: its statistics, wall time and whether it equals the golden model."""
    started = time.perf_counter()
    outputs, stats = Simulator(artifact, progress=True).run(inputs, raw=True)
    stats["wall_seconds"] = time.perf_counter() - started
    expected = run_fixed(module, inputs, raw=True)
    stats["bit_exact"] = all(np.array_equal(outputs[k], expected[k]) for k in expected)
    return stats


def gops(dense_macs_per_step: int, cycles_per_step: float, clock_hz: float) -> float:
    """Dense-equivalent throughput: two operations per MAC of the dense model, per step time."""
    return 2 * dense_macs_per_step / (cycles_per_step / clock_hz) / 1e9


@dataclass(frozen=True)
class SynthRun:
    """One build of the closing table: its artifact, the device, and what it measured."""

    config: str
    artifact: Path
    device: str
    dense_macs_per_step: int
    steps: int
    module: Module
    inputs: dict


def fl_build(pes: int, directory: Path) -> SynthRun:
    """FL-TT-LSTM exported with T = 6 frames, 8-bit, at P lanes."""
    steps = FL_FRAMES
    path = directory / f"fl-tt-lstm-T{steps}-P{pes}"
    module, inputs = quantized(FL, steps, directory)
    if not (path / SYNTH_JSON).is_file():
        write_verilog_artifact(module, path, "quantize", FL.name, pes)
    return SynthRun(f"FL-TT-LSTM T={steps} P={pes}", path, "xcku5p", FL.dense_macs_per_step(), steps, module, inputs)


def demo_build(pes: int, directory: Path) -> SynthRun:
    """The demo accelerator: the demo's LSTM compressed and quantized as the demo does (not fine-tuned)."""
    model_path, inputs_path = demo_files()
    module = import_onnx(model_path)
    PassManager.parse(f"canonicalize, dce, {COMPRESS_PIPELINE}").run(module)
    logits, _ = without_trailing_softmax(module, "probabilities")
    calibration = directory / "demo-calibration.npz"
    with np.load(inputs_path) as data:
        images = data["image_rows"]
    np.savez(calibration, image_rows=images)
    PassManager.parse(HARDWARE_PIPELINE % (8, calibration)).run(logits)
    path = directory / f"demo-P{pes}"
    if not (path / SYNTH_JSON).is_file():
        write_verilog_artifact(logits, path, "demo", str(model_path), pes)
    steps = images.shape[1]
    dense = json.loads((path / "manifest.json").read_text())["macs_per_step"]["dense"]
    return SynthRun(f"demo P={pes}", path, "ecp5-85k", dense, steps, logits, {"image_rows": images[:1]})


def synthesized(run: SynthRun, freq_mhz: float, console: Console) -> dict:
    """The build's synth.json: read back when the directory holds one, else synthesized now."""
    existing = run.artifact / SYNTH_JSON
    if existing.is_file():
        console.print(f"{run.config}: reusing {existing}")
        return json.loads(existing.read_text())
    started = time.perf_counter()
    with console.status(f"synthesizing {run.config} for {run.device}") as status:
        result = synthesize(run.artifact, DEVICES[run.device], SynthOptions(freq_mhz=freq_mhz),
                            lambda step: status.update(f"{run.config} on {run.device}: {step[:90]}"))
    console.print(f"{run.config} on {run.device}: synthesized in {time.perf_counter() - started:,.0f} s")
    console.print(summary_table(result))
    for line in timing_lines(result):
        console.print(line, markup=False, highlight=False)
    return result


def measured_floor_mhz(results: list[dict]) -> float | None:
    """The lowest placed-and-routed Fmax among the builds nextpnr placed: the clock the
    XCKU5P builds are quoted at (their own place-and-route is not available here)."""
    clocks = [r["timing"]["fmax_mhz"] for r in results if r.get("timing") and r["timing"].get("fmax_mhz")]
    return min(clocks, default=None)


def closing_row(run: SynthRun, result: dict, cycles_per_step: float, floor_mhz: float | None) -> list[str]:
    columns = kind_counts(DEVICES[run.device], result["resources"])

    def count(kind: str) -> str:
        return "-" if columns[kind] is None else f"{columns[kind]:,.1f}".removesuffix(".0")

    placed = (result.get("timing") or {}).get("fmax_mhz")
    clock_mhz, clock = (placed, f"{placed:.1f} MHz") if placed else \
        (floor_mhz, f"{floor_mhz:.1f} MHz (ECP5 floor)" if floor_mhz else "-")
    at_clock = f"{gops(run.dense_macs_per_step, cycles_per_step, clock_mhz * 1e6):,.1f}" if clock_mhz else "-"
    return [f"{run.config} on {run.device}", count("lut"), count("ff"), count("dsp"), count("bram"), count("uram"),
            "yes" if result["fit"]["fits"] else "NO", clock, f"{cycles_per_step:,.0f}", at_clock]


def synthesis_section(args, console: Console, directory: Path) -> float | None:
    """Build, simulate and synthesize the closing table's configurations; print it and
    return the measured floor clock (MHz) for the first table's GOPS."""
    runs = [demo_build(16, directory)] + [fl_build(p, directory) for p in args.synth_pes]
    results, cycles = [], []
    for run in runs:
        stats = simulate(run.artifact, run.module, run.inputs)
        cycles.append(stats["cycles"] / run.steps)
        console.print(f"{run.config}: {stats['cycles']:,} cycles for {run.steps} steps, bit-exact "
                      f"{'yes' if stats['bit_exact'] else 'NO'}")
        results.append(synthesized(run, args.freq, console))
    floor = measured_floor_mhz(results)
    table = Table(title=f"Synthesized (yosys; nextpnr on ECP5 at --freq {args.freq:g} MHz): GOPS dense-equivalent "
                        "at the measured clock (XCKU5P: the ECP5 Fmax as a floor)")
    for column in ("config", "LUT", "FF", "DSP", "BRAM36", "URAM", "fits", "Fmax", "cycles/step", "GOPS at Fmax"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for run, result, per_step in zip(runs, results, cycles):
        table.add_row(*closing_row(run, result, per_step, floor))
    console.print(table)
    console.print("BRAM36 column: RAMB36E2 + RAMB18E2 / 2 on the XCKU5P, DP16KD (18 Kbit) on the ECP5; DSP: DSP48E2, "
                  "MULT18X18D; LUT: LUT1-6 and LUT RAM, LUT4 after packing.")
    console.print(f"Targets: fits the XCKU5P at P = 16 and 64; demo P=16 on the ECP5-85k at ≥ 100 MHz; "
                  f"≥ {PAPER_GOPS} GOPS at the measured floor clock.")
    return floor


def row(model: Model, steps: int, pes: int, stats: dict) -> list[str]:
    per_step = lambda key: stats[key] / steps
    bound = stats["mac_bound_cycles"]
    ratio = stats["cycles_per_step"] / bound
    cell_free = (stats["cycles"] - stats["cell_cycles"]) / steps / bound
    return [model.name, str(steps), str(pes), f"{stats['cycles_per_step']:,.0f}", f"{bound:,.0f}",
            f"{ratio:.2f} ({cell_free:.2f})", f"{stats['gemm_utilization']:.0%}", f"{stats['pe_utilization']:.0%}",
            f"{per_step('cell_cycles'):,.0f}", f"{per_step('ew_cycles'):,.0f}", f"{per_step('overhead_cycles'):,.0f}",
            f"{stats['cycles_per_second'] / 1e6:.2f}M", f"{stats['memory_bits'] / 8 / 1024:,.0f} KiB",
            f"{stats['gops']:,.1f} ({stats['gops'] / PAPER_GOPS:.2f}x)", "yes" if stats["bit_exact"] else "NO"]


def floor_gops(stats: dict, floor_mhz: float | None) -> str:
    if floor_mhz is None:
        return "-"
    at_floor = stats["gops"] * floor_mhz * 1e6 / CLOCK_HZ
    return f"{at_floor:,.1f} ({at_floor / PAPER_GOPS:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small models")
    parser.add_argument("--steps", type=int, default=None, help="time steps of the FL-TT-LSTM runs (default 1)")
    parser.add_argument("--pes", type=int, nargs="+", default=[16, 64, 128], help="lane counts of the FL runs")
    parser.add_argument("--synth", action="store_true",
                        help="synthesize: demo P=16 on the ECP5-85k (placed and routed), FL-TT-LSTM T=6 on the XCKU5P")
    parser.add_argument("--synth-pes", type=int, nargs="+", default=[16, 64], help="lane counts of the FL syntheses")
    parser.add_argument("--freq", type=float, default=100.0, help="nextpnr target clock in MHz (default 100)")
    parser.add_argument("--synth-dir", type=Path, help="keep the synthesized artifacts here (and reuse them)")
    parser.add_argument("--models", nargs="+", choices=[m.name for m in SMALL_MODELS + FL_MODELS],
                        help="only these models (default: all, or the small ones with --quick)")
    args = parser.parse_args()
    console = Console(width=200)
    chosen = lambda models: [m for m in models if args.models is None or m.name in args.models]
    runs = [(model, model.steps, p) for model in chosen(SMALL_MODELS) for p in (1, 4, 16, 64)]
    if not args.quick:
        steps = args.steps or FL.steps
        runs += [(model, steps, p) for model in chosen(FL_MODELS) for p in args.pes]
    with tempfile.TemporaryDirectory() as tmp:
        floor = None
        if args.synth:
            synth_dir = args.synth_dir or Path(tmp) / "synth"
            synth_dir.mkdir(parents=True, exist_ok=True)
            floor = synthesis_section(args, console, synth_dir)
        table = Table(title=f"Accelerator, 8-bit, batch 1, GOPS dense-equivalent at an assumed {CLOCK_HZ / 1e6:.0f} "
                            f"MHz and at the measured floor clock "
                            f"({f'{floor:.1f} MHz' if floor else 'not measured: run with --synth'}) "
                            f"(paper: {PAPER_GOPS} GOPS)")
        for column in ("model", "T", "P", "cycles/step", "MAC bound/step", "ratio (w/o cell)", "GEMM util",
                       "run util", "cell/step", "EW/step", "fetch/step", "sim cycles/s", "memory",
                       f"GOPS @{CLOCK_HZ / 1e6:.0f} MHz (assumed)", "GOPS @floor", "bit-exact"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for model, steps, pes in runs:
            stats = measure(model, steps, pes, Path(tmp))
            cells = row(model, steps, pes, stats)
            table.add_row(*cells[:-1], floor_gops(stats, floor), cells[-1])
            console.print(f"{model.name} P={pes}: {stats['cycles']:,} cycles in {stats['wall_seconds']:.1f} s "
                          f"(build {stats['build_seconds']:.1f} s)")
    console.print(table)
    console.print(f"Targets: ratio ≤ {RATIO_TARGET} (+ cell per step), GEMM util ≥ {UTILIZATION_TARGET:.0%} at "
                  f"P = 16 and 64, ≥ {SIM_SPEED_TARGET / 1e6:.0f}M cycles/s, ≥ {GOPS_FACTOR_TARGET:.0f}x "
                  f"{PAPER_GOPS} GOPS with P ≤ {MAX_PES}.")


if __name__ == "__main__":
    main()
