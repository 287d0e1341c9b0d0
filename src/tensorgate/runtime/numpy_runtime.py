"""The NumPy runtime: the executable definition of every IR op.

``run_module(module, inputs)`` executes a module in float32 (default) or float64.
Floating tensors (inputs, constants, weights) are computed in the requested dtype;
integer tensors (shapes, indices, sequence lengths) stay int64.  Each kernel in
``KERNELS`` takes the op and its operand arrays (``None`` for an absent optional
operand) and returns the list of result arrays.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
from threadpoolctl import ThreadpoolController

from ..errors import ExecutionError
from ..ir.core import Module, Op
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import lstm_num_directions
from ..ir.types import FloatType, TensorType, element_type
from ..registry import registrar

Kernel = Callable[[Op, list, np.dtype], list]
KERNELS: dict[str, Kernel] = {}


kernel = registrar(KERNELS)


def _elementwise(fn):
    return lambda op, args, dtype: [fn(*args)]


for _kind, _fn in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "relu": lambda x: np.maximum(x, 0).astype(x.dtype), "tanh": np.tanh, "neg": np.negative,
    "exp": np.exp, "matmul": np.matmul,
}.items():
    KERNELS[_kind] = _elementwise(_fn)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function as 0.5·(1 + tanh(x/2)): exact, overflow-free, one transcendental."""
    return (0.5 * np.tanh(0.5 * x) + 0.5).astype(x.dtype, copy=False)


KERNELS["sigmoid"] = _elementwise(sigmoid)


def div_kernel(op, args, dtype):
    a, b = args
    if a.dtype.kind in "iu":
        return [np.trunc(a / b).astype(a.dtype)]  # ONNX integer Div truncates
    return [a / b]


KERNELS["div"] = div_kernel


@kernel("const")
def _const(op, args, dtype):
    return [_as_float(op.attrs["value"], dtype)]


@kernel("linear")
def _linear(op, args, dtype):
    y = op.attrs["weight"].apply(args[0])
    bias = op.attrs["bias"]
    return [y if bias is None else y + bias]


@kernel("einsum")
def _einsum(op, args, dtype):
    return [np.einsum(op.attrs["equation"], *args, optimize=True)]


@kernel("softmax")
def _softmax(op, args, dtype):
    x = args[0]
    e = np.exp(x - x.max(axis=op.attrs["axis"], keepdims=True))
    return [e / e.sum(axis=op.attrs["axis"], keepdims=True)]


@kernel("log_softmax")
def _log_softmax(op, args, dtype):
    x = args[0]
    shifted = x - x.max(axis=op.attrs["axis"], keepdims=True)
    return [shifted - np.log(np.exp(shifted).sum(axis=op.attrs["axis"], keepdims=True))]


@kernel("reshape")
def _reshape(op, args, dtype):
    x, target = args
    dims = [int(d) for d in target]
    if not op.attrs["allowzero"]:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return [x.reshape(dims)]


@kernel("transpose")
def _transpose(op, args, dtype):
    return [np.transpose(args[0], op.attrs["perm"])]


@kernel("slice")
def _slice(op, args, dtype):
    x = args[0]
    starts, ends = op.attrs["starts"], op.attrs["ends"]
    axes = op.attrs["axes"] or range(len(starts))
    steps = op.attrs["steps"] or [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return [x[tuple(index)]]


@kernel("gather")
def _gather(op, args, dtype):
    return [np.take(args[0], args[1], axis=op.attrs["axis"])]


@kernel("concat")
def _concat(op, args, dtype):
    return [np.concatenate(args, axis=op.attrs["axis"])]


@kernel("split")
def _split(op, args, dtype):
    cuts = np.cumsum(op.attrs["sizes"])[:-1]
    return list(np.split(args[0], cuts, axis=op.attrs["axis"]))


@kernel("squeeze")
def _squeeze(op, args, dtype):
    return [np.squeeze(args[0], axis=tuple(op.attrs["axes"]))]


@kernel("unsqueeze")
def _unsqueeze(op, args, dtype):
    return [np.expand_dims(args[0], axis=tuple(op.attrs["axes"]))]


@kernel("flatten")
def _flatten(op, args, dtype):
    x = args[0]
    axis = op.attrs["axis"] + x.ndim if op.attrs["axis"] < 0 else op.attrs["axis"]
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@kernel("shape")
def _shape(op, args, dtype):
    return [np.array(args[0].shape[slice(op.attrs["start"], op.attrs["end"])], dtype=np.int64)]


@kernel("cast")
def _cast(op, args, dtype):
    target = element_type(op.attrs["to"])
    return [args[0].astype(dtype if isinstance(target, FloatType) else target.numpy)]


@kernel("expand")
def _expand(op, args, dtype):
    x, shape = args
    return [np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))).copy()]


