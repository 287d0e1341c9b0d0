"""``tensorgate synth``: a verilog artifact's own RTL through yosys and, where nextpnr
places the device, place-and-route at a target clock; the result in ``ART/synth.json``.

The accelerator's memories are RAMs the host loads through its port, so the netlist does
not depend on the images: what is synthesized is the artifact's ``rtl/`` at the
parameters of its manifest (``hardware.parameters``), the build ``simulate`` runs, with
each memory's ram_style picked for the device (``AccelConfig.memory_map``: block RAM or
URAM, whichever leaves the device's budgets least full).  ``synth.json`` records the
choice, the memory estimate under it, and whether yosys's block-RAM and URAM counts equal
that estimate.  The tools run in a scratch directory holding copies of the RTL and the
images (they see only their working directory), so nothing but ``synth.json`` is written
into the artifact, atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...backend.loading import MANIFEST, check_files, read_manifest, validate_manifest
from ...backend.verilog.artifact import artifact_sources
from ...backend.verilog.hardware import URAM, AccelConfig
from ...errors import TensorgateError, UsageError
from .devices import Device, kind_counts, memory_budgets
from .reports import PlacedDesign, read_nextpnr_report, read_yosys_cells
from .tools import NEXTPNR_ECP5, YOSYS, SynthesisError, package_version, run_tool

SYNTH_JSON = "synth.json"
DEFAULT_MHZ = 100.0
DEFAULT_TIMEOUT_S = 4 * 3600.0
SCRIPT, STAT, NETLIST, PNR_REPORT = "synth.ys", "stat.json", "netlist.json", "nextpnr-report.json"


@dataclass(frozen=True)
class SynthOptions:
    """``freq_mhz``: nextpnr's target clock; ``timeout_s``: per tool run; ``uram``:
    ``auto`` maps each memory to block RAM or UltraRAM, whichever leaves the device's
    budgets least full, ``on`` every memory but the shallow (LUT RAM) ones to UltraRAM,
    ``off`` none; ``place``: run place-and-route where the device has it; ``work_dir``:
    keep the tools' files (scripts, logs, netlist) there."""

    freq_mhz: float = DEFAULT_MHZ
    timeout_s: float = DEFAULT_TIMEOUT_S
    uram: str = "auto"
    place: bool = True
    seed: int = 1
    work_dir: Path | None = None


Progress = Callable[[str], None]
"""Told the current step of a run: a stage name and the tool's latest step."""


def read_hardware(artifact: Path) -> tuple[dict, dict[str, str]]:
    """The manifest's ``hardware`` entry of a verilog artifact and its checked ``files``
    map (every listed file unchanged); other directories are refused."""
    manifest = read_manifest(artifact)
    validate_manifest(manifest, artifact)
    if manifest.get("target") != "verilog" or "hardware" not in manifest:
        raise TensorgateError(f"'{artifact}' is a {manifest.get('target', 'unknown')} artifact, not verilog: "
                              "compile it with --target verilog to synthesize it")
    return manifest["hardware"], check_files(artifact.resolve(), manifest.get("files"), artifact)


def listed_inputs(artifact: Path, files: dict[str, str]) -> list[Path]:
    """The artifact's RTL in compile order, then its memory images: only files its
    manifest lists (so checked against their hashes)."""
    images = [artifact / name for name in sorted(files) if name.endswith(".hex") and "/" not in name]
    return artifact_sources(artifact, files) + images


