"""Synthesis of verilog artifacts with yosys and nextpnr from PyPI (``tensorgate synth``).

``devices`` is the table of targets and their budgets, ``tools`` runs the YoWASP
executables, ``reports`` reads their JSON reports, ``flow`` runs a synthesis and writes
``ART/synth.json``, ``summary`` renders it.
"""

from .devices import DEVICES, KINDS, Device, device_named, kind_counts, memory_budgets
from .flow import SYNTH_JSON, SynthOptions, read_hardware, synthesize
from .reports import read_nextpnr_report, read_yosys_cells
from .summary import memory_table, summary_table, timing_lines
from .tools import SynthesisError, SynthesisTimeout

__all__ = [
    "DEVICES",
    "KINDS",
    "SYNTH_JSON",
    "Device",
    "SynthOptions",
    "SynthesisError",
    "SynthesisTimeout",
    "device_named",
    "kind_counts",
    "memory_table",
    "memory_budgets",
    "read_hardware",
    "read_nextpnr_report",
    "read_yosys_cells",
    "summary_table",
    "synthesize",
    "timing_lines",
]