def _as_float(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return array.astype(dtype, copy=False) if array.dtype.kind == "f" else array


# --- LSTM ---------------------------------------------------------------------------

_ACTIVATION_DEFAULTS = {  # ONNX defaults for (alpha, beta) of each activation
    "Affine": (1.0, 0.0), "LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
    "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None),
}


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


DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")


def lstm_activations(op: Op) -> list[Callable]:
    """The 3·dirs activation functions, alpha/beta consumed in order by those that take them."""
    names = op.attrs["activations"] or list(DEFAULT_ACTIVATIONS) * lstm_num_directions(op)
    alphas = list(op.attrs["activation_alpha"] or [])
    betas = list(op.attrs["activation_beta"] or [])
    functions = []
    for name in names:
        alpha, beta = _ACTIVATION_DEFAULTS.get(name, (None, None))
        if alpha is not None and alphas:
            alpha = alphas.pop(0)
        if beta is not None and betas:
            beta = betas.pop(0)
        functions.append(_activation(name, alpha, beta))
    return functions


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
    names = op.attrs["activations"] or list(DEFAULT_ACTIVATIONS) * dirs
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
            tuple(names[3 * d:3 * d + 3]) == DEFAULT_ACTIVATIONS,
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


# --- module execution -----------------------------------------------------------------


def check_inputs(module: Module, inputs: dict[str, np.ndarray]) -> None:
    """Raise ``ExecutionError`` unless ``inputs`` names every module input once with a
    fitting rank, static dims, and consistent symbolic dims."""
    expected = [v.name for v in module.inputs]
    missing = [name for name in expected if name not in inputs]
    extra = [name for name in inputs if name not in expected]
    if missing or extra:
        problems = ([f"missing input(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown input(s) {', '.join(extra)}"] if extra else [])
        raise ExecutionError(f"{'; '.join(problems)} (the model takes: {', '.join(expected)})")
    bound: dict[str, int] = {}
    for value in module.inputs:
        _check_shape(value.name, value.type, np.shape(inputs[value.name]), bound)


def _check_shape(name: str, type: TensorType, shape: tuple[int, ...], bound: dict[str, int]) -> None:
    want = "[" + ",".join(str(d) for d in type.shape) + "]"
    if len(shape) != type.rank:
        raise ExecutionError(f"input '{name}' has shape {list(shape)}, expected {want}")
    for dim, size in zip(type.shape, shape):
        if isinstance(dim, int) and dim != size:
            raise ExecutionError(f"input '{name}' has shape {list(shape)}, expected {want}")
        if isinstance(dim, str) and dim != "?":
            if bound.setdefault(dim, size) != size:
                raise ExecutionError(f"input '{name}' has {dim}={size}, but another input has "
                                     f"{dim}={bound[dim]}")


class Executor:
    """Runs one module repeatedly; weights are converted to the run's dtype once."""

    def __init__(self, module: Module, dtype=np.float32):
        from ..fixedpoint.quant_attrs import is_quantized

        self.module = module
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise ExecutionError(f"the float runtime runs in float32 or float64, not {self.dtype}")
        if is_quantized(module):
            raise ExecutionError("this module is quantized: run it with the integer golden model "
                                 "(tensorgate.runtime.fixed_runtime.run_fixed, or `tensorgate run`)")
        self._ops = [self._prepared(op) for op in module.ops]

    def _prepared(self, op: Op) -> Op:
        """The op with its float tensors and maps converted to the run's dtype."""
        if op.kind not in KERNELS:
            raise ExecutionError(f"{op.describe()}: the NumPy runtime has no kernel for this op")
        attrs = {key: _convert(value, self.dtype) for key, value in op.attrs.items()}
        return Op(op.kind, op.operands, [], attrs, op.loc)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_inputs(self.module, inputs)
        env: dict[int, np.ndarray] = {
            id(v): _as_float(np.asarray(inputs[v.name]), self.dtype) for v in self.module.inputs
        }
        for op, prepared in zip(self.module.ops, self._ops):
            args = [None if v is None else env[id(v)] for v in op.operands]
            try:
                results = KERNELS[op.kind](prepared, args, self.dtype)
            except (ValueError, IndexError, TypeError) as exc:
                raise ExecutionError(f"{op.describe()} failed: {exc}") from exc
            for value, array in zip(op.results, results):
                env[id(value)] = _as_float(np.asarray(array), self.dtype)
        return {v.name: env[id(v)] for v in self.module.outputs}


def _convert(value, dtype):
    if isinstance(value, LinearMap):
        return value if value.dtype == dtype else value.astype(dtype)
    if isinstance(value, np.ndarray):
        return _as_float(value, dtype)
    if isinstance(value, list):
        return [_convert(v, dtype) for v in value]
    return value


def run_module(module: Module, inputs: dict[str, np.ndarray], dtype=np.float32) -> dict[str, np.ndarray]:
    """Execute ``module`` on ``inputs`` (keyed by input name); outputs keyed by name."""
    return Executor(module, dtype).run(inputs)