def synthesize(artifact: Path, device: Device, options: SynthOptions = SynthOptions(),
               progress: Progress = lambda step: None) -> dict:
    """Synthesize ``artifact`` for ``device``; return what ``ART/synth.json`` now holds."""
    artifact = Path(artifact)
    if options.uram not in ("auto", "on", "off"):
        raise UsageError(f"uram must be auto, on or off, not '{options.uram}'")
    if options.uram == "on" and not memory_budgets(device)[1]:
        raise UsageError(f"{device.name} has no UltraRAM: --uram on is for the XCKU5P")
    hardware, files = read_hardware(artifact)
    inputs = listed_inputs(artifact, files)
    sources = [path for path in inputs if path.suffix != ".hex"]
    memories = memory_plan(hardware, device, options.uram)
    with _scratch(options.work_dir) as work:
        for path in inputs:
            shutil.copyfile(path, work / path.name)
        top = hardware.get("top", "tg_accel")
        parameters = hardware.get("parameters", {}) | memories["parameters"]
        uram = any(entry["primitive"] == URAM for entry in memories["estimate"]["by_memory"].values())
        cells, command, seconds = run_yosys(work, [p.name for p in sources], top, parameters, device, uram,
                                            options.timeout_s, progress)
        result = synthesized(device, hardware, top, command, cells, {"yosys": round(seconds, 1)})
        result["memories"] = memory_check(device, memories, result["resources"])
        if device.places and options.place:
            if result["fit"]["fits"]:
                progress(f"nextpnr at {options.freq_mhz:g} MHz")
                placed, seconds = place_and_route(device, work, options, progress)
                add_placement(result, device, placed, seconds)
            else:
                over = ", ".join(f"{b['name']} {b['used']:,.0f} of {b['available']:,}"
                                 for b in result["fit"]["budgets"] if b["used"] > b["available"])
                result["notes"].append(f"the design does not fit the device ({over}): place-and-route skipped")
        elif not device.places:
            result["notes"].append(f"no place-and-route for {device.name} here: resource counts only "
                                   "(an ECP5 place-and-route of the same RTL gives a floor for its clock)")
    write_synth_json(artifact, result)
    return result


@contextmanager
def _scratch(work_dir: Path | None):
    """The tools' working directory: ``work_dir``, or a temporary one; a tool's error
    says where its log is (or how to keep it)."""
    try:
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
            yield Path(work_dir).resolve()
        else:
            with tempfile.TemporaryDirectory(prefix="tg-synth-") as tmp:
                yield Path(tmp)
    except SynthesisError as exc:
        where = f"the logs are in {work_dir}" if work_dir is not None else "--work-dir DIR keeps the tools' logs"
        raise type(exc)(f"{exc}; {where}") from None


def run_yosys(work: Path, files: list[str], top: str, parameters: dict, device: Device, uram: bool = False,
              timeout_s: float = DEFAULT_TIMEOUT_S, progress: Progress = lambda step: None) -> tuple[dict, str, float]:
    """Synthesize ``top`` of the RTL ``files`` in ``work`` at ``parameters`` for ``device``
    (and write the netlist nextpnr reads where the device places): the mapped cells by type,
    the yosys synthesis command and the seconds it took."""
    command = yosys_command(device, top, uram)
    (work / SCRIPT).write_text(yosys_script(files, top, parameters, command, device.places))
    stage = f"yosys {command.split()[0]}"
    progress(stage)
    run = run_tool(YOSYS, ["-s", SCRIPT], work, work / "yosys.log", timeout_s, _step_reporter(stage, progress, yosys_step))
    return read_yosys_cells(work / STAT, top), command, run.seconds


def memory_plan(hardware: dict, device: Device, uram: str) -> dict:
    """Each memory's primitive on ``device`` (``AccelConfig.memory_map`` under ``uram``),
    the ``tg_accel`` parameters that ask yosys for it, and the memory estimate under it."""
    config = AccelConfig.from_parameters(hardware.get("parameters", {}))
    primitives = config.memory_map(device.family, *memory_budgets(device), uram)
    return {"uram": uram, "parameters": config.style_parameters(primitives),
            "estimate": config.memory_estimate(device.family, primitives)}


def memory_check(device: Device, memories: dict, resources: dict[str, int]) -> dict:
    """The memory plan with yosys's block-RAM and URAM columns beside the estimate's
    (``kind_counts``: block RAM as the budget counts it) and whether they are equal."""
    estimated_cells = memories["estimate"]["cells"]
    estimate = kind_counts(device, {r.name: r.count(estimated_cells) for r in device.resources})
    synthesized = kind_counts(device, resources)
    compared = {kind: {"estimate": estimate[kind], "synthesized": synthesized[kind]} for kind in ("bram", "uram")}
    return memories | {"counts": compared,
                       "estimate_equals_synthesis": all(c["estimate"] == c["synthesized"] for c in compared.values())}


def yosys_command(device: Device, top: str, uram: bool) -> str:
    return device.synth.format(top=top, uram=" -uram" if uram else "")


