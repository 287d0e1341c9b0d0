"""What goes into a build: the RTL top, its sources and parameters (``RtlDesign``, whose
content hash keys the cache), and the ports Verilator gives it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .toolchain import BUILD_RECIPE, HARNESS_CPP, MAKE_VARIABLES, MODEL_PREFIX, VerilatorError, verilator_version

RECIPE_MODULES = ("design.py", "builds.py", "toolchain.py")
"""The modules whose code decides what a build contains."""


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
        """Content hash of everything the built library depends on (the build recipe's
        modules included)."""
        digest = hashlib.sha256()

        def feed(*parts: str | bytes) -> None:
            for part in parts:
                data = part.encode() if isinstance(part, str) else part
                digest.update(len(data).to_bytes(8, "little"))
                digest.update(data)

        feed(BUILD_RECIPE, verilator_version(), self.top, repr(self.parameters), repr(self.trace))
        feed(*MAKE_VARIABLES, _read_bytes(HARNESS_CPP),
             *(_read_bytes(Path(__file__).with_name(name)) for name in RECIPE_MODULES))
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
