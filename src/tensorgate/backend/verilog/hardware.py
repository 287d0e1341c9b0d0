"""The accelerator build: its generic parameters, the RTL design Verilator builds, and an
analytical estimate of its memories (depth × width per memory; block RAMs and URAMs on an
UltraScale+, DP16KDs on an ECP5) that synthesis counts are compared with.

Each memory is mapped to one primitive (``memory_map``): LUT RAM when it is shallow, else
block RAM or, on a family that has it, UltraRAM, whichever assignment of all memories
leaves the device's block RAM and URAM budgets least full; the RTL is told by a
``ram_style`` parameter per memory (``style_parameters``).

Two sizings of one image: ``AccelConfig.sized`` gives every memory its word width from the
fixed-point formats and its depth from the program (what an artifact is synthesized at);
``AccelConfig.for_image`` rounds the depths up to shared power-of-two defaults, so one
Verilator build serves every model whose images fit it (tests and users share builds).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from itertools import product
from pathlib import Path

from ...ir.types import FixedType
from . import RTL_DIR, rtl_sources
from .image import Image
from .isa import CELL, GCELL, WORDS, input_pack

ACCEL_DIR = Path(__file__).parent / "accel"
TOP = "tg_accel"
DEFAULT_DEPTHS = {"prog_depth": 256 * WORDS, "w_depth": 4096, "s_depth": 8192, "t_depth": 4096}
"""Words per memory (the program memory's are 64-bit instruction words, ``WORDS`` per instruction)."""
STORAGE_WIDTHS = (8, 16, 32, 64)
MIN_DEPTH = 2
"""The shallowest memory (a one-word memory would have a zero-width address)."""


def accel_sources() -> list[Path]:
    """Leaf modules and the accelerator's own files (the top last)."""
    own = sorted(ACCEL_DIR.glob("*.sv"))
    return [p for p in rtl_sources() if p.parent == RTL_DIR] + [p for p in own if p.stem != TOP] + [ACCEL_DIR / f"{TOP}.sv"]


@dataclass(frozen=True)
class AccelConfig:
    pes: int
    code_width: int = 16
    scratch_width: int = 64
    prog_depth: int = DEFAULT_DEPTHS["prog_depth"]
    w_depth: int = DEFAULT_DEPTHS["w_depth"]
    s_depth: int = DEFAULT_DEPTHS["s_depth"]
    t_depth: int = DEFAULT_DEPTHS["t_depth"]
    groups: int = 1
    lstm_cell: bool = True
    gru_rnn_cell: bool = True
    drain_lanes: int = 1
    banks: int = 1

    @classmethod
    def sized(cls, image: Image, code_width: int) -> "AccelConfig":
        """The build ``image`` needs and no more: codes and scratchpad words at their
        storage widths, every memory exactly as deep as its image, and only the cell units
        its program's instructions use (a unit left out costs no logic and no timing path)."""
        depths = {key: max(MIN_DEPTH, need) for key, need in image_depths(image).items()}
        opcodes = image.opcodes()
        return cls(image.pes, **image_widths(image, code_width), **depths, groups=image.groups,
                   drain_lanes=image.drain_lanes, banks=image.banks, lstm_cell=CELL in opcodes,
                   gru_rnn_cell=GCELL in opcodes)

    @classmethod
    def for_image(cls, image: Image, code_width: int) -> "AccelConfig":
        """The shared build for ``image`` (``shared``)."""
        return cls.sized(image, code_width).shared()

    def shared(self) -> "AccelConfig":
        """This build with its memories at the default depths, deepened (powers of two) where
        it needs more, and every cell unit: the same words at the same addresses, and one
        simulation build for every model of these widths that fits."""
        depths = {key: max(DEFAULT_DEPTHS[key], 1 << max(0, (getattr(self, key) - 1).bit_length()))
                  for key in DEFAULT_DEPTHS}
        return replace(self, **depths, lstm_cell=True, gru_rnn_cell=True)

    @classmethod
    def from_parameters(cls, parameters: dict[str, int]) -> "AccelConfig":
        """The build whose ``parameters()`` these are (a manifest's ``hardware.parameters``)."""
        names = {"P": "pes", "CODE_W": "code_width", "S_W": "scratch_width", "PROG_DEPTH": "prog_depth",
                 "W_DEPTH": "w_depth", "S_DEPTH": "s_depth", "T_DEPTH": "t_depth", "GROUPS": "groups",
                 "DRAIN_W": "drain_lanes", "BANKS": "banks", "LSTM_CELL": "lstm_cell", "GRU_RNN_CELL": "gru_rnn_cell"}
        values = {field: parameters[name] for name, field in names.items() if name in parameters}
        flags = {f.name for f in fields(cls) if f.type in (bool, "bool")}
        return cls(**{k: bool(v) if k in flags else int(v) for k, v in values.items()})

    def parameters(self) -> dict[str, int]:
        return {"P": self.pes, "CODE_W": self.code_width, "S_W": self.scratch_width, "PROG_DEPTH": self.prog_depth,
                "W_DEPTH": self.w_depth, "S_DEPTH": self.s_depth, "T_DEPTH": self.t_depth, "GROUPS": self.groups,
                "DRAIN_W": self.drain_lanes, "BANKS": self.banks,
                "LSTM_CELL": int(self.lstm_cell), "GRU_RNN_CELL": int(self.gru_rnn_cell)}

    @property
    def input_pack(self) -> int:
        """Codes an INPUT instruction takes per input-stream word in this build (``isa.input_pack``)."""
        return input_pack(self.code_width, self.drain_lanes, self.banks)

    def memories(self) -> list["Memory"]:
        """The build's memories as ``tg_accel.sv`` instantiates them, each with the parameter
        that sets its ram_style: the scratchpad is two copies (operand reads, init reads) of
        ``banks`` banks each (``tg_ram_banked``), each copy a memory of its own."""
        rows = bank_depth(self.s_depth, self.banks)
        return [Memory("program", 1, self.prog_depth, 64, "PROG_RAM"),
                Memory("weights", self.pes, self.w_depth, self.code_width, "W_RAM"),
                Memory("scratchpad_operands", self.banks, rows, self.scratch_width, "SA_RAM", write_port_reads=False),
                Memory("scratchpad_init", self.banks, rows, self.scratch_width, "SI_RAM", write_port_reads=False),
                Memory("activation_tables", 1, self.t_depth, 64, "T_RAM")]

    def memory_bits(self) -> dict[str, int]:
        """On-chip bits per memory."""
        return {memory.name: memory.bits for memory in self.memories()}

    def memory_map(self, family: str, bram36_budget: float, uram_budget: float, uram: str = "auto") -> dict[str, str]:
        """The primitive of each memory (``LUTRAM``, ``BRAM``, ``URAM``) on ``family``: a
        shallow memory is LUT RAM; the others take block RAM or URAM, ``uram`` saying how:
        ``auto`` the assignment whose fuller budget (block RAM over ``bram36_budget`` in
        BRAM36, URAM over ``uram_budget``) is least full, then the one of fewer URAMs;
        ``on`` URAM wherever the family has it; ``off`` block RAM everywhere.  No URAM
        budget means no URAM."""
        memories = self.memories()
        choices = [m.primitives(family, uram) for m in memories]

        def fullness(assignment: tuple[str, ...]) -> tuple[float, int]:
            used = [m.blocks(primitive, family) for m, primitive in zip(memories, assignment)]
            bram, urams = sum(b.bram36 for b in used), sum(b.uram for b in used)
            uram_share = urams / uram_budget if uram_budget else (float("inf") if urams else 0.0)
            return max(bram / bram36_budget, uram_share), urams

        best = min(product(*choices), key=fullness)
        return {m.name: primitive for m, primitive in zip(memories, best)}

    def all_block_ram(self, family: str = "xcup") -> dict[str, str]:
        """Every memory in block RAM (LUT RAM where shallow): the map without URAM."""
        return {m.name: m.primitives(family, "off")[0] for m in self.memories()}

    def memory_choices(self) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """Per family, the cells each memory takes in each primitive it may map to: what
        ``synth --device`` chooses from (``memory_map``)."""
        return {family: {m.name: {primitive: m.blocks(primitive, family).cells for primitive in m.primitives(family)}
                         for m in self.memories()} for family in BLOCK_RAMS}

    def style_parameters(self, primitives: dict[str, str]) -> dict[str, str]:
        """The ``tg_accel`` parameters that map each memory to its primitive."""
        return {m.parameter: RAM_STYLES[primitives[m.name]] for m in self.memories()}

    def memory_estimate(self, family: str = "xcup", primitives: dict[str, str] | None = None) -> dict:
        """Bits and blocks per memory and in all on ``family`` with each memory in its
        primitive (``primitives``; default: block RAM, ``all_block_ram``): the cells yosys
        maps it to (``Memory.blocks``), ``bram36`` in the family's largest block RAM (a
        RAMB18 a half) and ``uram``."""
        primitives = primitives or self.all_block_ram(family)
        by_memory = {}
        for m in self.memories():
            blocks = m.blocks(primitives[m.name], family)
            by_memory[m.name] = {"copies": m.copies, "depth": m.depth, "width": m.width, "bits": m.bits,
                                 "primitive": primitives[m.name], "cells": blocks.cells, "bram36": blocks.bram36,
                                 "uram": blocks.uram}
        cells = sum((Counter(entry["cells"]) for entry in by_memory.values()), Counter())
        return {"family": family, "bits": sum(m["bits"] for m in by_memory.values()),
                "bram36": sum(m["bram36"] for m in by_memory.values()),
                "uram": sum(m["uram"] for m in by_memory.values()), "cells": dict(sorted(cells.items())),
                "by_memory": by_memory}

    def as_dict(self) -> dict:
        return asdict(self)


LUTRAM_DEPTH = 64
"""Memories this shallow map to distributed RAM (RAM64M, TRELLIS_DPR16X4), not block RAM."""
LUTRAM, BRAM, URAM = "lutram", "bram", "uram"
"""The primitives a memory maps to: LUT RAM, block RAM, UltraRAM."""
RAM_STYLES = {LUTRAM: "auto", BRAM: "block", URAM: "ultra"}
"""The ram_style (``tg_ram_dp`` STYLE) that asks yosys for each primitive (a shallow
memory is left to yosys, which takes LUT RAM)."""
URAM_CELL, URAM_SHAPE, URAM_BYTES = "URAM288", (4096, 72), (8, 9)
"""UltraScale+ UltraRAM: 4K x 72 bits, both ports read/write on one clock, no narrower
shape, byte write enables of 8 or 9 bits (UG573; yosys ``xilinx/urams.txt``)."""
URAM_FAMILIES = ("xcup",)


@dataclass(frozen=True)
class Blocks:
    """The RAM cells one memory (all its copies) maps to, by yosys cell type, and what they
    use of the budgets: ``bram36`` in the family's largest block RAM, ``uram``."""

    cells: dict[str, int]
    bram36: float
    uram: int


@dataclass(frozen=True)
class Memory:
    """``copies`` memories of ``depth`` words of ``width`` bits; ``parameter`` is the
    ``tg_accel`` parameter that sets their ram_style; ``write_port_reads``: the port that
    writes also reads (the host port of ``tg_ram_dp``), not so in ``tg_ram_banked``'s banks."""

    name: str
    copies: int
    depth: int
    width: int
    parameter: str = ""
    write_port_reads: bool = True

    @property
    def bits(self) -> int:
        return self.copies * self.depth * self.width

    @property
    def bram36(self) -> float:
        """UltraScale+ block RAMs (in RAMB36s, a RAMB18 a half) for all copies, as
        ``block_rams`` tiles one (every port of ``tg_ram_dp`` may write: true dual port);
        0 for a memory that maps to distributed RAM."""
        return self.blocks(self.primitives("xcup", "off")[0], "xcup").bram36

    def primitives(self, family: str, uram: str = "auto") -> tuple[str, ...]:
        """What this memory may map to on ``family``: LUT RAM when shallow; else block RAM
        and, where the family has UltraRAM, URAM (only URAM for ``uram`` ``on``, none for
        ``off``)."""
        if self.depth <= LUTRAM_DEPTH:
            return (LUTRAM,)
        if family not in URAM_FAMILIES or uram == "off":
            return (BRAM,)
        return (URAM,) if uram == "on" else (BRAM, URAM)

    def blocks(self, primitive: str, family: str) -> Blocks:
        """The cells of all copies in ``primitive``: block RAMs tiled by the cheapest
        true dual-port shape (``block_ram_tiling``), URAM288s in depth times width, with
        narrow words side by side in a row where the write port only writes."""
        if primitive == LUTRAM:
            return Blocks({}, 0.0, 0)
        if primitive == URAM:
            per_row = 1 if self.write_port_reads else uram_words_per_row(self.width)
            count = self.copies * -(-self.depth // (URAM_SHAPE[0] * per_row)) * -(-self.width // URAM_SHAPE[1])
            return Blocks({URAM_CELL: count}, 0.0, count)
        one_way = not self.write_port_reads and family in PSEUDO_DUAL_PORT_FAMILIES
        cell, cost, count = block_ram_tiling(self.depth, self.width, family, simple_dual_port=one_way)
        return Blocks({cell: self.copies * count}, self.copies * cost * count, 0)


def uram_words_per_row(width: int) -> int:
    """Words of ``width`` bits one 72-bit URAM row holds when yosys packs a narrow memory's
    words side by side, each written through its own byte enables (it does so where the
    write port does not read): as many as a power of two of whole bytes (8- or 9-bit)
    fits (8 for 8-bit words, 4 for 16-bit, 2 for 32-bit)."""
    fits = max(URAM_SHAPE[1] // byte // -(-width // byte) for byte in URAM_BYTES)
    return 1 << (max(fits, 1).bit_length() - 1)


def bank_depth(depth: int, banks: int) -> int:
    """Rows of one bank of a ``depth``-word memory in ``banks`` banks (``tg_ram_banked``)."""
    return max(MIN_DEPTH, -(-depth // banks))


def storage_width(bits: int) -> int:
    """The narrowest memory word of ``STORAGE_WIDTHS`` that holds ``bits``-bit codes."""
    return next((width for width in STORAGE_WIDTHS if bits <= width), STORAGE_WIDTHS[-1])


def image_widths(image: Image, code_width: int) -> dict[str, int]:
    """Lane operand / weight code width and scratchpad word width for ``image``."""
    return {"code_width": storage_width(max(code_width, image.code_width)),
            "scratch_width": storage_width(max(code_width, image.code_width, image.scratch_width))}


def image_depths(image: Image) -> dict[str, int]:
    return {"prog_depth": len(image.program) * WORDS, "w_depth": len(image.weight_rows),
            "s_depth": len(image.scratch), "t_depth": len(image.tables)}


def module_code_width(module) -> int:
    """The widest fixed-point code among the module's values."""
    widths = [v.type.dtype.width for v in module.values() if isinstance(v.type.dtype, FixedType)]
    return max(widths, default=2)


BLOCK_RAMS = {
    "xcup": (("RAMB36E2", 1.0, ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36)), (512, 72)),
             ("RAMB18E2", 0.5, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18)), (512, 36))),
    "ecp5": (("DP16KD", 1.0, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18)), (512, 36)),),
}
"""Each family's block RAMs: name, cost in the family's largest block (BRAM36 or DP16KD),
true dual-port depth x width shapes, and the wider simple dual-port shape (one read and
one write port) (UG573 RAMB36E2/RAMB18E2; ECP5 sysMEM DP16KD, PDPW16KD)."""
PSEUDO_DUAL_PORT_FAMILIES = ("ecp5",)
"""Families whose yosys mapping gives a memory with one read-only and one write-only port
the wide simple dual-port shape (ECP5's PDPW16KD: a banked scratchpad's 64-bit banks of
up to 512 rows take 2 DP16KDs, not 4)."""
MULTIPLIER_INPUTS = {"xcup": (27, 18), "ecp5": (18, 18)}
"""The signed operand widths one DSP multiplier takes (DSP48E2 27x18, MULT18X18D 18x18)."""