def yosys_script(files: list[str], top: str, parameters: dict, command: str, netlist: bool) -> str:
    """Read the RTL with the stock frontend, set the build's parameters on the top,
    synthesize, and write the cell statistics (and the netlist for nextpnr)."""
    chparam = " ".join(f"-set {name} {_parameter_text(value)}" for name, value in parameters.items())
    lines = [f"read_verilog -sv -defer {' '.join(files)}"]
    if chparam:
        lines.append(f"chparam {chparam} {top}")
    lines += [f"hierarchy -check -top {top}", command, f"tee -q -o {STAT} stat -json"]
    if netlist and f"-json {NETLIST}" not in command:
        lines.append(f"write_json {NETLIST}")
    return "\n".join(lines) + "\n"


def _parameter_text(value) -> str:
    return str(int(value)) if isinstance(value, (bool, int)) else json.dumps(str(value))


def yosys_step(line: str) -> str | None:
    """``Executing SYNTH_ECP5 pass.`` → the pass yosys is in, for the progress display."""
    if ". Executing " in line:
        return line.split(". Executing ", 1)[1].rstrip(".")
    return None


def nextpnr_step(line: str) -> str | None:
    text = line.removeprefix("Info: ").strip()
    if line.startswith("Info: ") and text and not text.startswith(("[", "|", "legend", "type", "curr")):
        return text[:80]
    return None


def _step_reporter(stage: str, progress: Progress, parse: Callable[[str], str | None]) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        step = parse(line)
        if step:
            progress(f"{stage}: {step}")

    return on_line


def synthesized(device: Device, hardware: dict, top: str, command: str, cells: dict[str, int],
                seconds: dict) -> dict:
    counts = {resource.name: resource.count(cells) for resource in device.resources}
    return {"device": device.name, "description": device.description, "top": top,
            "parameters": hardware.get("parameters", {}), "pes": hardware.get("pes"),
            "tools": {YOSYS: package_version(YOSYS), **({NEXTPNR_ECP5: package_version(NEXTPNR_ECP5)}
                                                         if device.places else {})},
            "yosys_command": command, "resources": counts, "fit": fit(device, counts),
            "cells": dict(sorted(cells.items())), "timing": None, "seconds": seconds, "notes": []}


def fit(device: Device, counts: dict[str, int]) -> dict:
    """Every budget of the device: used, available, share; ``fits`` when none is exceeded."""
    budgets = [{"name": b.name, "used": b.used(counts), "available": b.available,
                "share": round(b.used(counts) / b.available, 4)} for b in device.budgets]
    return {"fits": all(b["used"] <= b["available"] for b in budgets), "budgets": budgets}


def place_and_route(device: Device, work: Path, options: SynthOptions, progress: Progress) -> tuple[PlacedDesign, float]:
    """nextpnr on the netlist, out of context (the accelerator's ports are wider than a
    package's pins: they would connect to on-chip logic), at ``freq_mhz``."""
    args = ["--json", NETLIST, *device.nextpnr, "--freq", f"{options.freq_mhz:g}", "--timing-allow-fail",
            "--out-of-context", "--seed", str(options.seed), "--report", PNR_REPORT]
    run = run_tool(NEXTPNR_ECP5, args, work, work / "nextpnr.log", options.timeout_s,
                   _step_reporter(f"nextpnr at {options.freq_mhz:g} MHz", progress, nextpnr_step))
    return read_nextpnr_report(work / PNR_REPORT), run.seconds


def add_placement(result: dict, device: Device, placed: PlacedDesign, seconds: float) -> None:
    """The placed design's utilization replaces yosys's counts where nextpnr names the
    resource (packing merges cells), and the achieved clock and critical path are added."""
    placed_counts = dict(result["resources"])
    for resource in device.resources:
        if resource.pnr_name in placed.utilization:
            placed_counts[resource.name] = placed.utilization[resource.pnr_name]["used"]
    result["synthesized_resources"] = result["resources"]
    result["resources"] = placed_counts
    result["fit"] = fit(device, placed_counts)
    result["timing"] = {"clock": placed.clock, "target_mhz": placed.target_mhz, "fmax_mhz": placed.fmax_mhz,
                        "met": placed.timing_met,
                        "critical_path": placed.critical_path.as_dict() if placed.critical_path else None}
    result["seconds"]["nextpnr"] = round(seconds, 1)


def write_synth_json(artifact: Path, result: dict) -> Path:
    target = Path(artifact) / SYNTH_JSON
    tmp = target.with_name(f".{SYNTH_JSON}.tmp")
    try:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise TensorgateError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
