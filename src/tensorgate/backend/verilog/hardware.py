"""The accelerator build: its generic parameters, the RTL design Verilator builds, and an
analytical estimate of its memories (depth × width per memory, block RAMs on an
UltraScale+) that synthesis counts are compared with.

Two sizings of one image: ``AccelConfig.sized`` gives every memory its word width from the
fixed-point formats and its depth from the program (what an artifact is synthesized at);
``AccelConfig.for_image`` rounds the depths up to shared power-of-two defaults, so one
Verilator build serves every model whose images fit it (tests and users share builds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ...ir.types import FixedType
from . import RTL_DIR, rtl_sources
from .image import Image
from .isa import CELL, GCELL, WORDS

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

    def parameters(self) -> dict[str, int]:
        return {"P": self.pes, "CODE_W": self.code_width, "S_W": self.scratch_width, "PROG_DEPTH": self.prog_depth,
                "W_DEPTH": self.w_depth, "S_DEPTH": self.s_depth, "T_DEPTH": self.t_depth, "GROUPS": self.groups,
                "DRAIN_W": self.drain_lanes, "BANKS": self.banks,
                "LSTM_CELL": int(self.lstm_cell), "GRU_RNN_CELL": int(self.gru_rnn_cell)}

    def memories(self) -> list["Memory"]:
        """The build's memories as ``tg_accel.sv`` instantiates them: the scratchpad is two
        copies (operand reads, init reads) of ``banks`` banks each (``tg_ram_banked``)."""
        return [Memory("program", 1, self.prog_depth, 64), Memory("weights", self.pes, self.w_depth, self.code_width),
                Memory("scratchpad", 2 * self.banks, bank_depth(self.s_depth, self.banks), self.scratch_width),
                Memory("activation_tables", 1, self.t_depth, 64)]

    def memory_bits(self) -> dict[str, int]:
        """On-chip bits per memory."""
        return {memory.name: memory.bits for memory in self.memories()}

    def memory_estimate(self) -> dict:
        """Bits and UltraScale+ block RAMs per memory and in all (``Memory.bram36``)."""
        by_memory = {m.name: {"copies": m.copies, "depth": m.depth, "width": m.width, "bits": m.bits,
                              "bram36": m.bram36} for m in self.memories()}
        return {"bits": sum(m["bits"] for m in by_memory.values()),
                "bram36": sum(m["bram36"] for m in by_memory.values()), "by_memory": by_memory}

    def as_dict(self) -> dict:
        return asdict(self)


LUTRAM_DEPTH = 64
"""Memories this shallow map to distributed RAM (RAM64M), not block RAM."""


@dataclass(frozen=True)
class Memory:
    """``copies`` memories of ``depth`` words of ``width`` bits."""

    name: str
    copies: int
    depth: int
    width: int

    @property
    def bits(self) -> int:
        return self.copies * self.depth * self.width

    @property
    def bram36(self) -> float:
        """UltraScale+ block RAMs (in RAMB36s, a RAMB18 a half) for all copies, as
        ``block_rams`` tiles one (every port of ``tg_ram_dp`` may write: true dual port);
        0 for a memory that maps to distributed RAM."""
        return 0.0 if self.depth <= LUTRAM_DEPTH else self.copies * block_rams(self.depth, self.width, "xcup")


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
MULTIPLIER_INPUTS = {"xcup": (27, 18), "ecp5": (18, 18)}
"""The signed operand widths one DSP multiplier takes (DSP48E2 27x18, MULT18X18D 18x18)."""


def block_rams(depth: int, width: int, family: str, simple_dual_port: bool = False) -> float:
    """Block RAMs of ``family`` (in its largest block: BRAM36 or DP16KD) one memory of
    ``depth`` x ``width`` takes: the cheapest tiling by one block shape, tiles in depth
    times tiles in width; a memory with one read and one write port may use the wider
    simple dual-port shape."""
    costs = [cost * -(-depth // d) * -(-width // w)
             for _, cost, shapes, wide in BLOCK_RAMS[family]
             for d, w in shapes + ((wide,) if simple_dual_port else ())]
    return min(costs)


def multipliers(a_width: int, b_width: int, family: str) -> int:
    """DSP multipliers of ``family`` a signed ``a_width`` x ``b_width`` product takes."""
    wide, narrow = MULTIPLIER_INPUTS[family]
    return min(-(-a_width // wide) * -(-b_width // narrow), -(-a_width // narrow) * -(-b_width // wide))
