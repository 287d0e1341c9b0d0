"""Tensorized LSTMs written natively in PyTorch, for the raising tests.

* ``TorchTensorizedLinear``: ``y = W x + b`` with ``W`` held as TT cores, BT blocks or
  HT leaves and transfer tensors, each parameter shaped exactly as the matching
  ``TTMap``/``BTMap``/``HTMap`` tensor, so ``reference_map()`` builds the map from the
  parameters themselves.  ``style`` says how ``forward`` contracts the input with them:
  ``"einsum"`` (one ``torch.einsum`` per tensor), ``"einsum1"`` (one ``torch.einsum`` over
  the whole network) or ``"matmul"`` (``permute``/``reshape``/``@`` per tensor).
* ``TorchTensorizedLSTM``: an LSTM cell written out step by step (a Python loop, which
  the exporters unroll) with ``W x_t`` from tensorized maps — one map for the stacked
  gates or one per gate — and a dense recurrent ``nn.Linear``; gates in torch's order
  ``i, f, g, o`` or ONNX's ``i, o, f, c``.  ``variant`` spells the same cell otherwise
  (``"commuted"``) or swaps in one the raising must not take for an LSTM
  (``"relu_candidate"``); ``fmt="tr"`` (a tensor ring) is a map that is not TT/BT/HT.
* ``export_tensorized_lstm``: either exporter, symbolic batch, the sequence length fixed
  (the loop is unrolled for it); ``export_tensorized_linear`` for a map alone.
* ``expected_w``/``expected_r``/``expected_bias`` and ``check_*``: what the raised
  ``lstm`` op must hold and compute.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opt_einsum
import torch

from models import assert_close_f32, run_onnxruntime
from tensorgate.ir.linear_map import LinearMap
from tensorgate.ir.tensor_formats import BTMap, HTMap, TTMap, balanced_tree, tree_nodes
from tensorgate.interpreter import run_module

PARAM_SCALE = 0.7  # every format's W then has entries of about 0.2-0.9 (std) at the test sizes
GATE_ORDERS = {"ifgo": ("i", "f", "g", "o"), "iofc": ("i", "o", "f", "g")}


@dataclass(frozen=True)
class Term:
    """One parameter of a network and the einsum labels of its axes."""

    name: str
    labels: str


class TorchTensorizedLinear(torch.nn.Module):
    """``y[..., M] = W x[..., N] + b`` with ``W`` in a decomposed format.

    ``fmt``: ``"tt"`` (ranks ``[1, rank, .., rank, 1]``), ``"bt"`` (``blocks`` Tucker blocks,
    every Tucker rank ``rank``), ``"ht"`` (balanced dimension tree, every rank below the
    root ``rank``) or ``"tr"`` (a tensor ring: TT cores whose first and last bond close a loop,
    which no tensorgate format holds).
    """

    def __init__(self, fmt: str, out_factors, in_factors, rank: int = 2, blocks: int = 2,
                 style: str = "einsum", bias: bool = True):
        super().__init__()
        self.fmt, self.style = fmt, style
        self.out_factors, self.in_factors = tuple(out_factors), tuple(in_factors)
        self.params = torch.nn.ParameterDict()
        self.networks: list[list[Term]] = []
        getattr(self, f"_build_{fmt}")(rank, blocks)
        self.bias = torch.nn.Parameter(0.1 * torch.randn(self.out_dim)) if bias else None

    @property
    def d(self) -> int:
        return len(self.out_factors)

    @property
    def out_dim(self) -> int:
        return math.prod(self.out_factors)

    @property
    def in_dim(self) -> int:
        return math.prod(self.in_factors)

    # --- parameters, in the formats' layouts ---------------------------------------------

    def _param(self, name: str, *shape: int) -> None:
        self.params[name] = torch.nn.Parameter(PARAM_SCALE * torch.randn(*shape))

    def _labels(self):
        rows = [opt_einsum.get_symbol(1 + k) for k in range(self.d)]
        cols = [opt_einsum.get_symbol(1 + self.d + k) for k in range(self.d)]
        fresh = (opt_einsum.get_symbol(1 + 2 * self.d + k) for k in range(100))
        return rows, cols, fresh

    def _build_tt(self, rank, blocks, ring: bool = False):
        rows, cols, fresh = self._labels()
        ranks = [rank if ring or 0 < k < self.d else 1 for k in range(self.d + 1)]
        bonds = [next(fresh) for _ in range(self.d + 1)]
        if ring:
            bonds[-1] = bonds[0]
        terms = []
        for k, (m, n) in enumerate(zip(self.out_factors, self.in_factors)):
            self._param(f"g{k}", ranks[k], m, n, ranks[k + 1])
            terms.append(Term(f"g{k}", bonds[k] + rows[k] + cols[k] + bonds[k + 1]))
        self.networks = [terms]

    def _build_tr(self, rank, blocks):
        self._build_tt(rank, blocks, ring=True)

    def _build_bt(self, rank, blocks):
        rows, cols, fresh = self._labels()
        for b in range(blocks):
            tucker = [next(fresh) for _ in range(self.d)]
            terms = []
            for k, (m, n) in enumerate(zip(self.out_factors, self.in_factors)):
                self._param(f"b{b}_f{k}", m, n, rank)
                terms.append(Term(f"b{b}_f{k}", rows[k] + cols[k] + tucker[k]))
            self._param(f"b{b}_core", *[rank] * self.d)
            terms.append(Term(f"b{b}_core", "".join(tucker)))
            self.networks.append(terms)

    def _build_ht(self, rank, blocks):
        rows, cols, fresh = self._labels()
        self.tree = balanced_tree(self.d)
        nodes = list(tree_nodes(self.tree))
        bond = {path: next(fresh) for path, _ in nodes}
        leaves, transfers = [], []
        for path, node in nodes:
            own = 1 if not path else rank
            if isinstance(node, list):
                self._param(f"t{path}", own, rank, rank)
                transfers.append(Term(f"t{path}", bond[path] + bond[path + "0"] + bond[path + "1"]))
            else:
                self._param(f"u{node}", self.out_factors[node], self.in_factors[node], own)
                leaves.append(Term(f"u{node}", rows[node] + cols[node] + bond[path]))
        self.networks = [sorted(leaves, key=lambda t: t.name) + transfers[::-1]]

    # --- application ----------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols, _ = self._labels()
        t = x.reshape(-1, *self.in_factors)
        y = None
        for terms in self.networks:
            part = self._contract(t, "a" + "".join(cols), terms, "a" + "".join(rows)).reshape(-1, self.out_dim)
            y = part if y is None else y + part
        return y if self.bias is None else y + self.bias

    def _contract(self, t, labels: str, terms: list[Term], output: str) -> torch.Tensor:
        """Contract ``t`` (axes ``labels``, batch first) with ``terms`` in order."""
        if self.style == "einsum1":
            equation = ",".join([labels] + [term.labels for term in terms]) + "->" + output
            return torch.einsum(equation, t, *[self.params[term.name] for term in terms])
        for index, term in enumerate(terms):
            later = set(output).union(*(u.labels for u in terms[index + 1:]))
            kept = [c for c in labels if c not in term.labels]
            kept += [c for c in term.labels if c not in labels and c in later]
            step = _einsum_step if self.style == "einsum" else _matmul_step
            t = step(t, labels, self.params[term.name], term.labels, "".join(kept))
            labels = "".join(kept)
        return t.permute(*[labels.index(c) for c in output]) if labels != output else t

    def reference_map(self) -> LinearMap:
        """The tensorgate map holding exactly this module's parameters."""
        arrays = {name: p.detach().numpy() for name, p in self.params.items()}
        if self.fmt == "tt":
            return TTMap.from_cores([arrays[f"g{k}"] for k in range(self.d)])
        if self.fmt == "bt":
            blocks = [(arrays[f"b{b}_core"], [arrays[f"b{b}_f{k}"] for k in range(self.d)])
                      for b in range(len(self.networks))]
            return BTMap.from_blocks(blocks)
        if self.fmt == "ht":
            transfers = {name[1:]: a for name, a in arrays.items() if name.startswith("t")}
            return HTMap.from_tree(self.tree, [arrays[f"u{k}"] for k in range(self.d)], transfers)
        raise ValueError(f"no tensorgate format holds a '{self.fmt}' map")

    def bias_array(self) -> np.ndarray | None:
        return None if self.bias is None else self.bias.detach().numpy()


