"""The ONNX lowering of ``gru``: the ``GRU`` node (strategies ``native`` and ``projected``)
or a ``Scan`` over the cell of ``GRUCell`` (``scan``); see the package docstring and
``recurrent``."""

from __future__ import annotations

from .graph import GraphBuilder
from .maps import apply_maps
from .ops import lowers
from .recurrent import FloatCell, activation, clipped, lower_recurrent, slice_rows, split_rows


@lowers("gru")
def lower_gru(b, op, inputs, results):
    lower_recurrent(b, op, inputs, results, GRUCell)


class GRUCell(FloatCell):
    """The float GRU cell in elementwise ONNX ops, in the float kernel's order
    (``interpreter.gru``).  R is applied as the kernel reads it, except that a stacked
    R of ``linear_before_reset = 0`` is applied whole twice, dense or not (to ``h`` for
    the z and r rows, to ``r ⊙ h`` for the candidate's).  With ``linear_before_reset``
    only ``Rb_z`` and ``Rb_r`` join the projection; ``Rb_h`` joins ``R_h·h``."""

    def __init__(self, op):
        super().__init__(op)
        self.lbr = op.attrs["linear_before_reset"]
        self.folded_rows = 2 * self.hidden if self.lbr else None
        self.recurrent_bias: list[str | None] = [None] * self.dirs

    def projected(self, b: GraphBuilder, d: int, row: str) -> None:
        if self.lbr:
            self.recurrent_bias[d] = slice_rows(b, row, 5 * self.hidden, 6 * self.hidden, f"bias{d}_rb_h")

    def step(self, b: GraphBuilder, d: int, states: list[str], gates_x: str) -> list[str]:
        (h,) = states
        hidden, dtype, clip = self.hidden, self.dtype, self.op.attrs["clip"]
        f, g = self.params[2 * d:2 * d + 2]
        maps = self.maps("r", d)
        gx_zr, gx_h = split_rows(b, gates_x, [2 * hidden, hidden], f"gx{d}_split")
        if self.lbr:
            rows = self._apply(b, d, maps, h, "r")
            r_zr, r_h = split_rows(b, rows, [2 * hidden, hidden], f"r{d}_split")
            if self.recurrent_bias[d] is not None:
                r_h = b.add("Add", [r_h, self.recurrent_bias[d]], f"r{d}_h_biased")
        else:
            zr_maps = maps[:2] if len(maps) == 3 else maps
            r_zr = self._apply(b, d, zr_maps, h, "r")
            if len(maps) == 1:
                r_zr = slice_rows(b, r_zr, 0, 2 * hidden, f"r{d}_zr", axis=1)
        zr = activation(b, f, clipped(b, b.add("Add", [r_zr, gx_zr], f"pre_zr{d}"), clip, dtype, f"zr{d}"), dtype,
                        f"zr{d}")
        z, r = split_rows(b, zr, [hidden, hidden], f"zr{d}_split")
        if self.lbr:
            candidate = b.add("Mul", [r, r_h], f"reset{d}")
        else:
            reset = b.add("Mul", [r, h], f"reset{d}")
            candidate = self._apply(b, d, maps[2:] if len(maps) == 3 else maps, reset, "rh", named=len(maps) == 3)
            if len(maps) == 1:
                candidate = slice_rows(b, candidate, 2 * hidden, 3 * hidden, f"rh{d}_h", axis=1)
        pre_h = b.add("Add", [gx_h, candidate], f"pre_h{d}")
        n = activation(b, g, clipped(b, pre_h, clip, dtype, f"h{d}"), dtype, f"n{d}")
        keep = b.add("Mul", [b.add("Sub", [b.scalar(1, dtype, f"one{d}"), z], f"update{d}"), n], f"write{d}")
        return [b.add("Add", [keep, b.add("Mul", [z, h], f"carry{d}")], f"h{d}_new")]

    def _apply(self, b: GraphBuilder, d: int, maps, x: str, role: str, named: bool = True) -> str:
        """``maps`` applied to ``x``; ``named``: an application the metadata lists."""
        end = apply_maps(b, maps, x, 2, self.dtype, f"{role}{d}")
        if named:
            self.r_ends[d].append(end)
        return end
