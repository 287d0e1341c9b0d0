"""A trainable PyTorch twin of an IR module, for ``passes.finetune``.

``TorchModel(module)`` is a ``torch.nn.Module`` whose forward runs the module's ops with
torch kernels that follow the NumPy runtime (the executable definition of every op):
same formulas, and the recurrent ops' sums in the same order, so its outputs match
``run_module`` to float32 rounding.  Its parameters are the module's weights:

* every tensor of every linear map: a dense matrix, or the cores of a tt/bt/ht map,
  which are applied by contracting the input with them as the map's networks say
  (``TensorizedMap.networks``, in their default pairwise order), never by rebuilding ``W``;
* the biases and peepholes of ``linear`` and recurrent ops;
* float ``const`` tensors of more than one element (a MatMul head's weight, say).

``trainable="maps"`` makes only the linear maps' tensors parameters (the rest stays
fixed).  ``write_back()`` stores the trained values in the module it was built from:
each map keeps its format, meta (a contraction schedule too; not the decomposition
error, which no longer holds) and dtype; arrays keep their dtype.  This module imports torch; import it only once torch is known to be
installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import opt_einsum
import torch
from opt_einsum.paths import ssa_to_linear

from ..errors import ExecutionError
from ..ir.core import Module, Op
from ..ir.linear_map import DenseMap, LinearMap
from ..ir.ops import RECURRENT, activation_params, num_directions
from ..ir.tensor_formats import TensorizedMap
from ..ir.types import FloatType, element_type
from ..registry import registrar
from .trained_region import is_weight

FLOAT = torch.float32
STALE_AFTER_TRAINING = ("rel_error",)
"""Map meta that describes the map's values (the decomposition's error against the dense
matrix it came from), no longer true once the tensors are trained."""


@dataclass(frozen=True)
class WeightRef:
    """Where a parameter lives: op ``op`` (index in ``module.ops``), attribute ``key``,
    list position ``index`` (``None`` for a non-list attribute) and map tensor
    ``tensor`` (``None`` for an array attribute)."""

    op: int
    key: str
    index: int | None
    tensor: str | None

    @property
    def name(self) -> str:
        parts = [f"op{self.op}", self.key] + ([str(self.index)] if self.index is not None else [])
        return ".".join(parts + ([self.tensor] if self.tensor else []))


class TorchModel(torch.nn.Module):
    """The module as torch computation with its weights as parameters (see the module docstring)."""

    def __init__(self, module: Module, trainable: str = "all"):
        super().__init__()
        self.module = module
        self.refs: list[WeightRef] = []
        self.weights = torch.nn.ParameterList()
        self._index: dict[WeightRef, int] = {}
        self._fixed: dict[WeightRef, torch.Tensor] = {}
        for position, op in enumerate(module.ops):
            for key, value in op.attrs.items():
                for index, leaf in (enumerate(value) if isinstance(value, list) else [(None, value)]):
                    self._register(position, op, key, index, leaf, trainable)

    def _register(self, position: int, op: Op, key: str, index: int | None, leaf, trainable: str) -> None:
        if isinstance(leaf, LinearMap):
            for name, array in leaf.tensors().items():
                self._add(WeightRef(position, key, index, name), array, True)
        elif is_weight(op, key, leaf):
            self._add(WeightRef(position, key, index, None), leaf, trainable == "all")

    def _add(self, ref: WeightRef, array: np.ndarray, train: bool) -> None:
        tensor = torch.as_tensor(np.array(array, dtype=np.float32))
        if train:
            self._index[ref] = len(self.weights)
            self.refs.append(ref)
            self.weights.append(torch.nn.Parameter(tensor))
        else:
            self._fixed[ref] = tensor

    def weight(self, ref: WeightRef) -> torch.Tensor:
        return self.weights[self._index[ref]] if ref in self._index else self._fixed[ref]

    def named_weights(self) -> dict[str, torch.nn.Parameter]:
        """The trainable parameters by readable name (``op3.w.0.g1``)."""
        return {ref.name: self.weights[i] for ref, i in self._index.items()}

    # --- execution --------------------------------------------------------------------

    def forward(self, inputs: dict[str, torch.Tensor], names: list[str] | None = None,
                stacked: bool = False) -> dict[str, torch.Tensor]:
        """The values ``names`` (default: the module's outputs) for ``inputs`` keyed by
        input name; float inputs are computed in float32.  ``stacked``: every input holds
        samples of its fixed shape along an extra leading axis, and so does every value
        returned (the module is mapped over them with ``torch.func.vmap``)."""
        names = names or [v.name for v in self.module.outputs]
        if not stacked:
            return self._run(inputs, names)
        keys = [v.name for v in self.module.inputs]

        def one_call(*arrays):
            values = self._run(dict(zip(keys, arrays)), names)
            return tuple(values[name] for name in names)

        results = torch.func.vmap(one_call)(*[torch.as_tensor(inputs[key]) for key in keys])
        return dict(zip(names, results))

    def _run(self, inputs: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        env = {id(v): _as_float(torch.as_tensor(inputs[v.name])) for v in self.module.inputs}
        for position, op in enumerate(self.module.ops):
            kernel = KERNELS.get(op.kind)
            if kernel is None:
                raise ExecutionError(f"{op.describe()}: the torch model has no kernel for this op")
            args = [None if v is None else env[id(v)] for v in op.operands]
            for value, result in zip(op.results, kernel(self, position, op, args)):
                env[id(value)] = result
        by_name = {v.name: v for v in self.module.values()}
        return {name: env[id(by_name[name])] for name in names}

    def apply_map(self, position: int, key: str, index: int | None, linear_map: LinearMap,
                  x: torch.Tensor) -> torch.Tensor:
        """``linear_map`` (attribute ``key[index]`` of op ``position``) applied to ``x[..., in]``."""
        def tensor(name: str) -> torch.Tensor:
            return self.weight(WeightRef(position, key, index, name))

        if isinstance(linear_map, DenseMap):
            return x @ tensor("w").T
        if not isinstance(linear_map, TensorizedMap):
            raise ExecutionError(f"the torch model cannot apply maps of format '{linear_map.format}'")
        rows = x.reshape(-1, linear_map.in_dim)
        if linear_map.in_pad:
            rows = torch.nn.functional.pad(rows, (0, linear_map.in_pad))
        split = rows.reshape((rows.shape[0],) + linear_map.in_factors)
        y = sum(opt_einsum.contract(network.equation, split, *[tensor(name).reshape(array.shape) for name, array
                                                               in zip(network.names[1:], network.arrays)],
                                    optimize=ssa_to_linear(list(network.path)), backend="torch")
                for network in linear_map.networks())
        y = y.reshape(rows.shape[0], -1)[:, :linear_map.out_dim]
        return y.reshape(x.shape[:-1] + (linear_map.out_dim,))

    # --- write-back -------------------------------------------------------------------

    def write_back(self) -> None:
        """Store the trained parameters in the module's maps and arrays."""
        trained: dict[tuple[int, str, int | None], dict[str | None, np.ndarray]] = {}
        for ref, i in self._index.items():
            trained.setdefault((ref.op, ref.key, ref.index), {})[ref.tensor] = self.weights[i].detach().numpy()
        for (position, key, index), tensors in trained.items():
            op = self.module.ops[position]
            old = op.attrs[key] if index is None else op.attrs[key][index]
            if isinstance(old, LinearMap):
                meta = {key: value for key, value in old.meta().items() if key not in STALE_AFTER_TRAINING}
                new = type(old).from_parts(meta, {name: tensors[name].astype(array.dtype)
                                                  for name, array in old.tensors().items()})
            else:
                new = tensors[None].astype(old.dtype)
            if index is None:
                op.attrs[key] = new
            else:
                op.attrs[key] = [new if i == index else item for i, item in enumerate(op.attrs[key])]


def _as_float(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(FLOAT) if tensor.is_floating_point() else tensor


# --- kernels ----------------------------------------------------------------------------

Kernel = Callable[[TorchModel, int, Op, list], list]
KERNELS: dict[str, Kernel] = {}


kernel = registrar(KERNELS)


def _elementwise(fn):
    return lambda model, position, op, args: [fn(*args)]


for _kind, _fn in {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "relu": torch.relu, "tanh": torch.tanh,
    "neg": torch.neg, "exp": torch.exp, "matmul": torch.matmul, "sigmoid": torch.sigmoid,
}.items():
    KERNELS[_kind] = _elementwise(_fn)


@kernel("div")
def _div(model, position, op, args):
    a, b = args
    return [torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b]


@kernel("const")
def _const(model, position, op, args):
    ref = WeightRef(position, "value", None, None)
    if ref in model._index or ref in model._fixed:
        return [model.weight(ref)]
    return [_as_float(torch.as_tensor(np.array(op.attrs["value"])))]


@kernel("linear")
def _linear(model, position, op, args):
    y = model.apply_map(position, "weight", None, op.attrs["weight"], args[0])
    if op.attrs["bias"] is None:
        return [y]
    return [y + model.weight(WeightRef(position, "bias", None, None))]


@kernel("softmax")
def _softmax(model, position, op, args):
    return [torch.softmax(args[0], dim=op.attrs["axis"])]


@kernel("log_softmax")
def _log_softmax(model, position, op, args):
    return [torch.log_softmax(args[0], dim=op.attrs["axis"])]


@kernel("reshape")
def _reshape(model, position, op, args):
    x, target = args
    dims = [int(d) for d in target.tolist()]
    if not op.attrs["allowzero"]:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return [x.reshape(dims)]


@kernel("transpose")
def _transpose(model, position, op, args):
    return [args[0].permute(*op.attrs["perm"])]


@kernel("slice")
def _slice(model, position, op, args):
    """Python slicing, negative steps included (torch has none): gather the indices."""
    x = args[0]
    starts, ends = op.attrs["starts"], op.attrs["ends"]
    axes = op.attrs["axes"] or range(len(starts))
    steps = op.attrs["steps"] or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        indices = range(*slice(start, end, step).indices(x.shape[axis]))
        x = x.index_select(axis, torch.as_tensor(list(indices), dtype=torch.int64))
    return [x]


@kernel("gather")
def _gather(model, position, op, args):
    x, indices = args
    axis = op.attrs["axis"] % x.dim()
    flat = indices.reshape(-1).to(torch.int64) % x.shape[axis]
    taken = x.index_select(axis, flat)
    return [taken.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])]


