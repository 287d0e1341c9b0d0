"""Cycle-accurate simulation of a verilog artifact with Verilator.

``Simulator(artifact_dir).run(inputs)`` builds the artifact's own RTL (``rtl/``) with
Verilator for its P and widths, its memories deepened to shared power-of-two depths
(``AccelConfig.shared``: the same words at the same addresses; cached by content hash, one
build per configuration and RTL serves every model that fits it), loads the program and memory images through the
bulk host port, queues the inputs the program streams one time step at a time
(``Image.streamed``, ``AccelConfig.input_pack`` codes a word) for the input stream, runs until ``done`` and reads the outputs back.  The images are the
artifact's .hex files when the inputs have the shapes it was compiled for; inputs of
other sizes along a symbolic dimension lower the artifact's model again for their shapes.
Either way the .hex files must hold what the artifact's model compiles to, and the
manifest's hardware parameters what its images need: a tampered or incomplete artifact
is refused, never silently replaced by the package's copy (``io="stream"`` moves
inputs and outputs through the accelerator's valid/ready streams instead).  Outputs are what
``run`` (the integer golden model) returns for the artifact: dequantized floats, or codes
with ``raw=True``.  A module with host regions runs them here, before and after the
accelerator (``runtime.hosted``, ``ir.stages``); the accelerator runs its compiled core.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend.artifact import load_artifact
from ..backend.verilog.artifact import IMAGE_FILES, MemoryImages, artifact_sources, read_images, static_shapes
from ..backend.verilog.hardware import TOP, AccelConfig, accel_sources, module_code_width
from ..backend.verilog.image import Image
from ..backend.verilog.lower import accelerator_stages, lower
from ..errors import TensorgateError
from ..fixedpoint.formats import dequantize
from ..interpreter import FixedExecutor
from ..ir.types import FixedType
from .hosted import run_around_core
from .verilator import RtlDesign, RtlSim, SimulationTimeout, build

PROGRAM, WEIGHTS, SCRATCH, TABLES = 0, 1, 2, 3
COUNTERS = ("gemm_cycles", "ew_cycles", "cell_cycles")
"""The accelerator's performance counters: cycles running each instruction class."""
IO_MODES = ("host", "stream")
STREAM_STALL_CYCLES = 1 << 16
"""How long a stream may go without a transfer before the transfer is declared stuck."""


def accel_design(config: AccelConfig, trace: bool = False, sources: list[Path] | None = None) -> RtlDesign:
    """The generic accelerator of ``config`` as a Verilator design, built from ``sources``
    (default: the package's RTL)."""
    return RtlDesign.of(TOP, sources or accel_sources(), config.parameters(), trace=trace)


@dataclass(frozen=True)
class Compiled:
    """What an artifact was compiled to: its core's input shapes, the lowering for them,
    the accelerator build and the memory images read from the artifact's files."""

    shapes: dict[str, tuple[int, ...]]
    image: Image
    config: AccelConfig
    memories: MemoryImages


