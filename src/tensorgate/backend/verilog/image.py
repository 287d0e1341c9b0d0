"""The lowered model's data: scratchpad operands (``Grid``), what a map's consumer does
with its result (``Epilogue``), and the ``Image`` a lowering produces (program, memory
images, where inputs and outputs live, costs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import TensorgateError
from ...ir.types import FixedType
from . import isa


@dataclass(frozen=True)
class Grid:
    """A 2-D operand in the scratchpad: ``rows × cols`` words at base + r·row_stride + c·col_stride."""

    base: int
    rows: int
    cols: int
    row_stride: int
    col_stride: int

    def columns(self, start: int, stop: int) -> "Grid":
        return Grid(self.base + start * self.col_stride, self.rows, stop - start, self.row_stride, self.col_stride)

    def row_block(self, start: int, count: int) -> "Grid":
        return Grid(self.base + start * self.row_stride, count, self.cols, self.row_stride, self.col_stride)

    def addresses(self) -> np.ndarray:
        return (self.base + np.arange(self.rows)[:, None] * self.row_stride
                + np.arange(self.cols)[None, :] * self.col_stride).astype(np.int64)


@dataclass(frozen=True)
class Epilogue:
    """What the consumer of a map does with columns ``[start, stop)`` of its result:
    add ``init`` (``init_frac`` fraction bits), narrow to ``fmt``, clip to ``±clip``."""

    start: int
    stop: int
    init: Grid | None
    init_frac: int
    fmt: FixedType
    clip: int | None = None


def affine(addresses: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
    """``(base, strides)`` if the address array is base + Σ index·stride, else None."""
    addresses = np.asarray(addresses, np.int64)
    if addresses.size == 0:
        return None
    base = int(addresses.flat[0])
    strides = []
    for axis, size in enumerate(addresses.shape):
        strides.append(int(np.take(addresses, 1, axis=axis).flat[0]) - base if size > 1 else 0)
    grid = np.full(addresses.shape, base, np.int64)
    for axis, stride in enumerate(strides):
        shape = [1] * addresses.ndim
        shape[axis] = addresses.shape[axis]
        grid = grid + (np.arange(addresses.shape[axis]) * stride).reshape(shape)
    return (base, tuple(strides)) if np.array_equal(grid, addresses) else None


@dataclass
class Image:
    """A lowered model: program, memory images, where inputs and outputs live, and costs.
    ``code_width``: bits of the widest weight; ``scratch_width``: of the widest word any
    instruction, the host or the input stream writes to the scratchpad.  ``inputs`` the
    host writes before the run; ``streamed`` inputs, in this order, each flattened, are
    taken from the input stream by the program's INPUT instructions as it runs.  ``groups``,
    ``drain_lanes`` and ``banks``: the build's row groups, results drained a cycle and
    scratchpad banks (``isa.row_groups``, ``isa.drain_lanes``, ``isa.scratch_banks``)."""

    pes: int
    program: list[np.ndarray] = field(default_factory=list)
    weight_rows: list[np.ndarray] = field(default_factory=list)
    scratch: list[int] = field(default_factory=list)
    tables: list[int] = field(default_factory=list)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, tuple[np.ndarray, FixedType | None]] = field(default_factory=dict)
    macs: int = 0
    steps: int = 1
    cycles_estimate: int = 0
    code_width: int = 2
    scratch_width: int = 2
    streamed: list[str] = field(default_factory=list)
    groups: int = 1
    drain_lanes: int = 1
    banks: int = 1

    def stream_words(self, codes: dict[str, np.ndarray], pack: int) -> np.ndarray:
        """The input stream the program's INPUT instructions take: per instruction, in program
        order, the time step of the ``streamed`` input it names (words ``isa.INPUT_STEP`` and
        ``isa.INPUT_SOURCE``: a reverse sweep takes the last step first, a bidirectional
        layer the sequence twice), packed ``pack`` codes a word (``isa.pack_input``)."""
        chunks = []
        for words in self.program:
            if int(words[0]) & 0xFF != isa.INPUT:
                continue
            name = self.streamed[int(words[isa.INPUT_SOURCE])]
            sequence = np.asarray(codes[name], np.int64)
            step = sequence.reshape(len(sequence), -1)[int(words[isa.INPUT_STEP])]
            if step.size != int(words[2]):
                raise TensorgateError(f"the program's INPUT instructions take {int(words[2])} codes a step of "
                                      f"'{name}'; its steps hold {step.size}")
            chunks.append(isa.pack_input(step, pack))
        return np.concatenate(chunks or [np.zeros(0, np.int64)])

    def opcodes(self) -> set[int]:
        """The opcodes the program uses (word 0 bits 7:0 of each instruction)."""
        return {int(instruction[0]) & 0xFF for instruction in self.program}

    def program_words(self) -> np.ndarray:
        return np.concatenate(self.program) if self.program else np.zeros(0, np.uint64)

    def weight_words(self) -> np.ndarray:
        return (np.concatenate(self.weight_rows) if self.weight_rows else np.zeros(0, np.int64)).astype(np.int64)


def astuple_tail(epilogue: Epilogue) -> tuple:
    return epilogue.init, epilogue.init_frac, epilogue.fmt, epilogue.clip


def continues(before: Epilogue, after: Epilogue) -> bool:
    """Whether ``after`` is ``before`` extended by more columns: adjacent output columns,
    the same narrowing, and init columns that continue ``before``'s in the same grid."""
    if after.start != before.stop or (before.fmt, before.clip, before.init_frac) != (
            after.fmt, after.clip, after.init_frac):
        return False
    if before.init is None or after.init is None:
        return before.init is None and after.init is None
    first, second = before.init, after.init
    return (first.rows, first.row_stride, first.col_stride) == (second.rows, second.row_stride, second.col_stride) \
        and second.base == first.base + first.cols * first.col_stride


def adjacent_groups(epilogues: list[Epilogue]) -> list[list[Epilogue]]:
    """Runs of epilogues one GEMM can finish (fewer, wider instructions: the σ gates of a
    stacked recurrent map share one)."""
    groups: list[list[Epilogue]] = []
    for epilogue in epilogues:
        if groups and continues(groups[-1][-1], epilogue):
            groups[-1].append(epilogue)
        else:
            groups.append([epilogue])
    return groups
