"""The ONNX lowering of ``rnn``: the ``RNN`` node (strategies ``native`` and ``projected``)
or a ``Scan`` over the cell of ``RNNCell`` (``scan``); see the package docstring and
``recurrent``."""

from __future__ import annotations

from .graph import GraphBuilder
from .maps import apply_maps
from .ops import lowers
from .recurrent import FloatCell, activation, clipped, lower_recurrent


@lowers("rnn")
def lower_rnn(b, op, inputs, results):
    lower_recurrent(b, op, inputs, results, RNNCell)


class RNNCell(FloatCell):
    """The float RNN cell, ``h' = f(clip(R h + gates_x))``, in ONNX ops."""

    def step(self, b: GraphBuilder, d: int, states: list[str], gates_x: str) -> list[str]:
        r = apply_maps(b, self.maps("r", d), states[0], 2, self.dtype, f"r{d}")
        self.r_ends[d].append(r)
        pre = clipped(b, b.add("Add", [r, gates_x], f"pre{d}"), self.op.attrs["clip"], self.dtype, f"h{d}")
        return [activation(b, self.params[d], pre, self.dtype, f"h{d}")]
