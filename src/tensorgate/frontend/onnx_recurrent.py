"""Importers for the ONNX recurrent ops ``LSTM``, ``GRU`` and ``RNN`` (version 7 and later):
every attribute, input and output.

The three share one reading of what they have in common (``recurrent_attrs``): the
direction, W and R, the hidden size, layout, clip, the activations with their
alpha/beta, and B.  W, R and B must be constants (``NodeContext.constant``, which reads
initializers and ``Constant`` outputs): they become the op's attributes, W and R one
dense ``gates·H × in`` map per direction, B as ONNX lays it out (``Wb`` then ``Rb``), so
the passes can decompose and quantize them.  X, sequence_lens and the initial states
stay operands.  The op always has all its results (Y and the final states); the ones
the node omits get fresh names and are left unused.
"""

from __future__ import annotations

from typing import Any

from ..ir.linear_map import DenseMap
from ..ir.ops import RECURRENT, RECURRENT_ACTIVATIONS, RECURRENT_DIRECTIONS
from .onnx_context import NodeContext, handles

RECURRENT_ATTRS = (
    "activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout",
)
ACTIVATION_ROLES = {"lstm": "f, g, h", "gru": "f, g", "rnn": "f"}
# onnxruntime matches activation names without regard to case; so do we.
_CANONICAL_ACTIVATIONS = {name.lower(): name for name in RECURRENT_ACTIVATIONS}


def recurrent_attrs(ctx: NodeContext, kind: str) -> dict[str, Any]:
    """The attributes every recurrent op kind has, read from the node and checked."""
    gates = len(RECURRENT[kind].gates)
    direction = ctx.attr("direction", "forward")
    if direction not in RECURRENT_DIRECTIONS:
        raise ctx.error(f"direction '{direction}' is not one of {', '.join(RECURRENT_DIRECTIONS)}")
    dirs = 2 if direction == "bidirectional" else 1
    w, r = ctx.constant(1, "W"), ctx.constant(2, "R")
    for role, array in (("W", w), ("R", r)):
        if array.ndim != 3 or array.shape[0] != dirs:
            raise ctx.error(f"{role} has shape {list(array.shape)}; direction '{direction}' "
                            f"needs [{dirs}, {gates}*hidden_size, ...]")
    hidden = ctx.attr("hidden_size", r.shape[-1])
    if r.shape[1:] != (gates * hidden, hidden):
        raise ctx.error(f"R has shape {list(r.shape)}, expected [{dirs}, {gates * hidden}, {hidden}] "
                        f"for hidden_size {hidden}")
    if w.shape[1] != gates * hidden:
        raise ctx.error(f"W has shape {list(w.shape)}, expected [{dirs}, {gates * hidden}, input_size] "
                        f"for hidden_size {hidden}")
    alpha, beta = ctx.attr("activation_alpha"), ctx.attr("activation_beta")
    clip, bias = ctx.attr("clip"), ctx.constant(3, "B")
    if clip is not None and not clip > 0:
        raise ctx.error(f"clip must be positive, got {clip}")
    if bias is not None and bias.shape != (dirs, 2 * gates * hidden):
        raise ctx.error(f"B has shape {list(bias.shape)}, expected [{dirs}, {2 * gates * hidden}] (Wb then Rb)")
    return {
        "hidden_size": hidden,
        "direction": direction,
        "layout": ctx.attr("layout", 0),
        "clip": clip,
        "activations": _activations(ctx, kind, dirs),
        "activation_alpha": None if alpha is None else [float(a) for a in alpha],
        "activation_beta": None if beta is None else [float(b) for b in beta],
        "w": [DenseMap(w[d]) for d in range(dirs)],
        "r": [DenseMap(r[d]) for d in range(dirs)],
        "bias": bias,
    }


def _activations(ctx: NodeContext, kind: str, dirs: int) -> list[str] | None:
    """The node's activation names, spelled as the IR spells them (``None`` = default)."""
    names = ctx.attr("activations")
    if names is None:
        return None
    count = len(RECURRENT[kind].default_activations) * dirs
    if len(names) != count:
        raise ctx.error(f"needs {count} activations ({ACTIVATION_ROLES[kind]} per direction), got {len(names)}")
    unknown = [name for name in names if name.lower() not in _CANONICAL_ACTIVATIONS]
    if unknown:
        raise ctx.error(f"activation '{unknown[0]}' is not supported "
                        f"(supported: {', '.join(RECURRENT_ACTIVATIONS)})")
    return [_CANONICAL_ACTIVATIONS[name.lower()] for name in names]


@handles("GRU", attrs=RECURRENT_ATTRS + ("linear_before_reset",), since=7)
def _gru(ctx: NodeContext) -> None:
    attrs = recurrent_attrs(ctx, "gru")
    attrs["linear_before_reset"] = ctx.attr("linear_before_reset", 0)
    if attrs["linear_before_reset"] not in (0, 1):
        raise ctx.error(f"linear_before_reset must be 0 or 1, got {attrs['linear_before_reset']}")
    ctx.emit("gru", [ctx.input(0), ctx.input(4), ctx.input(5)], attrs, roles=("Y", "Y_h"))


@handles("RNN", attrs=RECURRENT_ATTRS, since=7)
def _rnn(ctx: NodeContext) -> None:
    ctx.emit("rnn", [ctx.input(0), ctx.input(4), ctx.input(5)], recurrent_attrs(ctx, "rnn"), roles=("Y", "Y_h"))
