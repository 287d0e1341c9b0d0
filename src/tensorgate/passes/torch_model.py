"""A trainable PyTorch twin of an IR module, for ``passes.finetune``.

``TorchModel(module)`` is a ``torch.nn.Module`` whose forward runs the module's ops with
torch kernels that follow the NumPy runtime (the executable definition of every op):
same formulas, and the LSTM's sums in the same order, so its outputs match
``run_module`` to float32 rounding.  Its parameters are the module's weights:

* every tensor of every linear map: a dense matrix, or the cores of a tt/bt/ht map,
  which are applied by contracting the input with them as the map's networks say
  (``TensorizedMap.networks``, in their default pairwise order), never by rebuilding ``W``;
* the biases and peepholes of ``linear`` and ``lstm`` ops;
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
from ..ir.ops import activation_params, num_directions
from ..ir.tensor_formats import TensorizedMap
from ..ir.types import FloatType, element_type
from ..registry import registrar

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
        elif key in ("bias", "peepholes") and isinstance(leaf, np.ndarray) or (
                op.kind == "const" and key == "value" and leaf.dtype.kind == "f" and leaf.size > 1):
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

    def forward(self, inputs: dict[str, torch.Tensor], names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """The values ``names`` (default: the module's outputs) for ``inputs`` keyed by
        input name; float inputs are computed in float32."""
        env = {id(v): _as_float(torch.as_tensor(inputs[v.name])) for v in self.module.inputs}
        for position, op in enumerate(self.module.ops):
            kernel = KERNELS.get(op.kind)
            if kernel is None:
                raise ExecutionError(f"{op.describe()}: the torch model has no kernel for this op")
            args = [None if v is None else env[id(v)] for v in op.operands]
            for value, result in zip(op.results, kernel(self, position, op, args)):
                env[id(value)] = result
        by_name = {v.name: v for v in self.module.values()}
        return {name: env[id(by_name[name])] for name in (names or [v.name for v in self.module.outputs])}

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


# --- lstm ----------------------------------------------------------------------------------


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


@kernel("lstm")
def _lstm(model, position, op, args):
    """The NumPy runtime's LSTM: all input projections at once, then the cell step by step."""
    x, seq_lens, h0, c0 = (list(args) + [None] * 4)[:4]
    attrs = op.attrs
    layout, hidden = attrs["layout"], attrs["hidden_size"]
    dirs = num_directions(op)
    if layout:
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
        c0 = None if c0 is None else c0.transpose(0, 1)
    steps, batch = x.shape[0], x.shape[1]
    lens = None if seq_lens is None else seq_lens.to(torch.int64)
    activations = [_activation(*params) for params in activation_params(op)]
    w_per_dir, r_per_dir = len(attrs["w"]) // dirs, len(attrs["r"]) // dirs
    ys, hs, cs = [], [], []
    for d in range(dirs):
        def gates_of(key: str, per_dir: int, value: torch.Tensor) -> torch.Tensor:
            parts = [model.apply_map(position, key, i, attrs[key][i], value)
                     for i in range(d * per_dir, (d + 1) * per_dir)]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

        gates_x = gates_of("w", w_per_dir, x.reshape(steps * batch, -1)).reshape(steps, batch, 4 * hidden)
        if attrs["bias"] is not None:
            bias = model.weight(WeightRef(position, "bias", None, None))[d]
            gates_x = gates_x + (bias[:4 * hidden] + bias[4 * hidden:] if bias.shape[0] == 8 * hidden else bias)
        peepholes = None
        if attrs["peepholes"] is not None:
            peepholes = model.weight(WeightRef(position, "peepholes", None, None))[d].split(hidden)
        cell = _Cell(peepholes, attrs["clip"], attrs["input_forget"], activations[3 * d:3 * d + 3])
        h = torch.zeros(batch, hidden, dtype=FLOAT) if h0 is None else h0[d]
        c = torch.zeros(batch, hidden, dtype=FLOAT) if c0 is None else c0[d]
        outputs = [None] * steps
        for t in (range(steps - 1, -1, -1) if attrs["direction"] == "reverse" or d == 1 else range(steps)):
            h_new, c_new = cell.update(gates_of("r", r_per_dir, h) + gates_x[t], c)
            if lens is None:
                h, c, outputs[t] = h_new, c_new, h_new
            else:
                active = (t < lens)[:, None]
                h, c = torch.where(active, h_new, h), torch.where(active, c_new, c)
                outputs[t] = torch.where(active, h_new, torch.zeros_like(h_new))
        ys.append(torch.stack(outputs))
        hs.append(h)
        cs.append(c)
    y, h, c = torch.stack(ys, dim=1), torch.stack(hs), torch.stack(cs)
    if layout:
        return [y.permute(2, 0, 1, 3), h.transpose(0, 1), c.transpose(0, 1)]
    return [y, h, c]


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