def _einsum_step(t, labels, core, core_labels, output):
    return torch.einsum(f"{labels},{core_labels}->{output}", t, core)


def _matmul_step(t, labels, core, core_labels, output):
    """One contraction as ``permute``, ``reshape`` and a 2-D ``@``; ``labels[0]`` is the
    batch axis and stays first.  Labels of ``core`` not in ``output`` nor ``labels`` are
    size-1 bonds and are reshaped away."""
    shared = [c for c in labels if c in core_labels]
    kept = [c for c in labels if c not in core_labels]
    new = [c for c in output if c not in labels]
    dangling = [c for c in core_labels if c not in labels and c not in output]
    sizes = dict(zip(labels, t.shape)) | dict(zip(core_labels, core.shape))
    k = math.prod(sizes[c] for c in shared)
    left = t.permute(*[labels.index(c) for c in kept + shared]).reshape(-1, k)
    right = core.permute(*[core_labels.index(c) for c in shared + new + dangling]).reshape(k, -1)
    y = (left @ right).reshape(-1, *[sizes[c] for c in kept[1:] + new])
    order = kept + new
    return y.permute(*[order.index(c) for c in output]) if order != list(output) else y


def export_tensorized_linear(linear: TorchTensorizedLinear, path: Path, exporter: str = "torchscript") -> Path:
    """Export ``linear`` alone (input ``x`` of shape ``[batch, N]``, output ``y``)."""
    example = torch.randn(2, linear.in_dim)
    kwargs = {"input_names": ["x"], "output_names": ["y"]}
    if exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=False, verbose=False, opset_version=18,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    else:
        kwargs.update(dynamo=False, opset_version=17, dynamic_axes={"x": {0: "batch"}})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(linear.eval(), (example,), path, **kwargs)
    return Path(path)


