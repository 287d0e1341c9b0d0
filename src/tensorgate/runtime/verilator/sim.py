"""Driving a built design through its C ABI (``tg_harness.cpp``) with ctypes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .builds import RtlBuild, progress_console
from .design import Port
from .toolchain import HOST_PORTS, RUN_CHUNK_CYCLES, TG_FAILED, SimulationTimeout, VerilatorError

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
        "tg_stream_push": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_uint64, _u64_p]),
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

    def push_stream(self, words: Sequence[int]) -> int:
        """Queue words for the input stream (``in_valid``/``in_ready``/``in_data``): ``run``
        offers them in order, one taken on each edge where ``in_ready`` is high.  Returns
        how many words are still queued."""
        self.port("in_ready")
        self.port("in_data", "in")
        data = np.asarray(words, np.int64).astype(np.uint64)
        buffer = data.ctypes.data_as(_u64_p)
        return int(self._lib.tg_stream_push(self._ptr, len(data), buffer))

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
    console = progress_console(progress) if max_cycles > RUN_CHUNK_CYCLES else None
    if console is None or console.quiet:
        yield lambda done: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("Simulating [bold]{task.description}[/]"),
               TextColumn("{task.completed:,.0f} cycles"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(top, total=None)
        yield lambda done: bar.update(task, completed=done)
