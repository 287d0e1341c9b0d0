"""Importer for the ONNX LSTM op (version 7 and later): every attribute, input and output.

W, R, B and P must be constants: they become the ``lstm`` op's attributes (W and R
one dense ``4H × in`` map per direction, B and P arrays as ONNX lays them out), so
the passes can decompose and quantize them.  X, sequence_lens, initial_h and
initial_c stay operands.  The op always has the three results Y, Y_h, Y_c; the ones
the node omits get fresh names and are left unused.
"""

from __future__ import annotations

from ..ir.linear_map import DenseMap
from ..ir.ops import LSTM_ACTIVATIONS, LSTM_DIRECTIONS
from .onnx_context import NodeContext, handles

LSTM_ATTRS = (
    "activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
    "input_forget", "layout",
)
# onnxruntime matches activation names without regard to case; so do we.
_CANONICAL_ACTIVATIONS = {name.lower(): name for name in LSTM_ACTIVATIONS}


@handles("LSTM", attrs=LSTM_ATTRS, since=7)
def _lstm(ctx: NodeContext) -> None:
    direction = ctx.attr("direction", "forward")
    if direction not in LSTM_DIRECTIONS:
        raise ctx.error(f"direction '{direction}' is not one of {', '.join(LSTM_DIRECTIONS)}")
    dirs = 2 if direction == "bidirectional" else 1
    w, r = ctx.constant(1, "W"), ctx.constant(2, "R")
    for role, array in (("W", w), ("R", r)):
        if array.ndim != 3 or array.shape[0] != dirs:
            raise ctx.error(f"{role} has shape {list(array.shape)}; direction '{direction}' "
                            f"needs [{dirs}, 4*hidden_size, ...]")
    hidden = ctx.attr("hidden_size", r.shape[-1])
    if r.shape[1:] != (4 * hidden, hidden):
        raise ctx.error(f"R has shape {list(r.shape)}, expected [{dirs}, {4 * hidden}, {hidden}] "
                        f"for hidden_size {hidden}")
    alpha, beta = ctx.attr("activation_alpha"), ctx.attr("activation_beta")
    clip, bias = ctx.attr("clip"), ctx.constant(3, "B")
    if clip is not None and not clip > 0:
        raise ctx.error(f"clip must be positive, got {clip}")
    if bias is not None and bias.shape != (dirs, 8 * hidden):
        raise ctx.error(f"B has shape {list(bias.shape)}, expected [{dirs}, {8 * hidden}] (Wb then Rb)")
    attrs = {
        "hidden_size": hidden,
        "direction": direction,
        "layout": ctx.attr("layout", 0),
        "clip": clip,
        "input_forget": ctx.attr("input_forget", 0),
        "activations": _activations(ctx, dirs),
        "activation_alpha": None if alpha is None else [float(a) for a in alpha],
        "activation_beta": None if beta is None else [float(b) for b in beta],
        "w": [DenseMap(w[d]) for d in range(dirs)],
        "r": [DenseMap(r[d]) for d in range(dirs)],
        "bias": bias,
        "peepholes": ctx.constant(7, "P"),
    }
    operands = [ctx.input(0), ctx.input(4), ctx.input(5), ctx.input(6)]
    ctx.emit("lstm", operands, attrs, roles=("Y", "Y_h", "Y_c"))


def _activations(ctx: NodeContext, dirs: int) -> list[str] | None:
    """The node's activation names, spelled as the IR spells them (``None`` = default)."""
    names = ctx.attr("activations")
    if names is None:
        return None
    if len(names) != 3 * dirs:
        raise ctx.error(f"needs {3 * dirs} activations (f, g, h per direction), got {len(names)}")
    unknown = [name for name in names if name.lower() not in _CANONICAL_ACTIVATIONS]
    if unknown:
        raise ctx.error(f"activation '{unknown[0]}' is not supported "
                        f"(supported: {', '.join(LSTM_ACTIVATIONS)})")
    return [_CANONICAL_ACTIVATIONS[name.lower()] for name in names]
