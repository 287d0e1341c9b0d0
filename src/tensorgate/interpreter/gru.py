"""The float ``gru`` kernel: ONNX GRU semantics (every attribute) over linear maps of any
format.  Gates in ONNX order z, r, h; per time step::

    z = f(clip(W_z x + R_z h + Wb_z + Rb_z))       r = f(clip(W_r x + R_r h + Wb_r + Rb_r))
    n = g(clip(W_h x + R_h (r ⊙ h) + Wb_h + Rb_h))          linear_before_reset = 0
    n = g(clip(W_h x + r ⊙ (R_h h + Rb_h) + Wb_h))          linear_before_reset = 1
    h' = (1 - z) ⊙ n + z ⊙ h

A bias ``[dirs, 3H]`` is the folded ``Wb + Rb`` (without ``linear_before_reset`` only).
With one stacked ``3H`` map R per direction, the candidate's ``R_h`` of
``linear_before_reset = 0`` reads ``r ⊙ h``, not ``h``: a dense R is split into its
``z, r`` and ``h`` rows; a decomposed one is applied twice per step (to ``h`` and to
``r ⊙ h``), each time keeping the rows it needs.
"""

from __future__ import annotations

import numpy as np

from ..ir.core import Op
from ..ir.linear_map import DenseMap, LinearMap
from .kernels import kernel
from .recurrent import (
    activations, apply_gates, blas_threads_for, clipped, direction_maps, initial_state, project, run_directions,
    sweep,
)


def gru_bias_parts(bias: np.ndarray | None, hidden: int, linear_before_reset: int):
    """One direction's bias as the cell uses it: what joins ``W·x`` (``[3H]``: ``Wb + Rb``
    of every gate, but only ``Wb_h`` with ``linear_before_reset``) and what joins
    ``R_h·h`` before the reset gate multiplies it (``Rb_h``, or ``None``)."""
    if bias is None:
        return None, None
    if bias.size == 3 * hidden:
        return bias, None
    input_bias, recurrent_bias = bias[:3 * hidden], bias[3 * hidden:]
    if not linear_before_reset:
        return input_bias + recurrent_bias, None
    folded = input_bias.copy()
    folded[:2 * hidden] += recurrent_bias[:2 * hidden]
    return folded, recurrent_bias[2 * hidden:]


class GruRecurrence:
    """One direction's R as the GRU cell reads it: ``gates(h)``, the ``z, r`` rows
    ``[B, 2H]`` (with ``linear_before_reset`` also the ``h`` rows, ``[B, 3H]``), and
    ``candidate(rh)``, ``R_h`` applied to ``r ⊙ h`` (without it)."""

    def __init__(self, maps: list[LinearMap], hidden: int, linear_before_reset: int):
        self.hidden = hidden
        self.linear_before_reset = linear_before_reset
        if len(maps) == 3:
            self.zr, self.h = maps[:2], maps[2:]
        elif isinstance(maps[0], DenseMap) and not linear_before_reset:
            matrix = maps[0].matrix
            self.zr, self.h = [DenseMap(matrix[:2 * hidden])], [DenseMap(matrix[2 * hidden:])]
        else:
            self.zr = self.h = maps
        self.maps = maps

    def gates(self, h: np.ndarray) -> np.ndarray:
        if self.linear_before_reset:
            return apply_gates(self.maps, h)
        return apply_gates(self.zr, h)[:, :2 * self.hidden]

    def candidate(self, rh: np.ndarray) -> np.ndarray:
        return apply_gates(self.h, rh)[:, -self.hidden:]


@kernel("gru")
def _gru(op: Op, args, dtype):
    attrs = op.attrs
    hidden, lbr, clip = attrs["hidden_size"], attrs["linear_before_reset"], attrs["clip"]
    functions = activations(op)

    def direction(d, x, lens, reverse, initial):
        steps, batch, _ = x.shape
        gates_x = project(direction_maps(op, "w", d), x)
        input_bias, recurrent_bias = gru_bias_parts(None if attrs["bias"] is None else attrs["bias"][d].astype(dtype),
                                                    hidden, lbr)
        if input_bias is not None:
            gates_x += input_bias
        recurrence = GruRecurrence(direction_maps(op, "r", d), hidden, lbr)
        f, g = functions[2 * d:2 * d + 2]

        def step(t, states):
            (h,) = states
            recurrent = recurrence.gates(h)
            zr = f(clipped(recurrent[:, :2 * hidden] + gates_x[t, :, :2 * hidden], clip))
            z, r = zr[:, :hidden], zr[:, hidden:]
            if lbr:
                rn = recurrent[:, 2 * hidden:] if recurrent_bias is None else recurrent[:, 2 * hidden:] + recurrent_bias
                candidate = r * rn
            else:
                candidate = recurrence.candidate(r * h)
            n = g(clipped(gates_x[t, :, 2 * hidden:] + candidate, clip))
            return [(1 - z) * n + z * h]

        with blas_threads_for(recurrence.maps, batch):
            y, (h,) = sweep(steps, lens, reverse, [initial_state(initial[0], batch, hidden, dtype)], step)
        return y, h

    return run_directions(op, args, direction)
