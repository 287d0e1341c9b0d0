"""The accelerator's instruction words (see ``accel/tg_accel.sv``, ``accel/tg_lstm_cell.sv`` and
``accel/tg_gru_rnn_cell.sv``).

An instruction is ``WORDS`` 64-bit words; word 0 is the opcode (bits 7:0; a GEMM's log2 row
groups in bits 15:8 and log2 drain lanes in bits 23:16; bit 24 ``WAITS_FOR_INPUT``).  Signed
fields are two's complement.  ``Loops`` are address-generator walks: a base and up to ``DIMS`` nested loops,
innermost first, each ``(count, stride)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import TensorgateError

WORDS = 64
DIMS = 8
END, GEMM, EW, CELL, GCELL, INPUT = 0, 1, 2, 3, 4, 5
INPUT_BACKGROUND = 1  # INPUT word 3: the next instructions run while the codes arrive
WAITS_FOR_INPUT = 1 << 24  # word 0: start once the last INPUT's codes are all written (every INPUT has it)
INPUT_STEP, INPUT_SOURCE = 4, 5  # INPUT words: the time step and the streamed input it takes (for the host)
WIDE_LO, WIDE_HI = -(1 << 63), (1 << 63) - 1
MAX_ROW_GROUPS, LANES_PER_ROW_GROUP = 16, 8
MAX_DRAIN_LANES, LANES_PER_DRAIN_LANE = 4, 32
MASK64 = (1 << 64) - 1

# GEMM / EW word positions
A_BASE, O_BASE, I_BASE = 1, 18, 35
B_BASE, B_K, B_TILES, B_ROWS, COLUMNS = 52, 53, 54, 55, 56
ACC_SHIFT, INIT_SHIFT, SHIFT, FLAGS, LO, HI, RESULTS = 57, 58, 59, 60, 61, 62, 63
ROUND_EVEN, INIT_EN = 1, 2

# CELL word positions
CELL_PRE = (1, 2, 3, 4)  # rows of pre_i, pre_o, pre_f, pre_c
(CELL_C, CELL_H, CELL_Y, CELL_HIDDEN, CELL_LEN, CELL_T, CELL_FLAGS, CELL_ONE, CELL_FC, CELL_IG, CELL_C_SHIFT,
 CELL_C_LO, CELL_C_HI, CELL_H_SHIFT, CELL_H_LO, CELL_H_HI, CELL_G_LO, CELL_G_HI) = range(5, 23)
CELL_UNITS = 24  # σ, tanh, tanh_cell at 24 + 8u: pwl, lo, span-1, index_shift, offset_drop, guard, base
HAS_LEN, INPUT_FORGET, CELL_ROUND_EVEN, WRITE_Y = 1, 2, 4, 8

# GCELL word positions (GRU and RNN cell unit)
(GC_PRE, GC_PRE_R, GC_CANDIDATE, GC_GX_H, GC_H, GC_Y, GC_HIDDEN, GC_LEN, GC_T, GC_FLAGS, GC_ONE,
 GC_N_PROD_SHIFT, GC_N_GX_SHIFT, GC_N_SHIFT, GC_N_LO, GC_N_HI, GC_H_N_SHIFT, GC_H_Z_SHIFT, GC_H_SHIFT,
 GC_H_LO, GC_H_HI, GC_UNIT_LO, GC_UNIT_HI) = range(1, 24)
GC_UNITS = 24  # σ (or the RNN's unit), tanh at 24 + 8u: as CELL_UNITS
GC_HAS_LEN, GC_ROUND_EVEN, GC_WRITE_Y, GC_LINEAR_BEFORE_RESET, GC_RELU = 1, 2, 4, 8, 64
GC_MODE_SHIFT = 4
GC_RNN, GC_RESET, GC_UPDATE = 0, 1, 2


class LoweringError(TensorgateError):
    """A module (or part of one) that the accelerator cannot execute."""


@dataclass(frozen=True)
class Loops:
    base: int
    dims: tuple[tuple[int, int], ...]  # (count, stride), innermost first

    @property
    def count(self) -> int:
        return int(np.prod([c for c, _ in self.dims], dtype=np.int64)) if self.dims else 1


def merge_dims(dims: list[tuple[int, tuple[int, ...]]]) -> list[tuple[int, tuple[int, ...]]]:
    """Drop loops of count 1 and fuse a loop into the one inside it wherever every walk's
    stride is the inner stride times the inner count (one loop then walks both)."""
    merged: list[tuple[int, tuple[int, ...]]] = []
    for count, strides in dims:
        if count == 1:
            continue
        if merged:
            inner_count, inner_strides = merged[-1]
            if all(s == i * inner_count for s, i in zip(strides, inner_strides)):
                merged[-1] = (inner_count * count, inner_strides)
                continue
        merged.append((count, strides))
    return merged


def instruction() -> np.ndarray:
    return np.zeros(WORDS, np.uint64)


def _put(words: np.ndarray, index: int, value: int) -> None:
    words[index] = np.uint64(int(value) & MASK64)


def _put_loops(words: np.ndarray, base_index: int, loops: Loops, what: str) -> None:
    if len(loops.dims) > DIMS:
        raise LoweringError(f"{what} needs {len(loops.dims)} nested loops; the address generators have {DIMS}")
    _put(words, base_index, loops.base)
    for d, (count, stride) in enumerate(loops.dims):
        _put(words, base_index + 1 + d, count)
        _put(words, base_index + 1 + DIMS + d, stride)


@dataclass(frozen=True)
class Narrowing:
    """``clamp(round((x << acc_shift) + (init << init_shift), shift), lo, hi)``."""

    acc_shift: int
    init_shift: int
    shift: int
    lo: int
    hi: int
    round_even: bool


def _put_narrowing(words: np.ndarray, narrowing: Narrowing, init: bool, results: int) -> None:
    if not (0 <= narrowing.acc_shift < 64 and 0 <= narrowing.init_shift < 64 and -128 <= narrowing.shift < 128):
        raise LoweringError(f"alignment shifts {narrowing} are beyond the datapath's range")
    _put(words, ACC_SHIFT, narrowing.acc_shift)
    _put(words, INIT_SHIFT, narrowing.init_shift)
    _put(words, SHIFT, narrowing.shift)
    _put(words, FLAGS, (ROUND_EVEN if narrowing.round_even else 0) | (INIT_EN if init else 0))
    _put(words, LO, narrowing.lo)
    _put(words, HI, narrowing.hi)
    _put(words, RESULTS, results)


def row_groups(pes: int) -> int:
    """The row groups a build of ``pes`` lanes has: a GEMM runs up to this many rows at once
    on lane groups of ``pes / groups`` lanes (each its own read port of the banked scratchpad)."""
    return min(MAX_ROW_GROUPS, max(1, pes // LANES_PER_ROW_GROUP))


def drain_lanes(pes: int) -> int:
    """The results a build of ``pes`` lanes drains a cycle (write ports of the banked
    scratchpad): enough that a tile of ``pes`` results drains within a K of ``pes / lanes``."""
    return min(MAX_DRAIN_LANES, max(1, pes // LANES_PER_DRAIN_LANE))


def scratch_banks(pes: int) -> int:
    """The scratchpad's banks (word w in bank w mod banks): one per read or write port a
    cycle may need."""
    return max(row_groups(pes), drain_lanes(pes))


@dataclass(frozen=True)
class Lanes:
    """How a GEMM uses the lanes: ``groups`` row groups (group g reads A at ``a_group_stride``
    * g from the A walk) and ``drain`` results drained a cycle (result j of a drain cycle at
    ``out_stride`` * j from the output walk, its init at ``init_stride`` * j)."""

    groups: int = 1
    a_group_stride: int = 0
    drain: int = 1
    out_stride: int = 0
    init_stride: int = 0


def gemm(a: Loops, out: Loops, init: Loops | None, b_base: int, k: int, tiles: int, rows: int, columns: int,
         narrowing: Narrowing, lanes: Lanes = Lanes()) -> np.ndarray:
    """A GEMM of ``rows`` rows; with ``lanes.groups`` > 1 the A walk covers ``rows / groups``
    row steps, and with ``lanes.drain`` > 1 the output and init walks each drain cycle's first."""
    words = instruction()
    _put(words, 0, GEMM | ((lanes.groups.bit_length() - 1) << 8) | ((lanes.drain.bit_length() - 1) << 16))
    _put_loops(words, A_BASE, a, "the A operand")
    _put_loops(words, O_BASE, out, "the output")
    _put_loops(words, I_BASE, init if init is not None else Loops(0, out.dims), "the init operand")
    for index, base, stride in ((A_BASE, a.base, lanes.a_group_stride), (O_BASE, out.base, lanes.out_stride),
                                (I_BASE, init.base if init is not None else 0, lanes.init_stride)):
        _put(words, index, (base & 0xFFFFFFFF) | ((stride & 0xFFFFFFFF) << 32))
    for index, value in ((B_BASE, b_base), (B_K, k), (B_TILES, tiles), (B_ROWS, rows // lanes.groups),
                         (COLUMNS, columns)):
        _put(words, index, value)
    _put_narrowing(words, narrowing, init is not None, rows * columns)
    return words


def elementwise(x: Loops, out: Loops, init: Loops | None, narrowing: Narrowing) -> np.ndarray:
    words = instruction()
    _put(words, 0, EW)
    _put_loops(words, A_BASE, x, "the elementwise operand")
    _put_loops(words, O_BASE, out, "the elementwise output")
    _put_loops(words, I_BASE, init if init is not None else Loops(0, out.dims), "the elementwise init")
    _put_narrowing(words, narrowing, init is not None, out.count)
    return words


def cell(fields: dict[int, int], opcode: int = CELL) -> np.ndarray:
    words = instruction()
    _put(words, 0, opcode)
    for index, value in fields.items():
        _put(words, index, value)
    return words


def end() -> np.ndarray:
    return instruction()


def _signed(word) -> int:
    value = int(word) & MASK64
    return value - (1 << 64) if value >> 63 else value


def _walk(words: np.ndarray, base_index: int) -> np.ndarray:
    """The addresses an address generator walks (``_put_loops``'s layout), innermost loop
    fastest; a count of 0 is an unused loop."""
    addresses = np.array([int(words[base_index]) & 0xFFFFFFFF], np.int64)
    for d in range(DIMS):
        count = int(words[base_index + 1 + d]) & 0xFFFFFFFF
        stride = _signed(words[base_index + 1 + DIMS + d])
        if count > 1:
            addresses = (np.arange(count, dtype=np.int64)[:, None] * stride + addresses[None, :]).ravel()
    return addresses


def _high_signed(word) -> int:
    """The signed 32-bit field in bits 63:32 of a walk's base word."""
    return _signed(((int(word) >> 32) & 0xFFFFFFFF) << 32) >> 32


def _spread(walk: np.ndarray, count: int, stride: int) -> np.ndarray:
    """Every address ``count`` parallel accesses at ``stride`` apart reach from ``walk``."""
    return (walk[None, :] + stride * np.arange(count, dtype=np.int64)[:, None]).ravel()


def address_fields(words: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The instruction's scratchpad address fields, each with every address read or
    written from it (the scratchpad allocator moves them)."""
    opcode = int(words[0]) & 0xFF
    if opcode in (GEMM, EW):
        groups = 1 << ((int(words[0]) >> 8) & 0xFF) if opcode == GEMM else 1
        drain = 1 << ((int(words[0]) >> 16) & 0xFF) if opcode == GEMM else 1
        fields = [(A_BASE, _spread(_walk(words, A_BASE), groups, _high_signed(words[A_BASE]))),
                  (O_BASE, _spread(_walk(words, O_BASE), drain, _high_signed(words[O_BASE])))]
        if int(words[FLAGS]) & INIT_EN:
            fields.append((I_BASE, _spread(_walk(words, I_BASE), drain, _high_signed(words[I_BASE]))))
        return fields
    if opcode == INPUT:
        return [(1, int(words[1]) + np.arange(int(words[2]), dtype=np.int64))]
    if opcode == GCELL:
        hidden = np.arange(int(words[GC_HIDDEN]), dtype=np.int64)
        fields = [(index, int(words[index]) + hidden) for index in _gcell_rows(words)]
        if int(words[GC_FLAGS]) & GC_HAS_LEN:
            fields.append((GC_LEN, np.array([int(words[GC_LEN])], np.int64)))
        return fields
    if opcode == CELL:
        hidden = np.arange(int(words[CELL_HIDDEN]), dtype=np.int64)
        flags = int(words[CELL_FLAGS])
        rows = [*CELL_PRE, CELL_C, CELL_H] + ([CELL_Y] if flags & WRITE_Y else [])
        fields = [(index, int(words[index]) + hidden) for index in rows]
        if flags & HAS_LEN:
            fields.append((CELL_LEN, np.array([int(words[CELL_LEN])], np.int64)))
        return fields
    return []


def accesses(words: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The scratchpad addresses the instruction reads and those it writes."""
    fields = dict(address_fields(words))
    opcode = int(words[0]) & 0xFF
    if opcode in (GEMM, EW):
        return [fields[A_BASE]] + ([fields[I_BASE]] if I_BASE in fields else []), [fields[O_BASE]]
    if opcode == CELL:
        reads = [fields[index] for index in (*CELL_PRE, CELL_C)] + ([fields[CELL_LEN]] if CELL_LEN in fields else [])
        return reads, [fields[index] for index in (CELL_C, CELL_H, CELL_Y) if index in fields]
    if opcode == INPUT:
        return [], [fields[1]]
    if opcode == GCELL:
        mode = (int(words[GC_FLAGS]) >> GC_MODE_SHIFT) & 3
        written = {GC_RNN: (GC_H, GC_Y), GC_RESET: (GC_Y,), GC_UPDATE: (GC_H, GC_Y)}[mode]
        reads = [a for index, a in fields.items() if index not in written or (mode == GC_UPDATE and index == GC_H)]
        return reads, [fields[index] for index in written if index in fields]
    return [], []


def _gcell_rows(words: np.ndarray) -> list[int]:
    """The H-word rows a GCELL reads or writes, by its mode (``tg_gru_rnn_cell.sv``)."""
    flags = int(words[GC_FLAGS])
    y = [GC_Y] if flags & GC_WRITE_Y else []
    mode = (flags >> GC_MODE_SHIFT) & 3
    if mode == GC_RNN:
        return [GC_PRE, GC_H] + y
    if mode == GC_RESET:
        return [GC_PRE, GC_H, GC_Y]
    return [GC_PRE, GC_PRE_R, GC_CANDIDATE, GC_GX_H, GC_H] + y


def input_pack(code_width: int, drain_lanes: int, banks: int) -> int:
    """Codes an INPUT instruction takes per input-stream word (``IN_PACK`` in tg_accel.sv):
    one per scratchpad write port (the drain's) and bank, at most as many as 64 bits hold."""
    return min(drain_lanes, banks, 64 // code_width)


def pack_input(codes: np.ndarray, pack: int) -> np.ndarray:
    """The input-stream words carrying one INPUT instruction's ``codes`` in order, ``pack``
    a word: code j of a word in bits [j * 64 // pack, (j + 1) * 64 // pack), two's complement;
    the last word's unused fields zero."""
    field = 64 // pack
    padded = np.zeros(-(-len(codes) // pack) * pack, np.int64)
    padded[:len(codes)] = codes
    bits = (padded.astype(np.uint64) & np.uint64((1 << field) - 1 if field < 64 else MASK64)).reshape(-1, pack)
    shifts = (np.arange(pack, dtype=np.uint64) * np.uint64(field))
    return np.bitwise_or.reduce(bits << shifts, axis=1).astype(np.int64)


def stream_input(base: int, count: int, background: bool = False, step: int = 0, source: int = 0) -> np.ndarray:
    """INPUT: the next ``count`` codes of the input stream to scratchpad words ``base`` on
    (``input_pack`` codes a stream word, ``pack_input``), once the INPUT before has all its
    codes.  In the ``background`` the instruction only arms the stream and the program goes
    on while the codes arrive, written in the cycles the scratchpad's write ports are free;
    the first instruction reading them ``waits_for_input``.  Words 4 and 5 (``step`` and
    ``source``: time step ``step`` of streamed input ``source``) are for the host, which
    sends the steps in the program's order (``Image.stream_words``); the hardware ignores them."""
    words = instruction()
    _put(words, 0, INPUT | WAITS_FOR_INPUT)
    _put(words, 1, base)
    _put(words, 2, count)
    _put(words, 3, INPUT_BACKGROUND if background else 0)
    _put(words, INPUT_STEP, step)
    _put(words, INPUT_SOURCE, source)
    return words


def waits_for_input(words: np.ndarray) -> np.ndarray:
    """The instruction ``words`` made to start only once the last INPUT's codes are all written."""
    waiting = words.copy()
    _put(waiting, 0, int(words[0]) | WAITS_FOR_INPUT)
    return waiting
