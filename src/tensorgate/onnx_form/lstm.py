"""The ONNX lowering of ``lstm``: the ``LSTM`` node (strategies ``native`` and
``projected``) or a ``Scan`` over the cell of ``LSTMCell`` (``scan``); see the package
docstring and ``recurrent``."""

from __future__ import annotations

import numpy as np

from .graph import GraphBuilder
from .maps import apply_maps
from .ops import lowers
from .recurrent import FloatCell, activation, clipped, lower_recurrent, split_rows


@lowers("lstm")
def lower_lstm(b, op, inputs, results):
    lower_recurrent(b, op, inputs, results, LSTMCell)


def direction_peepholes(b: GraphBuilder, peepholes: str, d: int, hidden: int) -> list[str]:
    """Direction ``d``'s peepholes p_i, p_o, p_f ``[H]`` each."""
    row = b.add("Gather", [peepholes, b.scalar(d, np.int64, f"peepholes{d}_index")], f"peepholes{d}", axis=0)
    b.add("Split", [row, b.ints([hidden] * 3, f"peepholes{d}_sizes")], f"peepholes{d}_split", count=3, axis=0)
    return b.outputs_of_last()


class LSTMCell(FloatCell):
    """The float LSTM cell in elementwise ONNX ops, in the float kernel's order."""

    def __init__(self, op):
        super().__init__(op)
        self.peepholes = None
        self.per_direction_peepholes: list[list[str] | None] = [None] * self.dirs

    def prepare(self, b: GraphBuilder) -> None:
        super().prepare(b)
        if self.op.attrs["peepholes"] is not None:
            self.peepholes = b.init(self.op.attrs["peepholes"].astype(self.dtype, copy=False), "P")
            self.per_direction_peepholes = [direction_peepholes(b, self.peepholes, d, self.hidden)
                                            for d in range(self.dirs)]

    def hint(self) -> dict:
        return {"bias": self.bias, "peepholes": self.peepholes}

    def step(self, b: GraphBuilder, d: int, states: list[str], gates_x: str) -> list[str]:
        h, c = states
        r = apply_maps(b, self.maps("r", d), h, 2, self.dtype, f"r{d}")
        self.r_ends[d].append(r)
        gates = b.add("Add", [r, gates_x], f"gates{d}")
        return list(self._update(b, d, gates, c))

    def _update(self, b: GraphBuilder, d: int, gates: str, c: str) -> tuple[str, str]:
        attrs, dtype, peepholes = self.op.attrs, self.dtype, self.per_direction_peepholes[d]
        f_act, g_act, h_act = self.params[3 * d:3 * d + 3]

        def clip(x: str, role: str) -> str:
            return clipped(b, x, attrs["clip"], dtype, f"{role}{d}")

        def act(params, x: str, role: str) -> str:
            return activation(b, params, x, dtype, f"{role}{d}")

        gate_i, gate_o, gate_f, gate_c = split_rows(b, gates, [self.hidden] * 4, f"gate_split{d}")
        if peepholes is not None:
            p_i, p_o, p_f = peepholes
            gate_i = b.add("Add", [gate_i, b.add("Mul", [p_i, c], f"peep_i{d}")], f"gate_i{d}")
            gate_f = b.add("Add", [gate_f, b.add("Mul", [p_f, c], f"peep_f{d}")], f"gate_f{d}")
        gate_i, gate_f, gate_c = (clip(g, role) for g, role in ((gate_i, "i"), (gate_f, "f"), (gate_c, "c")))
        if peepholes is None:
            gate_o = clip(gate_o, "o")
        i = act(f_act, gate_i, "i")
        if attrs["input_forget"]:
            f = b.add("Sub", [b.scalar(1, dtype, f"one{d}"), i], f"f{d}")
        else:
            f = act(f_act, gate_f, "f")
        g = act(g_act, gate_c, "g")
        c_new = b.add("Add", [b.add("Mul", [f, c], f"keep{d}"), b.add("Mul", [i, g], f"write{d}")], f"c{d}_new")
        if peepholes is not None:
            gate_o = clip(b.add("Add", [gate_o, b.add("Mul", [p_o, c_new], f"peep_o{d}")], f"gate_o{d}"), "o")
        o = act(f_act, gate_o, "o")
        h_new = b.add("Mul", [o, act(h_act, c_new, "h")], f"h{d}_new")
        return h_new, c_new