# --- the LSTM --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorizedLSTM:
    """A tensorized LSTM and how to export it.

    ``gates``: ``"stacked"`` (one ``4H × I`` map; ``out_factors[0]`` is a multiple of 4,
    so the gate is the leading out factor) or ``"separate"`` (four ``H × I`` maps).
    ``out_factors`` tensorize the stacked ``4H`` or, for separate gates, ``H``.
    """

    fmt: str = "tt"
    style: str = "einsum"
    gate_order: str = "ifgo"
    gates: str = "stacked"
    exporter: str = "torchscript"
    opset: int = 17
    in_factors: tuple[int, ...] = (2, 3, 2)
    out_factors: tuple[int, ...] = (4, 4, 2)
    rank: int = 2
    blocks: int = 2
    seq: int = 3
    batch_first: bool = False
    reverse: bool = False  # the loop runs from the last step to the first
    initial_state: bool = False  # h0 and c0 are inputs (else zeros)
    dynamic_batch: bool = True
    variant: str = "lstm"  # or "commuted" (same cell, other spelling) or "relu_candidate" (not an LSTM)
    seed: int = 0

    @property
    def input_size(self) -> int:
        return math.prod(self.in_factors)

    @property
    def hidden_size(self) -> int:
        rows = math.prod(self.out_factors)
        return rows // 4 if self.gates == "stacked" else rows

    @property
    def file_name(self) -> str:
        fields = [self.fmt, self.style, self.gate_order, self.gates, self.exporter, f"op{self.opset}",
                  "x".join(map(str, self.in_factors)), "x".join(map(str, self.out_factors)), f"r{self.rank}",
                  f"b{self.blocks}", f"t{self.seq}", "bf" if self.batch_first else "sf",
                  "rev" if self.reverse else "fwd", "h0" if self.initial_state else "zeros",
                  "dyn" if self.dynamic_batch else "static", self.variant, f"s{self.seed}"]
        return "-".join(fields) + ".onnx"

    def input_shape(self, batch: int) -> tuple[int, int, int]:
        return (batch, self.seq, self.input_size) if self.batch_first else (self.seq, batch, self.input_size)

    def feeds(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Random inputs for the exported model."""
        feeds = {"x": rng.standard_normal(self.input_shape(batch)).astype(np.float32)}
        if self.initial_state:
            for name in ("h0", "c0"):
                feeds[name] = rng.standard_normal((batch, self.hidden_size)).astype(np.float32)
        return feeds


class TorchTensorizedLSTM(torch.nn.Module):
    """One LSTM layer unrolled over time; returns (all h in time order, last h, last c)."""

    def __init__(self, config: TensorizedLSTM):
        super().__init__()
        self.config = config
        count = 1 if config.gates == "stacked" else 4
        self.w = torch.nn.ModuleList(
            TorchTensorizedLinear(config.fmt, config.out_factors, config.in_factors, config.rank, config.blocks,
                                  config.style)
            for _ in range(count)
        )
        self.r = torch.nn.Linear(config.hidden_size, 4 * config.hidden_size)

    def forward(self, x, h0=None, c0=None):
        config = self.config
        time_axis = 1 if config.batch_first else 0
        h = torch.zeros(x.shape[1 - time_axis], config.hidden_size) if h0 is None else h0
        c = torch.zeros(x.shape[1 - time_axis], config.hidden_size) if c0 is None else c0
        outputs = []
        steps = range(x.shape[time_axis])
        for t in reversed(steps) if config.reverse else steps:
            if config.variant == "commuted":
                h, c = self._commuted_step(x.narrow(time_axis, t, 1).squeeze(time_axis), h, c)
                outputs.append(h)
                continue
            x_t = x[:, t] if config.batch_first else x[t]
            wx = torch.cat([w(x_t) for w in self.w], dim=-1) if len(self.w) > 1 else self.w[0](x_t)
            gates = dict(zip(GATE_ORDERS[config.gate_order], (wx + self.r(h)).chunk(4, dim=-1)))
            candidate = torch.relu(gates["g"]) if config.variant == "relu_candidate" else torch.tanh(gates["g"])
            c = torch.sigmoid(gates["f"]) * c + torch.sigmoid(gates["i"]) * candidate
            h = torch.sigmoid(gates["o"]) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs[::-1] if config.reverse else outputs, dim=time_axis), h, c

    def _commuted_step(self, x_t, h, c):
        """The same cell spelled otherwise: a one-step slice of x, the recurrent term
        first, gates cut by indexing, every product and sum in the other order."""
        hidden = self.config.hidden_size
        wx = torch.cat([w(x_t) for w in self.w], dim=-1) if len(self.w) > 1 else self.w[0](x_t)
        pre = self.r(h) + wx
        gates = {g: pre[:, k * hidden:(k + 1) * hidden] for k, g in enumerate(GATE_ORDERS[self.config.gate_order])}
        c = torch.tanh(gates["g"]) * torch.sigmoid(gates["i"]) + c * torch.sigmoid(gates["f"])
        return torch.tanh(c) * torch.sigmoid(gates["o"]), c


def tensorized_lstm(config: TensorizedLSTM) -> TorchTensorizedLSTM:
    """The seeded, eval-mode module that ``export_tensorized_lstm`` exports."""
    torch.manual_seed(config.seed)
    return TorchTensorizedLSTM(config).eval()


def exporter_of(configs: dict[str, "TensorizedLSTM"], directory: Path):
    """``export(name) -> (path, module)``: each named configuration exported to
    ``directory`` and imported once, on first use (exports take seconds)."""
    from tensorgate.frontend import import_onnx

    cache: dict[str, tuple[Path, object]] = {}

    def export(name: str):
        if name not in cache:
            path = export_tensorized_lstm(configs[name], directory)
            cache[name] = path, import_onnx(path)
        return cache[name]

    return export


def export_tensorized_lstm(config: TensorizedLSTM, directory: Path) -> Path:
    """Export ``config``'s LSTM (inputs ``x`` and, with ``initial_state``, ``h0``, ``c0``;
    outputs ``y``, ``h``, ``c``) to ``directory``."""
    return export_unrolled(tensorized_lstm(config), config, Path(directory) / config.file_name, ["y", "h", "c"])


def export_unrolled(model: torch.nn.Module, config, path: Path, outputs: list[str]) -> Path:
    """Export an unrolled recurrent ``model`` with ``config``'s exporter and opset (inputs
    ``config.feeds``, batch axes ``x``'s and the states' first).

    The batch is symbolic unless ``dynamic_batch`` is off (then 2); the sequence length
    is ``config.seq`` (the unrolled loop handles that many steps).  Exporter warnings
    are silenced as in ``models.py``.
    """
    example = {name: torch.from_numpy(a) for name, a in config.feeds(2, np.random.default_rng(0)).items()}
    batch_axes = {name: 0 for name in example} | {"x": 0 if config.batch_first else 1}
    kwargs = {"input_names": list(example), "output_names": outputs, "opset_version": config.opset}
    if config.exporter == "dynamo":
        kwargs.update(dynamo=True, external_data=False, verbose=False)
        if config.dynamic_batch:
            batch = torch.export.Dim("batch")
            kwargs["dynamic_shapes"] = {name: {batch_axes[name]: batch} for name in example}
    else:
        kwargs["dynamo"] = False
        if config.dynamic_batch:
            kwargs["dynamic_axes"] = {name: {batch_axes[name]: "batch"} for name in example}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(example.values()), path, **kwargs)
    return path


# --- what a raised LSTM must hold --------------------------------------------------------

ONNX_GATE_ORDER = ("i", "o", "f", "g")
LEADING_FACTOR_TENSORS = {"tt": ("g0", 1), "bt": ("f0", 0), "ht": ("u0", 0)}


def gate_rows(model: TorchTensorizedLSTM, array: np.ndarray, gate: str, axis: int = 0) -> np.ndarray:
    """Gate ``gate``'s block of a stacked ``4H`` array in the model's own gate order."""
    k = GATE_ORDERS[model.config.gate_order].index(gate)
    return np.split(array, 4, axis=axis)[k]


def expected_w(model: TorchTensorizedLSTM) -> list[LinearMap]:
    """The ``lstm`` op's W maps for ``model``: the model's own maps in ONNX gate order
    (separate gates), or its stacked map with the slices of the tensor that holds the
    leading output factor (TT core 0, each BT factor 0, HT leaf 0) permuted into ONNX
    order along that factor, all other tensors untouched."""
    if model.config.gates == "separate":
        order = GATE_ORDERS[model.config.gate_order]
        return [model.w[order.index(gate)].reference_map() for gate in ONNX_GATE_ORDER]
    reference = model.w[0].reference_map()
    suffix, axis = LEADING_FACTOR_TENSORS[model.config.fmt]
    tensors = {
        name: np.concatenate([gate_rows(model, t, g, axis) for g in ONNX_GATE_ORDER], axis=axis)
        if name.split(".")[-1] == suffix else t
        for name, t in reference.tensors().items()
    }
    return [type(reference).from_parts(reference.meta(), tensors)]


def expected_r(model: TorchTensorizedLSTM) -> np.ndarray:
    weight = model.r.weight.detach().numpy()
    return np.concatenate([gate_rows(model, weight, g) for g in ONNX_GATE_ORDER])


def expected_bias(model: TorchTensorizedLSTM) -> np.ndarray:
    """``[1, 8H]``: the input maps' biases, then the recurrent layer's, in ONNX order."""
    if model.config.gates == "separate":
        order = GATE_ORDERS[model.config.gate_order]
        wb = [model.w[order.index(g)].bias_array() for g in ONNX_GATE_ORDER]
    else:
        wb = [gate_rows(model, model.w[0].bias_array(), g) for g in ONNX_GATE_ORDER]
    rb = [gate_rows(model, model.r.bias.detach().numpy(), g) for g in ONNX_GATE_ORDER]
    return np.concatenate(wb + rb)[None]


def check_raised(module, config: TensorizedLSTM):
    """The whole cell loop is one lstm op with ``config``'s format; returns the op."""
    (op,) = module.ops_of("lstm")
    assert module.notes == []
    assert not {"einsum", "linear", "matmul", "sigmoid", "tanh", "mul"} & {o.kind for o in module.ops}
    assert {m.format for m in op.attrs["w"]} == {config.fmt}
    assert [m.format for m in op.attrs["r"]] == ["dense"]
    assert op.attrs["direction"] == ("reverse" if config.reverse else "forward")
    assert op.attrs["hidden_size"] == config.hidden_size
    return op


def check_outputs(module, path, config: TensorizedLSTM):
    batches = [2] if not config.dynamic_batch else [1, 4]
    for batch in batches:
        feeds = config.feeds(batch, np.random.default_rng(batch))
        expected = run_onnxruntime(path, feeds)
        outputs = run_module(module, feeds)
        assert list(outputs) == list(expected) == ["y", "h", "c"]
        for name, want in expected.items():
            assert_close_f32(outputs[name], want, f"{name} at batch {batch}")


def check_parameters(op, config: TensorizedLSTM):
    """Cores bit-identical to torch's parameters (see ``expected_w`` for the gate
    order), R and the biases exactly torch's in ONNX gate order."""
    model = tensorized_lstm(config)
    assert op.attrs["w"] == expected_w(model)
    assert np.array_equal(op.attrs["r"][0].to_dense(), expected_r(model))
    assert np.array_equal(op.attrs["bias"], expected_bias(model))