class Simulator:
    """Runs a verilog artifact directory on the Verilated accelerator."""

    def __init__(self, artifact_dir: str | Path, progress: bool | None = None):
        self.directory = Path(artifact_dir)
        self.module, self.manifest = load_artifact(self.directory)
        hardware = self.manifest.get("hardware")
        if self.manifest.get("target") != "verilog" or not hardware:
            raise TensorgateError(f"'{artifact_dir}' is not a verilog artifact; compile with --target verilog")
        self.pes = int(hardware["pes"])
        self.progress = progress
        self.executor = FixedExecutor(self.module)
        self.stages = accelerator_stages(self.module)
        self.sources = artifact_sources(self.directory, self.manifest.get("files", {}))
        self.compiled = self._compiled(hardware)

    def _compiled(self, hardware: dict) -> Compiled:
        """The artifact's images and build, checked against what its model compiles to."""
        core = self.stages.core
        shapes = static_shapes(core)
        image = lower(core, self.pes, shapes)
        config = AccelConfig.sized(image, module_code_width(core))
        if hardware.get("parameters") != config.parameters():
            raise TensorgateError(f"the manifest of '{self.directory}' gives hardware parameters "
                                  f"{hardware.get('parameters')}, but its model compiles to {config.parameters()}; "
                                  "compile it again")
        memories = read_images(self.directory, config.code_width)
        differing = memories.differing(MemoryImages.of(image, config.code_width))
        if differing:
            files = ", ".join(IMAGE_FILES[name] for name in differing)
            raise TensorgateError(f"{files} in '{self.directory}' do not hold what its model compiles to; "
                                  "compile it again")
        return Compiled(shapes, image, config, memories)

    def run(self, inputs: dict[str, np.ndarray], trace: str | Path | None = None, raw: bool = False,
            max_cycles: int = 1 << 32, io: str = "host",
            raw_input: bool = False) -> tuple[dict[str, np.ndarray], dict]:
        """``(outputs, stats)`` for one set of inputs; ``trace`` writes a VCD waveform;
        ``raw_input`` takes fixed-point inputs as integer codes (as ``run_fixed``).

        ``io="host"`` writes inputs and reads outputs through the bulk host port;
        ``io="stream"`` sends inputs through the input stream and receives outputs from the
        output stream (one Python call per cycle: slower, meant for checking the interfaces).
        """
        if io not in IO_MODES:
            raise TensorgateError(f"unknown io mode '{io}' for Simulator.run; expected one of {', '.join(IO_MODES)}")
        stats: dict = {}

        def on_accelerator(codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            values, run_stats = self._run_core(codes, trace, max_cycles, io)
            stats.update(run_stats)
            return values

        values = run_around_core(self.executor, self.stages, self.executor.input_codes(inputs, raw_input),
                                  on_accelerator)
        outputs = {v.name: values[v.name] if raw or not isinstance(v.type.dtype, FixedType)
                   else dequantize(values[v.name], v.type.dtype) for v in self.module.outputs}
        return outputs, stats

    def _lowered(self, shapes: dict[str, tuple[int, ...]]) -> tuple[Image, AccelConfig, MemoryImages]:
        """The lowering, build and memory images for the core's input shapes: the artifact's
        own for the shapes it was compiled for, a new lowering of its model for others."""
        if shapes == self.compiled.shapes:
            return self.compiled.image, self.compiled.config, self.compiled.memories
        image = lower(self.stages.core, self.pes, shapes)
        config = AccelConfig.sized(image, module_code_width(self.stages.core))
        return image, config, MemoryImages.of(image, config.code_width)

    def _run_core(self, codes: dict[str, np.ndarray], trace, max_cycles: int, io: str) -> tuple[dict, dict]:
        """The accelerator's output codes and the run's statistics, for the core's input codes."""
        image, config, memories = self._lowered({name: tuple(np.shape(array)) for name, array in codes.items()})
        built = build(accel_design(config.shared(), trace=trace is not None, sources=self.sources),
                      progress=self.progress)
        started = time.perf_counter()
        with RtlSim(built, vcd=trace) as sim:
            sim.reset()
            load_memories(sim, memories)
            for name, addresses in image.inputs.items():
                words = np.asarray(codes[name], np.int64).ravel()
                if io == "stream":
                    stream_in(sim, int(addresses.flat[0]), words)
                else:
                    sim.write_memory(SCRATCH, words, int(addresses.flat[0]))
            if image.streamed:  # taken one time step at a time by the program's INPUT instructions
                sim.push_stream(image.stream_words(codes, config.input_pack))
            running, running_cpu = time.perf_counter(), time.thread_time()
            cycles = sim.run(max_cycles, start=True, progress=self.progress)
            run_seconds, run_cpu_seconds = time.perf_counter() - running, time.thread_time() - running_cpu
            by_class = {name: sim.get(name) for name in COUNTERS}
            read = stream_codes if io == "stream" else read_codes
            values = {name: read(sim, addresses) for name, (addresses, _) in image.outputs.items()}
        seconds = time.perf_counter() - started
        return values, simulation_stats(image, config, cycles, by_class, seconds, (run_seconds, run_cpu_seconds),
                                        built.build_seconds)


def load_image(sim: RtlSim, image: Image) -> None:
    """Program, weights, constants/zeroed scratchpad and activation tables of a lowering, in bulk."""
    load_memories(sim, MemoryImages.of(image, 64))


def load_memories(sim: RtlSim, memories: MemoryImages) -> None:
    """Every memory's image, in bulk through the host port."""
    for memory, words in ((PROGRAM, memories.program), (WEIGHTS, memories.weights), (SCRATCH, memories.scratch),
                          (TABLES, memories.tables)):
        if words.size:
            sim.write_memory(memory, words)


def read_codes(sim: RtlSim, addresses: np.ndarray) -> np.ndarray:
    """The signed words at ``addresses`` (any shape), read as one span."""
    if addresses.size == 0:
        return np.zeros(addresses.shape, np.int64)
    low, high = int(addresses.min()), int(addresses.max())
    span = sim.read_memory(SCRATCH, high - low + 1, low, signed=True)
    return span[addresses - low]


def stream_in(sim: RtlSim, base: int, words: np.ndarray, valid: Iterable[bool] | None = None) -> int:
    """Send ``words`` through the input stream to scratchpad words ``base`` on; returns the cycles.

    ``valid`` (default: always) says on which cycles the source offers a word; a word
    offered stays on ``in_data`` until the accelerator takes it (``in_valid && in_ready``).
    """
    arm(sim, "in", base, len(words))
    offers = itertools.repeat(True) if valid is None else iter(valid)
    sent = cycles = idle = 0
    while sent < len(words):
        offer = next(offers, True)
        sim.set("in_valid", int(offer))
        sim.set("in_data", int(words[sent]))
        sim.eval()
        taken = offer and sim.get("in_ready")
        sim.step()
        cycles += 1
        sent += int(taken)
        idle = 0 if taken else idle + 1
        if idle > STREAM_STALL_CYCLES:
            raise SimulationTimeout(f"the input stream took {sent} of {len(words)} words and then stalled")
    sim.set("in_valid", 0)
    return cycles


def stream_out(sim: RtlSim, base: int, count: int, ready: Iterable[bool] | None = None) -> np.ndarray:
    """The ``count`` signed scratchpad words from ``base`` on, received from the output stream.

    ``ready`` (default: always) says on which cycles the sink accepts a word.
    """
    arm(sim, "out", base, count)
    accepts = itertools.repeat(True) if ready is None else iter(ready)
    words = np.zeros(count, np.int64)
    received = idle = 0
    while received < count:
        accept = next(accepts, True)
        sim.set("out_ready", int(accept))
        sim.eval()
        if accept and sim.get("out_valid"):
            words[received] = sim.get("out_data", signed=True)
            received += 1
            idle = 0
        else:
            idle += 1
        sim.step()
        if idle > STREAM_STALL_CYCLES:
            raise SimulationTimeout(f"the output stream sent {received} of {count} words and then stalled")
    sim.set("out_ready", 0)
    return words


def arm(sim: RtlSim, stream: str, base: int, count: int) -> None:
    """Load a stream's region (``<stream>_base``, ``<stream>_count``) with a one-edge ``<stream>_arm``."""
    sim.set(f"{stream}_base", base)
    sim.set(f"{stream}_count", count)
    sim.set(f"{stream}_arm", 1)
    sim.step()
    sim.set(f"{stream}_arm", 0)


def stream_codes(sim: RtlSim, addresses: np.ndarray) -> np.ndarray:
    """The signed words at ``addresses`` (any shape), received from the output stream as one span."""
    if addresses.size == 0:
        return np.zeros(addresses.shape, np.int64)
    low, high = int(addresses.min()), int(addresses.max())
    return stream_out(sim, low, high - low + 1)[addresses - low]


def simulation_stats(image: Image, config: AccelConfig, cycles: int, by_class: dict[str, int], seconds: float,
                     run_seconds: tuple[float, float], build_seconds: float) -> dict:
    """Cycle counts and rates of one run.  ``pe_utilization`` is over the whole run;
    ``gemm_utilization`` over the cycles running GEMM instructions (the contraction steps);
    ``overhead_cycles`` are the fetch/decode/sequencing cycles between instructions and
    the INPUT instructions' (a streamed step's input codes, ``isa.input_pack`` a cycle).
    ``sim_seconds`` is the whole run (loading images and reading outputs included),
    ``cycles_per_second`` the simulation speed while the accelerator runs (``run_seconds``:
    its wall and its thread's CPU seconds), ``cpu_cycles_per_second`` the same per second
    of CPU time (what it would be on an otherwise idle core)."""
    wall, cpu = run_seconds
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
        "cycles_per_second": cycles / wall if wall > 0 else 0.0,
        "cpu_cycles_per_second": cycles / cpu if cpu > 0 else 0.0,
        "build_seconds": build_seconds,
        "pes": image.pes,
        "instructions": len(image.program),
        "cycles_estimate": image.cycles_estimate,
        "memory_bits": sum(config.memory_bits().values()),
        "bram36_estimate": config.memory_estimate()["bram36"],
    }
