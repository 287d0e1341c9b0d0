"""The float ``lstm`` kernel: ONNX LSTM semantics (every attribute) over linear maps of
any format.

The input projection of all time steps is one batched application of W (it does not
depend on h); only R and the cell update run step by step.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
from threadpoolctl import ThreadpoolController

from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import DEFAULT_LSTM_ACTIVATIONS, lstm_activation_names, lstm_activation_params, lstm_num_directions
from .kernels import kernel, sigmoid


def _activation(name: str, alpha, beta) -> Callable[[np.ndarray], np.ndarray]:
    """The ONNX recurrent activation ``name`` with its alpha/beta."""
    table = {
        "Sigmoid": sigmoid,
        "Tanh": np.tanh,
        "Relu": lambda x: np.maximum(x, 0),
        "Affine": lambda x: alpha * x + beta,
        "LeakyRelu": lambda x: np.where(x >= 0, x, alpha * x),
        "ThresholdedRelu": lambda x: np.where(x > alpha, x, 0),
        "ScaledTanh": lambda x: alpha * np.tanh(beta * x),
        "HardSigmoid": lambda x: np.clip(alpha * x + beta, 0, 1),
        "Elu": lambda x: np.where(x >= 0, x, alpha * (np.exp(x) - 1)),
        "Softsign": lambda x: x / (1 + np.abs(x)),
        "Softplus": lambda x: np.logaddexp(0, x),
    }
    fn = table[name]
    return lambda x: fn(x).astype(x.dtype, copy=False)


def lstm_activations(op) -> list[Callable]:
    """The 3·dirs activation functions with their alpha/beta (``ir.ops.lstm_activation_params``)."""
    return [_activation(*params) for params in lstm_activation_params(op)]


def _apply_gates(maps: list[LinearMap], x: np.ndarray) -> np.ndarray:
    """Apply one direction's W or R: one stacked 4H map, or four per-gate maps."""
    if len(maps) == 1:
        return maps[0].apply(x)
    return np.concatenate([m.apply(x) for m in maps], axis=-1)


@kernel("lstm")
def _lstm(op, args, dtype):
    x, seq_lens, h0, c0 = (list(args) + [None] * 4)[:4]
    attrs = op.attrs
    layout, hidden = attrs["layout"], attrs["hidden_size"]
    dirs = lstm_num_directions(op)
    if layout:
        x = np.swapaxes(x, 0, 1)
        h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
        c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
    steps, batch = x.shape[0], x.shape[1]
    lens = np.full(batch, steps, np.int64) if seq_lens is None else seq_lens.astype(np.int64)
    w_per_dir, r_per_dir = len(attrs["w"]) // dirs, len(attrs["r"]) // dirs  # stacked or per gate, each
    activations = lstm_activations(op)
    names = lstm_activation_names(op)
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = attrs["direction"] == "reverse" or d == 1
        y, h, c = _lstm_direction(
            x, lens, reverse, hidden, dtype,
            attrs["w"][d * w_per_dir:(d + 1) * w_per_dir], attrs["r"][d * r_per_dir:(d + 1) * r_per_dir],
            None if attrs["bias"] is None else attrs["bias"][d].astype(dtype),
            None if attrs["peepholes"] is None else attrs["peepholes"][d].astype(dtype),
            None if h0 is None else h0[d], None if c0 is None else c0[d],
            attrs["clip"], attrs["input_forget"], activations[3 * d:3 * d + 3],
            tuple(names[3 * d:3 * d + 3]) == DEFAULT_LSTM_ACTIVATIONS,
        )
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y, h, c = np.stack(ys, axis=1), np.stack(hs), np.stack(cs)
    if layout:
        return [np.transpose(y, (2, 0, 1, 3)), np.swapaxes(h, 0, 1), np.swapaxes(c, 0, 1)]
    return [y, h, c]


def _lstm_direction(x, lens, reverse, hidden, dtype, w, r, bias, peep, h0, c0, clip,
                    input_forget, activations, default_activations):
    """One direction over the whole sequence; returns Y [T,B,H], last h and c [B,H].

    The input projection of all steps is one batched application of W (it does not
    depend on h); only R and the cell update run step by step.
    """
    steps, batch, _ = x.shape
    with _blas_threads_for(w, steps * batch):
        gates_x = _apply_gates(w, x.reshape(steps * batch, -1)).reshape(steps, batch, 4 * hidden)
    if bias is not None:
        gates_x += bias[:4 * hidden] + bias[4 * hidden:] if bias.size == 8 * hidden else bias
    cell = _Cell(hidden, peep, clip, input_forget, activations, default_activations and peep is None, dtype)
    h = np.zeros((batch, hidden), dtype) if h0 is None else h0.astype(dtype)
    c = np.zeros((batch, hidden), dtype) if c0 is None else c0.astype(dtype)
    y = np.zeros((steps, batch, hidden), dtype)
    ragged = bool((lens < steps).any())
    with _blas_threads_for(r, batch):
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            gates = _apply_gates(r, h)
            gates += gates_x[t]
            h_new, c_new = cell.update(gates, c)
            if ragged:
                active = (t < lens)[:, None]
                h, c = np.where(active, h_new, h), np.where(active, c_new, c)
                y[t] = np.where(active, h_new, 0)
            else:
                h, c = h_new, c_new
                y[t] = h
    return y, h, c


SINGLE_THREAD_MACS = 1 << 22
"""Dense products at least this large use every BLAS thread: on an idle machine they gain
(up to 2x on 2 cores); below it, waking the threads costs more than it saves.  On a
machine busy with other work threads can cost 10x instead: then OPENBLAS_NUM_THREADS=1."""
_THREADPOOLS = ThreadpoolController()  # inspecting the loaded BLAS once costs ~0.3 ms


def _blas_threads_for(maps: list[LinearMap], rows: int):
    """Small products run faster on one BLAS thread: waking the others costs more than it
    saves, and far more when the machine is busy.  A decomposed map's contraction steps
    are all small, whatever its total."""
    dense = all(isinstance(m, DenseMap) for m in maps)
    if dense and rows * sum(m.macs() for m in maps) >= SINGLE_THREAD_MACS:
        return contextlib.nullcontext()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


class _Cell:
    """The LSTM cell update from gate pre-activations (ONNX order i, o, f, c).

    ``fused``: with the default σ/tanh/tanh and no peepholes, all four gates go through
    one tanh, as σ(x) = 0.5 + 0.5·tanh(x/2) — the same arithmetic as ``sigmoid`` in half
    the NumPy calls, which is what a small LSTM's time step costs.
    """

    def __init__(self, hidden, peep, clip, input_forget, activations, fused, dtype):
        self.fused = fused
        self.halve_sigmoid_gates = np.repeat(np.array([0.5, 0.5, 0.5, 1.0], dtype), hidden)
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

    def _fused_update(self, gates: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i_, o_, f_, c_ = self.blocks
        if self.clip is not None:
            np.clip(gates, -self.clip, self.clip, out=gates)
        gates *= self.halve_sigmoid_gates
        np.tanh(gates, out=gates)
        sig = gates[:, :3 * self.hidden]
        sig *= 0.5
        sig += 0.5
        i, o, f, g = gates[:, i_], gates[:, o_], gates[:, f_], gates[:, c_]
        c_new = (1 - i if self.input_forget else f) * c
        c_new += i * g
        return o * np.tanh(c_new), c_new
