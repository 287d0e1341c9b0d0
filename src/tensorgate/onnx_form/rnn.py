"""The ONNX lowering of ``rnn``: the ``RNN`` node (strategies ``native`` and ``projected``)
or a ``Scan`` over the cell of ``RNNCell`` (``scan``); see the package docstring and
``recurrent``."""

from __future__ import annotations

from ..ir.ops import activation_params
from .graph import GraphBuilder
from .maps import apply_maps
from .ops import lowers
from .recurrent import ScanCell, activation, bias_row, clipped, direction_bias, lower_recurrent


@lowers("rnn")
def lower_rnn(b, op, inputs, results):
    lower_recurrent(b, op, inputs, results, RNNCell)


class RNNCell(ScanCell):
    """The float RNN cell, ``h' = f(clip(R h + gates_x))``, in ONNX ops."""

    def __init__(self, op):
        super().__init__(op)
        self.params = activation_params(op)
        self.bias = None

    def prepare(self, b: GraphBuilder) -> None:
        if self.op.attrs["bias"] is not None:
            self.bias = b.init(self.op.attrs["bias"].astype(self.dtype, copy=False), "B")

    def hint(self) -> dict:
        return {"bias": self.bias}

    def projection(self, b: GraphBuilder, d: int, x: str) -> str:
        projection = apply_maps(b, self.maps("w", d), x, 3, self.dtype, f"w{d}")
        if self.bias is None:
            return projection
        bias = direction_bias(b, bias_row(b, self.bias, d), d, self.hidden, self.op.attrs["bias"].shape[1])
        return b.add("Add", [projection, bias], f"gates_x{d}")

    def step(self, b: GraphBuilder, d: int, states: list[str], gates_x: str) -> list[str]:
        r = apply_maps(b, self.maps("r", d), states[0], 2, self.dtype, f"r{d}")
        self.r_ends[d].append(r)
        pre = clipped(b, b.add("Add", [r, gates_x], f"pre{d}"), self.op.attrs["clip"], self.dtype, f"h{d}")
        return [activation(b, self.params[d], pre, self.dtype, f"h{d}")]
