"""Tensorized GRUs written natively in PyTorch (TT-GRU, tednet style), for the raising tests.

``TorchTensorizedGRU`` writes a GRU cell out step by step (a Python loop, which the
exporters unroll) with ``W x_t`` from tensorized maps (``tensorized_models.
TorchTensorizedLinear``) — one map for the three gates stacked in torch's order
``r, z, n``, or one per gate — and dense recurrent ``nn.Linear`` layers:

* ``form="lbr1"``: torch's ``nn.GRU`` cell, ``n = tanh(W_n x + r * (R_n h + b_hn))``,
  with one ``3H`` recurrent layer;
* ``form="lbr0"``: ``n = tanh(W_n x + R_n (r * h))``, with a ``2H`` layer for r and z and
  an ``H`` layer for the candidate.

``update`` spells the new state ``(1 - z) * n + z * h`` (``"blend"``) or
``n + z * (h - n)`` (``"lerp"``); ``"swapped"``, ``(1 - z) * h + z * n``, is a cell the
raising must not take for ONNX's GRU.  ``expected_*`` say what the raised ``gru`` op must hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tensorized_models import LEADING_FACTOR_TENSORS, TorchTensorizedLinear, export_unrolled
from tensorgate.ir.linear_map import LinearMap

TORCH_ORDER = ("r", "z", "n")
ONNX_ORDER = ("z", "r", "n")  # ONNX calls the candidate h


@dataclass(frozen=True)
class TensorizedGRU:
    fmt: str = "tt"
    style: str = "einsum"
    gates: str = "stacked"
    form: str = "lbr1"
    update: str = "blend"
    exporter: str = "torchscript"
    opset: int = 17
    in_factors: tuple[int, ...] = (2, 3, 2)
    out_factors: tuple[int, ...] = (3, 2, 2)  # stacked: 3H, the gate the leading factor
    rank: int = 2
    blocks: int = 2
    seq: int = 3
    batch_first: bool = False
    reverse: bool = False
    initial_state: bool = False
    dynamic_batch: bool = True
    seed: int = 0

    @property
    def input_size(self) -> int:
        return math.prod(self.in_factors)

    @property
    def hidden_size(self) -> int:
        rows = math.prod(self.out_factors)
        return rows // 3 if self.gates == "stacked" else rows

    @property
    def file_name(self) -> str:
        fields = ["gru", self.fmt, self.style, self.gates, self.form, self.update, self.exporter, f"op{self.opset}",
                  "x".join(map(str, self.in_factors)), "x".join(map(str, self.out_factors)), f"r{self.rank}",
                  f"t{self.seq}", "bf" if self.batch_first else "sf", "rev" if self.reverse else "fwd",
                  "h0" if self.initial_state else "zeros", "dyn" if self.dynamic_batch else "static",
                  f"s{self.seed}"]
        return "-".join(fields) + ".onnx"

    def input_shape(self, batch: int) -> tuple[int, int, int]:
        return (batch, self.seq, self.input_size) if self.batch_first else (self.seq, batch, self.input_size)

    def feeds(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        feeds = {"x": rng.standard_normal(self.input_shape(batch)).astype(np.float32)}
        if self.initial_state:
            feeds["h0"] = rng.uniform(-0.9, 0.9, (batch, self.hidden_size)).astype(np.float32)
        return feeds


class TorchTensorizedGRU(torch.nn.Module):
    """One GRU layer unrolled over time; returns (all h in time order, last h)."""

    def __init__(self, config: TensorizedGRU):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.w = torch.nn.ModuleList(
            TorchTensorizedLinear(config.fmt, config.out_factors, config.in_factors, config.rank, config.blocks,
                                  config.style)
            for _ in range(1 if config.gates == "stacked" else 3))
        if config.form == "lbr1":
            self.r = torch.nn.Linear(hidden, 3 * hidden)
        else:
            self.r_zr = torch.nn.Linear(hidden, 2 * hidden)  # rows r, z
            self.r_n = torch.nn.Linear(hidden, hidden)

    def forward(self, x, h0=None):
        config = self.config
        time_axis = 1 if config.batch_first else 0
        h = torch.zeros(x.shape[1 - time_axis], config.hidden_size) if h0 is None else h0
        outputs = []
        steps = range(x.shape[time_axis])
        for t in reversed(steps) if config.reverse else steps:
            x_t = x[:, t] if config.batch_first else x[t]
            wx = torch.cat([w(x_t) for w in self.w], dim=-1) if len(self.w) > 1 else self.w[0](x_t)
            x_r, x_z, x_n = wx.chunk(3, dim=-1)
            if config.form == "lbr1":
                h_r, h_z, h_n = self.r(h).chunk(3, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + r * h_n)
            else:
                h_r, h_z = self.r_zr(h).chunk(2, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + self.r_n(r * h))
            if config.update == "swapped":
                h = (1 - z) * h + z * n
            else:
                h = (1 - z) * n + z * h if config.update == "blend" else n + z * (h - n)
            outputs.append(h)
        return torch.stack(outputs[::-1] if config.reverse else outputs, dim=time_axis), h


def tensorized_gru(config: TensorizedGRU) -> TorchTensorizedGRU:
    torch.manual_seed(config.seed)
    return TorchTensorizedGRU(config).eval()


def export_tensorized_gru(config: TensorizedGRU, directory: Path) -> Path:
    """Export ``config``'s GRU (inputs ``x`` and, with ``initial_state``, ``h0``; outputs
    ``y``, ``h``), the batch symbolic unless ``dynamic_batch`` is off."""
    return export_unrolled(tensorized_gru(config), config, Path(directory) / config.file_name, ["y", "h"])


def _onnx_rows(array: np.ndarray, axis: int = 0) -> np.ndarray:
    """A stacked ``3H`` array (torch order r, z, n) in ONNX order z, r, h."""
    blocks = dict(zip(TORCH_ORDER, np.split(array, 3, axis=axis)))
    return np.concatenate([blocks[g] for g in ONNX_ORDER], axis=axis)


def expected_w(model: TorchTensorizedGRU) -> list[LinearMap]:
    """The model's own maps in ONNX order (separate gates), or its stacked map with the
    tensor holding the leading factor permuted to ONNX order, every other untouched."""
    if model.config.gates == "separate":
        return [model.w[TORCH_ORDER.index(g)].reference_map() for g in ONNX_ORDER]
    reference = model.w[0].reference_map()
    suffix, axis = LEADING_FACTOR_TENSORS[model.config.fmt]
    tensors = {name: _onnx_rows(t, axis) if name.split(".")[-1] == suffix else t
               for name, t in reference.tensors().items()}
    return [type(reference).from_parts(reference.meta(), tensors)]


def expected_r(model: TorchTensorizedGRU) -> np.ndarray:
    """R ``[3H, H]`` in ONNX order."""
    if model.config.form == "lbr1":
        return _onnx_rows(model.r.weight.detach().numpy())
    h_r, h_z = np.split(model.r_zr.weight.detach().numpy(), 2)
    return np.concatenate([h_z, h_r, model.r_n.weight.detach().numpy()])


def expected_bias(model: TorchTensorizedGRU) -> np.ndarray:
    """``[1, 6H]``: the input maps' biases, then the recurrent layers', in ONNX order."""
    if model.config.gates == "separate":
        wb = np.concatenate([model.w[TORCH_ORDER.index(g)].bias_array() for g in ONNX_ORDER])
    else:
        wb = _onnx_rows(model.w[0].bias_array())
    if model.config.form == "lbr1":
        rb = _onnx_rows(model.r.bias.detach().numpy())
    else:
        b_r, b_z = np.split(model.r_zr.bias.detach().numpy(), 2)
        rb = np.concatenate([b_z, b_r, model.r_n.bias.detach().numpy()])
    return np.concatenate([wb, rb])[None]
