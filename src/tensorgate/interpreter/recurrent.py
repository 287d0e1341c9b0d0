"""What the float recurrent kernels (``lstm``, ``gru``, ``rnn``) share: the ONNX
activations, a direction's maps, BLAS threading, and the sweep over directions, layout
and time with ``sequence_lens``.

Every kernel projects the input of all time steps with W at once (it does not depend on
the state); only R and the cell update run step by step.  Rows past their
``sequence_lens`` keep their state and output zeros; a reverse direction runs from the
last step down, so each row starts at its own last valid step.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
from threadpoolctl import ThreadpoolController

from ..ir.core import Op
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import RECURRENT, activation_params, num_directions, sequence_lengths
from .kernels import sigmoid

Activation = Callable[[np.ndarray], np.ndarray]


def activation(name: str, alpha, beta) -> Activation:
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


def activations(op: Op) -> list[Activation]:
    """The activation functions of all directions with their alpha/beta
    (``ir.ops.activation_params``)."""
    return [activation(*params) for params in activation_params(op)]


def direction_maps(op: Op, key: str, d: int) -> list[LinearMap]:
    """Direction ``d``'s maps of attribute ``key`` (``w`` or ``r``): one stacked map, or one per gate."""
    maps = op.attrs[key]
    per_dir = len(maps) // num_directions(op)
    return maps[d * per_dir:(d + 1) * per_dir]


def apply_gates(maps: list[LinearMap], x: np.ndarray) -> np.ndarray:
    """Apply one direction's W or R: one stacked map, or the per-gate maps concatenated."""
    if len(maps) == 1:
        return maps[0].apply(x)
    return np.concatenate([m.apply(x) for m in maps], axis=-1)


def project(maps: list[LinearMap], x: np.ndarray) -> np.ndarray:
    """``W·x`` of every time step of ``x`` ``[T, B, I]`` in one batched application: ``[T, B, gates·H]``."""
    steps, batch, _ = x.shape
    with blas_threads_for(maps, steps * batch):
        return apply_gates(maps, x.reshape(steps * batch, -1)).reshape(steps, batch, -1)


SINGLE_THREAD_MACS = 1 << 22
"""Dense products at least this large use every BLAS thread: on an idle machine they gain
(up to 2x on 2 cores); below it, waking the threads costs more than it saves.  On a
machine busy with other work threads can cost 10x instead: then OPENBLAS_NUM_THREADS=1."""
_THREADPOOLS = ThreadpoolController()  # inspecting the loaded BLAS once costs ~0.3 ms
_BLAS = _THREADPOOLS.select(user_api="blas").lib_controllers


def blas_threads_for(maps: list[LinearMap], rows: int):
    """Small products run faster on one BLAS thread: waking the others costs more than it
    saves, and far more when the machine is busy.  A decomposed map's contraction steps
    are all small, whatever its total."""
    dense = all(isinstance(m, DenseMap) for m in maps)
    if dense and rows * sum(m.macs() for m in maps) >= SINGLE_THREAD_MACS:
        return contextlib.nullcontext()
    return _single_blas_thread()


class _single_blas_thread:
    """One BLAS thread inside, the previous counts restored after.  Asking each library
    directly costs a microsecond where a threadpoolctl limit costs ~15: a short run
    enters this twice."""

    def __enter__(self):
        self.previous = [lib.get_num_threads() for lib in _BLAS]
        for lib, count in zip(_BLAS, self.previous):
            if count != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc_info):
        for lib, count in zip(_BLAS, self.previous):
            if count != 1:
                lib.set_num_threads(count)


class RecurrentProduct:
    """``R·h`` of one direction written into one buffer reused every step (the caller
    adds to it and overwrites it): a single dense map is one ``matmul`` into the buffer,
    anything else is applied and copied in."""

    def __init__(self, maps: list[LinearMap], batch: int, dtype):
        self.maps = maps
        self.single_dense = len(maps) == 1 and isinstance(maps[0], DenseMap)
        self.buffer = np.empty((batch, sum(m.out_dim for m in maps)), dtype)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        if self.single_dense:
            return np.matmul(h, self.maps[0].matrix.T, out=self.buffer)
        self.buffer[...] = apply_gates(self.maps, h)
        return self.buffer


DirectionKernel = Callable[[int, np.ndarray, np.ndarray, bool, list], tuple]
"""``run(d, x [T,B,I], lens [B], reverse, initial states [B,H] or None) -> (Y [T,B,H], *final states)``."""


def run_directions(op: Op, args: list, run: DirectionKernel) -> list[np.ndarray]:
    """The op's results from ``run`` per direction: the layout undone on the way in and
    redone on the way out, Y stacked on axis 1, the final states on axis 0."""
    states = len(RECURRENT[op.kind].states)
    x, seq_lens, *initial = (list(args) + [None] * (2 + states))[:2 + states]
    layout = op.attrs["layout"]
    if layout:
        x = np.swapaxes(x, 0, 1)
        initial = [None if s is None else np.swapaxes(s, 0, 1) for s in initial]
    steps, batch = x.shape[0], x.shape[1]
    lens = sequence_lengths(seq_lens, steps, batch)
    outputs = []
    for d in range(num_directions(op)):
        reverse = op.attrs["direction"] == "reverse" or d == 1
        outputs.append(run(d, x, lens, reverse, [None if s is None else s[d] for s in initial]))
    if len(outputs) == 1:
        y, finals = outputs[0][0][:, None], [state[None] for state in outputs[0][1:]]
    else:
        y = np.stack([o[0] for o in outputs], axis=1)
        finals = [np.stack([o[k] for o in outputs]) for k in range(1, states + 1)]
    if layout:
        return [np.transpose(y, (2, 0, 1, 3))] + [np.swapaxes(s, 0, 1) for s in finals]
    return [y] + finals


def sweep(steps: int, lens: np.ndarray, reverse: bool, states: list[np.ndarray],
          step: Callable[[int, list[np.ndarray]], list[np.ndarray]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run ``step(t, states) -> new states`` (``h`` first) over time: ``Y`` ``[T, B, H]``
    and the final states.  A row past its length keeps its states and outputs zeros."""
    ragged = bool((lens < steps).any())
    y = (np.zeros if ragged else np.empty)((steps,) + states[0].shape, states[0].dtype)
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        new = step(t, states)
        if ragged:
            active = (t < lens)[:, None]
            states = [np.where(active, n, s) for n, s in zip(new, states)]
            y[t] = np.where(active, new[0], 0)
        else:
            states = new
            y[t] = new[0]
    return y, states


def initial_state(state: np.ndarray | None, batch: int, hidden: int, dtype) -> np.ndarray:
    """A given initial state in the run's dtype, zeros for an absent one."""
    return np.zeros((batch, hidden), dtype) if state is None else state.astype(dtype)


def clipped(x: np.ndarray, clip: float | None) -> np.ndarray:
    """``clip`` (the ONNX attribute) clamps pre-activations to ``[-clip, clip]``."""
    return x if clip is None else np.clip(x, -clip, clip)
