"""Importer for the ONNX LSTM op (version 7 and later): every attribute, input and output.

What it shares with GRU and RNN (W, R, B, the activations, ...) is read by
``onnx_recurrent.recurrent_attrs``; the LSTM adds ``input_forget`` and the peepholes P
(a constant, kept as ONNX lays it out).  X, sequence_lens, initial_h and initial_c stay
operands.  The op always has the three results Y, Y_h, Y_c; the ones the node omits
get fresh names and are left unused.
"""

from __future__ import annotations

from .onnx_context import NodeContext, handles
from .onnx_recurrent import RECURRENT_ATTRS, recurrent_attrs

LSTM_ATTRS = RECURRENT_ATTRS + ("input_forget",)


@handles("LSTM", attrs=LSTM_ATTRS, since=7)
def _lstm(ctx: NodeContext) -> None:
    attrs = recurrent_attrs(ctx, "lstm")
    attrs.update(input_forget=ctx.attr("input_forget", 0), peepholes=ctx.constant(7, "P"))
    operands = [ctx.input(0), ctx.input(4), ctx.input(5), ctx.input(6)]
    ctx.emit("lstm", operands, attrs, roles=("Y", "Y_h", "Y_c"))