def block_ram_tiling(depth: int, width: int, family: str, simple_dual_port: bool = False) -> tuple[str, float, int]:
    """The cheapest tiling of one ``depth`` x ``width`` memory by one block-RAM shape of
    ``family`` (tiles in depth times tiles in width; a memory with one read and one write
    port may use the wider simple dual-port shape): the cell, its cost in the family's
    largest block, and the number of tiles (the larger block first among equal costs)."""
    tilings = [(cost * -(-depth // d) * -(-width // w), name, cost, -(-depth // d) * -(-width // w))
               for name, cost, shapes, wide in BLOCK_RAMS[family]
               for d, w in shapes + ((wide,) if simple_dual_port else ())]
    _, name, cost, count = min(tilings, key=lambda tiling: tiling[0])
    return name, cost, count


def block_rams(depth: int, width: int, family: str, simple_dual_port: bool = False) -> float:
    """Block RAMs of ``family`` (in its largest block: BRAM36 or DP16KD) one memory of
    ``depth`` x ``width`` takes (``block_ram_tiling``)."""
    _, cost, count = block_ram_tiling(depth, width, family, simple_dual_port)
    return cost * count


def multipliers(a_width: int, b_width: int, family: str) -> int:
    """DSP multipliers of ``family`` a signed ``a_width`` x ``b_width`` product takes."""
    wide, narrow = MULTIPLIER_INPUTS[family]
    return min(-(-a_width // wide) * -(-b_width // narrow), -(-a_width // narrow) * -(-b_width // wide))
