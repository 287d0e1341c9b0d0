"""The float ``lstm`` kernel: ONNX LSTM semantics (every attribute) over linear maps of
any format (the sweep over directions and time is ``interpreter.recurrent``'s)."""

from __future__ import annotations

import functools

import numpy as np

from ..ir.ops import DEFAULT_LSTM_ACTIVATIONS, activation_names
from .kernels import kernel
from .recurrent import (
    RecurrentProduct, activations, blas_threads_for, direction_maps, initial_state, project, run_directions, sweep,
)


@kernel("lstm")
def _lstm(op, args, dtype):
    attrs = op.attrs
    hidden = attrs["hidden_size"]
    names = activation_names(op)
    functions: list = []  # built only for a direction that needs them: it costs more than a small step

    def direction(d, x, lens, reverse, initial):
        steps, batch, _ = x.shape
        w, r = direction_maps(op, "w", d), direction_maps(op, "r", d)
        gates_x = project(w, x)
        bias = None if attrs["bias"] is None else attrs["bias"][d].astype(dtype)
        if bias is not None:
            gates_x += bias[:4 * hidden] + bias[4 * hidden:] if bias.size == 8 * hidden else bias
        peep = None if attrs["peepholes"] is None else attrs["peepholes"][d].astype(dtype)
        fused = tuple(names[3 * d:3 * d + 3]) == DEFAULT_LSTM_ACTIVATIONS and peep is None
        if not fused and not functions:
            functions.extend(activations(op))
        cell = _Cell(hidden, peep, attrs["clip"], attrs["input_forget"], functions[3 * d:3 * d + 3] or [None] * 3,
                     fused, dtype)

        recurrent = RecurrentProduct(r, batch, dtype)
        states = [initial_state(s, batch, hidden, dtype) for s in initial]
        if fused and not (lens < steps).any():
            with blas_threads_for(r, batch):
                return cell.fused_sweep(gates_x, recurrent, reverse, *states)

        def step(t, states):
            h, c = states
            gates = recurrent(h)
            gates += gates_x[t]
            return list(cell.update(gates, c))

        with blas_threads_for(r, batch):
            y, (h, c) = sweep(steps, lens, reverse, states, step)
        return y, h, c

    return run_directions(op, args, direction)


@functools.lru_cache(maxsize=64)
def _sigmoid_halves(hidden: int, dtype: np.dtype) -> np.ndarray:
    """The factors that halve the i, o, f pre-activations (σ(x) = 0.5 + 0.5·tanh(x/2)) and keep c's."""
    halves = np.repeat(np.array([0.5, 0.5, 0.5, 1.0], dtype), hidden)
    halves.flags.writeable = False
    return halves


class _Cell:
    """The LSTM cell update from gate pre-activations (ONNX order i, o, f, c).

    ``fused``: with the default σ/tanh/tanh and no peepholes, all four gates go through
    one tanh, as σ(x) = 0.5 + 0.5·tanh(x/2) — the same arithmetic as ``sigmoid`` in half
    the NumPy calls, which is what a small LSTM's time step costs.
    """

    def __init__(self, hidden, peep, clip, input_forget, activations, fused, dtype):
        self.fused = fused
        self.halve_sigmoid_gates = _sigmoid_halves(hidden, np.dtype(dtype))
        self.blocks = [slice(k * hidden, (k + 1) * hidden) for k in range(4)]
        self.hidden = hidden
        self.peep = None if peep is None else np.split(peep, 3)  # p_i, p_o, p_f
        self.clip = clip
        self.input_forget = input_forget
        self.f_act, self.g_act, self.h_act = activations

    def update(self, gates: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New (h, c); ``gates`` is scratch and gets overwritten."""
        if self.fused:
            return self._fused_update(gates, c)
        i_, o_, f_, c_ = self.blocks
        if self.peep is not None:
            gates[:, i_] += self.peep[0] * c
            gates[:, f_] += self.peep[2] * c
        if self.clip is not None:  # with peepholes, o is clipped once c_new is known
            for block in [gates] if self.peep is None else [gates[:, i_], gates[:, f_], gates[:, c_]]:
                np.clip(block, -self.clip, self.clip, out=block)
        if self.peep is None:
            sig = self.f_act(gates[:, :3 * self.hidden])  # i, o, f in one call
            i, o, f = sig[:, i_], sig[:, o_], sig[:, f_]
        else:
            i, f = self.f_act(gates[:, i_]), self.f_act(gates[:, f_])
        if self.input_forget:
            f = 1 - i
        c_new = f * c + i * self.g_act(gates[:, c_])
        if self.peep is not None:
            pre_o = gates[:, o_] + self.peep[1] * c_new
            o = self.f_act(pre_o if self.clip is None else np.clip(pre_o, -self.clip, self.clip))
        return o * self.h_act(c_new), c_new

    def fused_sweep(self, gates_x: np.ndarray, recurrent: RecurrentProduct, reverse: bool, h: np.ndarray,
                    c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(Y, h, c)`` of a fused cell over every step (no row ends early): the arithmetic
        of ``_fused_update`` with c updated in place and each h written straight into Y,
        so that a step allocates nothing (a small LSTM's step is a dozen NumPy calls)."""
        steps = gates_x.shape[0]
        y = np.empty((steps,) + h.shape, h.dtype)
        c = c.copy()
        scratch = np.empty_like(c)
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            gates = recurrent(h)
            gates += gates_x[t]
            h = y[t]
            self._fused_in_place(gates, c, h, scratch)
        return y, h.copy(), c  # the final h a result of its own, not a view into Y

    def _activated_gates(self, gates: np.ndarray) -> tuple[np.ndarray, ...]:
        """The i, o, f, g views of ``gates`` after clipping and σ/σ/σ/tanh, computed in place:
        σ(x) as 0.5·tanh(x/2) + 0.5, so one tanh call covers all four blocks."""
        if self.clip is not None:
            np.clip(gates, -self.clip, self.clip, out=gates)
        gates *= self.halve_sigmoid_gates
        np.tanh(gates, out=gates)
        sig = gates[:, :3 * self.hidden]
        sig *= 0.5
        sig += 0.5
        i_, o_, f_, c_ = self.blocks
        return gates[:, i_], gates[:, o_], gates[:, f_], gates[:, c_]

    def _fused_in_place(self, gates: np.ndarray, c: np.ndarray, h: np.ndarray, scratch: np.ndarray) -> None:
        """``_fused_update`` writing the new c over ``c`` and the new h into ``h``."""
        i, o, f, g = self._activated_gates(gates)
        if self.input_forget:
            np.subtract(1, i, out=scratch)
            c *= scratch
        else:
            c *= f
        np.multiply(i, g, out=scratch)
        c += scratch
        np.tanh(c, out=scratch)
        np.multiply(o, scratch, out=h)

    def _fused_update(self, gates: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, o, f, g = self._activated_gates(gates)
        c_new = (1 - i if self.input_forget else f) * c
        c_new += i * g
        return o * np.tanh(c_new), c_new