@kernel("concat")
def _concat(model, position, op, args):
    return [torch.cat(args, dim=op.attrs["axis"])]


@kernel("split")
def _split(model, position, op, args):
    return list(torch.split(args[0], op.attrs["sizes"], dim=op.attrs["axis"]))


@kernel("squeeze")
def _squeeze(model, position, op, args):
    x = args[0]
    return [x.squeeze(tuple(a % x.dim() for a in op.attrs["axes"]))]


@kernel("unsqueeze")
def _unsqueeze(model, position, op, args):
    x = args[0]
    rank = x.dim() + len(op.attrs["axes"])
    for axis in sorted(a % rank for a in op.attrs["axes"]):
        x = x.unsqueeze(axis)
    return [x]


@kernel("flatten")
def _flatten(model, position, op, args):
    x = args[0]
    axis = op.attrs["axis"] + x.dim() if op.attrs["axis"] < 0 else op.attrs["axis"]
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@kernel("shape")
def _shape(model, position, op, args):
    return [torch.as_tensor(args[0].shape[slice(op.attrs["start"], op.attrs["end"])], dtype=torch.int64)]


@kernel("cast")
def _cast(model, position, op, args):
    target = element_type(op.attrs["to"])
    dtype = FLOAT if isinstance(target, FloatType) else getattr(torch, str(np.dtype(target.numpy)))
    return [args[0].to(dtype)]


