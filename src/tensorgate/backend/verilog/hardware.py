"""The accelerator build: its generic parameters and the RTL design Verilator builds.

One build serves every model whose images fit its memories: the parameters are only the
lane count P, the code width, the memory depths and the row groups (``isa.row_groups(P)``),
so tests and users share builds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ...ir.types import FixedType
from . import RTL_DIR, rtl_sources
from .image import Image
from .isa import WORDS

ACCEL_DIR = Path(__file__).parent / "accel"
TOP = "tg_accel"
DEFAULT_DEPTHS = {"prog_depth": 256, "w_depth": 4096, "s_depth": 8192, "t_depth": 4096}


def accel_sources() -> list[Path]:
    """Leaf modules and the accelerator's own files (the top last)."""
    own = sorted(ACCEL_DIR.glob("*.sv"))
    return [p for p in rtl_sources() if p.parent == RTL_DIR] + [p for p in own if p.stem != TOP] + [ACCEL_DIR / f"{TOP}.sv"]


@dataclass(frozen=True)
class AccelConfig:
    pes: int
    code_width: int = 16
    prog_depth: int = DEFAULT_DEPTHS["prog_depth"]
    w_depth: int = DEFAULT_DEPTHS["w_depth"]
    s_depth: int = DEFAULT_DEPTHS["s_depth"]
    t_depth: int = DEFAULT_DEPTHS["t_depth"]
    groups: int = 1

    @classmethod
    def for_image(cls, image: Image, code_width: int) -> "AccelConfig":
        """The default build, with memories deepened (powers of two) where the image needs it."""
        needs = {"prog_depth": len(image.program), "w_depth": len(image.weight_rows),
                 "s_depth": len(image.scratch), "t_depth": len(image.tables)}
        depths = {key: max(DEFAULT_DEPTHS[key], 1 << max(0, (needs[key] - 1).bit_length())) for key in needs}
        return cls(image.pes, 16 if max(code_width, image.code_width) <= 16 else 32, **depths, groups=image.groups)

    def parameters(self) -> dict[str, int]:
        return {"P": self.pes, "CODE_W": self.code_width, "PROG_DEPTH": self.prog_depth, "W_DEPTH": self.w_depth,
                "S_DEPTH": self.s_depth, "T_DEPTH": self.t_depth, "GROUPS": self.groups}

    def memory_bits(self) -> dict[str, int]:
        """On-chip bits per memory (the scratchpad is one replica per row group and one for
        the init stream: that many reads per cycle)."""
        return {"program": self.prog_depth * WORDS * 64, "weights": self.w_depth * self.pes * self.code_width,
                "scratchpad": (self.groups + 1) * self.s_depth * 64, "activation_tables": self.t_depth * 64}

    def as_dict(self) -> dict:
        return asdict(self)


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
