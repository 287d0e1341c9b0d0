"""Cycle-accurate simulation of a verilog artifact with Verilator.

``Simulator(artifact_dir).run(inputs)`` lowers the artifact's quantized module for the
inputs' shapes (the same lowering ``compile --target verilog`` wrote), builds the generic
accelerator for the artifact's P and widths (cached by content hash: one build per
configuration serves every model that fits it), loads program and memory images through
the bulk host port, runs until ``done`` and reads the outputs back.  Outputs are what
``run`` (the integer golden model) returns for the artifact: dequantized floats, or codes
with ``raw=True``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..backend.artifact import load_artifact
from ..backend.verilog.hardware import AccelConfig, accel_design
from ..backend.verilog.lower import Image, lower
from ..errors import TensorgateError
from ..fixedpoint.formats import dequantize
from ..ir.types import FixedType
from .fixed_runtime import FixedExecutor
from .verilator import RtlSim, build

PROGRAM, WEIGHTS, SCRATCH, TABLES = 0, 1, 2, 3
COUNTERS = ("gemm_cycles", "ew_cycles", "cell_cycles")
"""The accelerator's performance counters: cycles running each instruction class."""


def module_code_width(module) -> int:
    """The widest fixed-point code among the module's values."""
    widths = [v.type.dtype.width for v in module.values() if isinstance(v.type.dtype, FixedType)]
    return max(widths, default=2)


class Simulator:
    """Runs a verilog artifact directory on the Verilated accelerator."""

    def __init__(self, artifact_dir: str | Path, progress: bool | None = None):
        self.module, self.manifest = load_artifact(Path(artifact_dir))
        hardware = self.manifest.get("hardware")
        if self.manifest.get("target") != "verilog" or not hardware:
            raise TensorgateError(f"'{artifact_dir}' is not a verilog artifact; compile with --target verilog")
        self.pes = int(hardware["pes"])
        self.progress = progress
        self.executor = FixedExecutor(self.module)

    def run(self, inputs: dict[str, np.ndarray], trace: str | Path | None = None, raw: bool = False,
            max_cycles: int = 1 << 32) -> tuple[dict[str, np.ndarray], dict]:
        """``(outputs, stats)`` for one set of inputs; ``trace`` writes a VCD waveform."""
        codes = self.executor.input_codes(inputs)
        image = lower(self.module, self.pes, {name: np.shape(array) for name, array in codes.items()})
        config = AccelConfig.for_image(image, module_code_width(self.module))
        built = build(accel_design(config, trace=trace is not None), progress=self.progress)
        started = time.perf_counter()
        with RtlSim(built, vcd=trace) as sim:
            sim.reset()
            load_image(sim, image)
            for name, addresses in image.inputs.items():
                sim.write_memory(SCRATCH, np.asarray(codes[name], np.int64).ravel(), int(addresses.flat[0]))
            running = time.perf_counter()
            cycles = sim.run(max_cycles, start=True, progress=self.progress)
            run_seconds = time.perf_counter() - running
            by_class = {name: sim.get(name) for name in COUNTERS}
            values = {name: read_codes(sim, addresses) for name, (addresses, _) in image.outputs.items()}
        seconds = time.perf_counter() - started
        outputs = {name: values[name] if raw or fmt is None else dequantize(values[name], fmt)
                   for name, (_, fmt) in image.outputs.items()}
        return outputs, simulation_stats(image, config, cycles, by_class, seconds, run_seconds, built.build_seconds)


def load_image(sim: RtlSim, image: Image) -> None:
    """Program, weights, constants/zeroed scratchpad and activation tables, in bulk."""
    sim.write_memory(PROGRAM, image.program_words())
    if image.weight_rows:
        sim.write_memory(WEIGHTS, image.weight_words())
    if image.scratch:
        sim.write_memory(SCRATCH, np.asarray(image.scratch, np.int64))
    if image.tables:
        sim.write_memory(TABLES, np.asarray(image.tables, np.uint64))


def read_codes(sim: RtlSim, addresses: np.ndarray) -> np.ndarray:
    """The signed words at ``addresses`` (any shape), read as one span."""
    if addresses.size == 0:
        return np.zeros(addresses.shape, np.int64)
    low, high = int(addresses.min()), int(addresses.max())
    span = sim.read_memory(SCRATCH, high - low + 1, low, signed=True)
    return span[addresses - low]


def simulation_stats(image: Image, config: AccelConfig, cycles: int, by_class: dict[str, int], seconds: float,
                     run_seconds: float, build_seconds: float) -> dict:
    """Cycle counts and rates of one run.  ``pe_utilization`` is over the whole run;
    ``gemm_utilization`` over the cycles running GEMM instructions (the contraction steps);
    ``overhead_cycles`` are the fetch/decode/sequencing cycles between instructions.
    ``sim_seconds`` is the whole run (loading images and reading outputs included),
    ``cycles_per_second`` the simulation speed while the accelerator runs."""
    bound = math.ceil(image.macs / image.pes)
    gemm = by_class["gemm_cycles"]
    return {
        "cycles": cycles,
        **by_class,
        "overhead_cycles": cycles - sum(by_class.values()),
        "gemm_utilization": image.macs / (image.pes * gemm) if gemm else 0.0,
        "steps": image.steps,
        "cycles_per_step": cycles / image.steps,
        "macs": image.macs,
        "mac_bound_cycles": bound / image.steps,
        "pe_utilization": image.macs / (image.pes * cycles) if cycles else 0.0,
        "sim_seconds": seconds,
        "cycles_per_second": cycles / run_seconds if run_seconds > 0 else 0.0,
        "build_seconds": build_seconds,
        "pes": image.pes,
        "instructions": len(image.program),
        "cycles_estimate": image.cycles_estimate,
        "memory_bits": sum(config.memory_bits().values()),
    }