@kernel("expand")
def _expand(model, position, op, args):
    x, shape = args
    return [x.expand(np.broadcast_shapes(tuple(x.shape), tuple(int(d) for d in shape.tolist())))]


# --- recurrent ops ------------------------------------------------------------------------


def _activation(name: str, alpha, beta) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ONNX recurrent activation ``name`` in torch."""
    table = {
        "Sigmoid": torch.sigmoid,
        "Tanh": torch.tanh,
        "Relu": torch.relu,
        "Affine": lambda x: alpha * x + beta,
        "LeakyRelu": lambda x: torch.where(x >= 0, x, alpha * x),
        "ThresholdedRelu": lambda x: torch.where(x > alpha, x, torch.zeros_like(x)),
        "ScaledTanh": lambda x: alpha * torch.tanh(beta * x),
        "HardSigmoid": lambda x: torch.clamp(alpha * x + beta, 0, 1),
        "Elu": lambda x: torch.where(x >= 0, x, alpha * (torch.exp(x) - 1)),
        "Softsign": lambda x: x / (1 + torch.abs(x)),
        "Softplus": torch.nn.functional.softplus,
    }
    return table[name]


class _Recurrent:
    """One recurrent op of the torch model: its maps by direction, its bias, and the
    sweep over directions, layout and time that the NumPy runtime's
    ``interpreter.recurrent`` makes (all input projections at once, then the cell step
    by step; rows past their length keep their state and output zeros)."""

    def __init__(self, model: TorchModel, position: int, op: Op):
        self.model, self.position, self.op = model, position, op
        self.hidden = op.attrs["hidden_size"]
        self.dirs = num_directions(op)
        self.activations = [_activation(*params) for params in activation_params(op)]

    def gates(self, key: str, d: int, value: torch.Tensor, maps: range | None = None) -> torch.Tensor:
        """Direction ``d``'s maps of ``key`` (or those of ``maps``, indices within the
        direction) applied to ``value``, concatenated."""
        per_dir = len(self.op.attrs[key]) // self.dirs
        indices = [d * per_dir + i for i in (maps if maps is not None else range(per_dir))]
        parts = [self.model.apply_map(self.position, key, i, self.op.attrs[key][i], value) for i in indices]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def projection(self, d: int, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[0], x.shape[1]
        return self.gates("w", d, x.reshape(steps * batch, -1)).reshape(steps, batch, -1)

    def weight(self, key: str, d: int) -> torch.Tensor | None:
        """Direction ``d``'s row of the ``bias`` or ``peepholes`` parameter."""
        return None if self.op.attrs[key] is None else self.model.weight(WeightRef(self.position, key, None, None))[d]

    def run(self, args: list, cell: Callable) -> list[torch.Tensor]:
        """``cell(d, gates_x, states) -> step`` per direction gives ``step(t, states) -> new states``."""
        count = len(RECURRENT[self.op.kind].states)
        x, seq_lens, *initial = (list(args) + [None] * (2 + count))[:2 + count]
        layout = self.op.attrs["layout"]
        if layout:
            x = x.transpose(0, 1)
            initial = [None if s is None else s.transpose(0, 1) for s in initial]
        steps, batch = x.shape[0], x.shape[1]
        lens = None if seq_lens is None else seq_lens.to(torch.int64)
        ys, finals = [], []
        for d in range(self.dirs):
            states = [torch.zeros(batch, self.hidden, dtype=FLOAT) if s is None else s[d] for s in initial]
            step = cell(d, self.projection(d, x))
            outputs = [None] * steps
            for t in (range(steps - 1, -1, -1) if self.op.attrs["direction"] == "reverse" or d == 1 else range(steps)):
                new = step(t, states)
                if lens is None:
                    states, outputs[t] = new, new[0]
                else:
                    active = (t < lens)[:, None]
                    states = [torch.where(active, n, s) for n, s in zip(new, states)]
                    outputs[t] = torch.where(active, new[0], torch.zeros_like(new[0]))
            ys.append(torch.stack(outputs))
            finals.append(states)
        y = torch.stack(ys, dim=1)
        states = [torch.stack([f[k] for f in finals]) for k in range(count)]
        if layout:
            return [y.permute(2, 0, 1, 3)] + [s.transpose(0, 1) for s in states]
        return [y] + states

    def clipped(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.op.attrs["clip"]
        return x if clip is None else torch.clamp(x, -clip, clip)


@kernel("lstm")
def _lstm(model, position, op, args):
    """The NumPy runtime's LSTM: all input projections at once, then the cell step by step."""
    recurrent, attrs, hidden = _Recurrent(model, position, op), op.attrs, op.attrs["hidden_size"]

    def cell(d, gates_x):
        bias = recurrent.weight("bias", d)
        if bias is not None:
            gates_x = gates_x + (bias[:4 * hidden] + bias[4 * hidden:] if bias.shape[0] == 8 * hidden else bias)
        peepholes = recurrent.weight("peepholes", d)
        update = _Cell(None if peepholes is None else peepholes.split(hidden), attrs["clip"], attrs["input_forget"],
                       recurrent.activations[3 * d:3 * d + 3]).update
        return lambda t, states: list(update(recurrent.gates("r", d, states[0]) + gates_x[t], states[1]))

    return recurrent.run(args, cell)


@kernel("gru")
def _gru(model, position, op, args):
    """The NumPy runtime's GRU (``interpreter.gru``), with the same reading of a stacked R."""
    recurrent, hidden, lbr = _Recurrent(model, position, op), op.attrs["hidden_size"], op.attrs["linear_before_reset"]
    separate = len(op.attrs["r"]) == 3 * recurrent.dirs

    def cell(d, gates_x):
        bias = recurrent.weight("bias", d)
        recurrent_bias = None
        if bias is not None and bias.shape[0] == 6 * hidden:
            folded = bias[3 * hidden:5 * hidden] if lbr else bias[3 * hidden:]
            recurrent_bias = bias[5 * hidden:] if lbr else None
            bias = bias[:3 * hidden] + torch.nn.functional.pad(folded, (0, 3 * hidden - folded.shape[0]))
        if bias is not None:
            gates_x = gates_x + bias
        f, g = recurrent.activations[2 * d:2 * d + 2]

        def step(t, states):
            (h,) = states
            rows = recurrent.gates("r", d, h, range(2) if separate and not lbr else None)
            zr = f(recurrent.clipped(rows[:, :2 * hidden] + gates_x[t, :, :2 * hidden]))
            z, r = zr[:, :hidden], zr[:, hidden:]
            if lbr:
                rn = rows[:, 2 * hidden:] if recurrent_bias is None else rows[:, 2 * hidden:] + recurrent_bias
                candidate = r * rn
            else:
                candidate = recurrent.gates("r", d, r * h, range(2, 3) if separate else None)[:, -hidden:]
            n = g(recurrent.clipped(gates_x[t, :, 2 * hidden:] + candidate))
            return [(1 - z) * n + z * h]

        return step

    return recurrent.run(args, cell)


@kernel("rnn")
def _rnn(model, position, op, args):
    """The NumPy runtime's RNN: ``h' = f(clip(W x + R h + b))``."""
    recurrent, hidden = _Recurrent(model, position, op), op.attrs["hidden_size"]

    def cell(d, gates_x):
        bias = recurrent.weight("bias", d)
        if bias is not None:
            gates_x = gates_x + (bias[:hidden] + bias[hidden:] if bias.shape[0] == 2 * hidden else bias)
        f = recurrent.activations[d]
        return lambda t, states: [f(recurrent.clipped(recurrent.gates("r", d, states[0]) + gates_x[t]))]

    return recurrent.run(args, cell)


class _Cell:
    """The LSTM cell update from gate pre-activations (ONNX order i, o, f, c)."""

    def __init__(self, peepholes, clip, input_forget, activations):
        self.peepholes = peepholes
        self.clip = clip
        self.input_forget = input_forget
        self.f_act, self.g_act, self.h_act = activations

    def _clipped(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.clip is None else torch.clamp(x, -self.clip, self.clip)

    def update(self, gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate_i, gate_o, gate_f, gate_c = gates.chunk(4, dim=1)
        if self.peepholes is not None:
            p_i, p_o, p_f = self.peepholes
            gate_i, gate_f = gate_i + p_i * c, gate_f + p_f * c
        else:
            gate_o = self._clipped(gate_o)
        gate_i, gate_f, gate_c = self._clipped(gate_i), self._clipped(gate_f), self._clipped(gate_c)
        i = self.f_act(gate_i)
        f = 1 - i if self.input_forget else self.f_act(gate_f)
        c_new = f * c + i * self.g_act(gate_c)
        if self.peepholes is not None:
            gate_o = self._clipped(gate_o + p_o * c_new)
        return self.f_act(gate_o) * self.h_act(c_new), c_new
