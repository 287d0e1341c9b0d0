"""The float ``rnn`` kernel: ONNX RNN semantics (every attribute) over linear maps of any
format.  Per time step ``h' = f(clip(W x + R h + Wb + Rb))``; a bias ``[dirs, H]`` is the
folded ``Wb + Rb``."""

from __future__ import annotations

from ..ir.core import Op
from .kernels import kernel
from .recurrent import (
    RecurrentProduct, activations, blas_threads_for, clipped, direction_maps, initial_state, project,
    run_directions, sweep,
)


@kernel("rnn")
def _rnn(op: Op, args, dtype):
    attrs = op.attrs
    hidden, clip = attrs["hidden_size"], attrs["clip"]
    functions = activations(op)

    def direction(d, x, lens, reverse, initial):
        steps, batch, _ = x.shape
        gates_x = project(direction_maps(op, "w", d), x)
        if attrs["bias"] is not None:
            bias = attrs["bias"][d].astype(dtype)
            gates_x += bias[:hidden] + bias[hidden:] if bias.size == 2 * hidden else bias
        r, f = direction_maps(op, "r", d), functions[d]
        recurrent = RecurrentProduct(r, batch, dtype)

        def step(t, states):
            gates = recurrent(states[0])
            gates += gates_x[t]
            return [f(clipped(gates, clip))]

        with blas_threads_for(r, batch):
            y, (h,) = sweep(steps, lens, reverse, [initial_state(initial[0], batch, hidden, dtype)], step)
        return y, h

    return run_directions(op, args, direction)
