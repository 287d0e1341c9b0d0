"""Model builders and references shared by the tests (``from models import ...``).

* ``TorchRecurrent`` / ``export_torch_recurrent``: an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``
  classifier exported by either PyTorch exporter at a chosen opset, with symbolic
  batch/sequence and, for the dynamo exporter, weights in an external-data file.
* ``OnnxRecurrent`` / ``make_onnx_recurrent``: a one-node ONNX LSTM, GRU or RNN built
  with ``onnx.helper`` with any combination of the optional inputs, attributes and
  outputs.  Weights and feeds are drawn in a fixed order from the seed, so two configs
  that differ only in ``layout`` describe the same computation.
* ``make_model``, ``freeze_inputs``: small graph helpers.
* ``run_onnxruntime`` and ``assert_close_f32``: the reference and the comparison.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

F32_EPS = float(np.finfo(np.float32).eps)


# --- comparison -------------------------------------------------------------------------

RTOL = 1e-5
# Absolute slack, in units of float32 eps times the largest |expected|.  Two correct
# float32 implementations differ by the rounding of their dot products (summation
# order: a few eps of the summands, which are about as large as the outputs) and of
# their sigmoid/tanh (onnxruntime's are polynomial approximations good to a few eps).
# Elements near 0 get no help from RTOL, so they need this floor.  Over the frontend
# tests (inputs and hidden sizes <= 13) the largest error beyond RTOL is 0.6 eps·scale;
# 4 leaves room for other seeds.  The error grows with the dot-product length and the
# number of steps (measured on random LSTMs: 4 at I=H=40, T=20; 10 at I=H=128, T=10),
# so tests of larger models pass a larger ``atol_eps`` and say why.
ATOL_EPS = 4


def assert_close_f32(actual: np.ndarray, expected: np.ndarray, name: str = "",
                     atol_eps: float = ATOL_EPS) -> None:
    """``actual`` equals ``expected`` up to float32 rounding: rtol 1e-5 plus an atol of
    ``atol_eps`` float32 eps scaled by the largest ``|expected|``."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol_eps * F32_EPS * max(scale, 1e-30),
                               err_msg=name)


def run_onnxruntime(model: onnx.ModelProto | str | Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a model on onnxruntime's CPU provider; outputs keyed by name."""
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


# --- hand-built graphs ------------------------------------------------------------------


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 22, name: str = "test") -> onnx.ModelProto:
    """A checked model; ``inputs``/``outputs`` are ``(name, elem_type, shape)`` triples
    or ValueInfoProtos, ``initializers`` maps names to arrays."""
    def info(spec):
        return spec if isinstance(spec, onnx.ValueInfoProto) else helper.make_tensor_value_info(*spec)

    graph = helper.make_graph(
        list(nodes), name, [info(i) for i in inputs], [info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in dict(initializers).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def freeze_inputs(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs named in ``arrays`` are initializers."""
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    kept = [info for info in frozen.graph.input if info.name not in arrays]
    del frozen.graph.input[:]
    frozen.graph.input.extend(kept)
    frozen.graph.initializer.extend(numpy_helper.from_array(np.asarray(a), n) for n, a in arrays.items())
    return frozen


@dataclass(frozen=True)
class OnnxRecurrent:
    """One ONNX LSTM, GRU or RNN node; inputs it does not use are left out of the node
    (P, initial_c and input_forget are the LSTM's, linear_before_reset the GRU's)."""

    op_type: str = "LSTM"
    seq: int = 4
    batch: int = 3
    input_size: int = 5
    hidden_size: int = 6
    direction: str = "forward"
    layout: int = 0
    bias: bool = True
    peepholes: bool = False
    sequence_lens: bool = False
    initial_h: bool = False
    initial_c: bool = False
    clip: float | None = None
    input_forget: int = 0
    activations: tuple[str, ...] | None = None
    activation_alpha: tuple[float, ...] | None = None
    activation_beta: tuple[float, ...] | None = None
    outputs: tuple[str, ...] = ("Y", "Y_h", "Y_c")
    hidden_size_attr: bool = True
    weights_as_inputs: bool = False
    linear_before_reset: int = 0
    opset: int = 22
    seed: int = 0

    @property
    def dirs(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    @property
    def gates(self) -> int:
        return {"LSTM": 4, "GRU": 3, "RNN": 1}[self.op_type]

    @property
    def result_names(self) -> tuple[str, ...]:
        return ("Y", "Y_h", "Y_c") if self.op_type == "LSTM" else ("Y", "Y_h")

    def output_shapes(self) -> dict[str, list]:
        d, t, b, h = self.dirs, self.seq, self.batch, self.hidden_size
        if self.layout:
            return {"Y": [b, t, d, h], "Y_h": [b, d, h], "Y_c": [b, d, h]}
        return {"Y": [t, d, b, h], "Y_h": [d, b, h], "Y_c": [d, b, h]}


def recurrent_arrays(config: OnnxRecurrent) -> dict[str, np.ndarray]:
    """Every tensor of ``config``'s node, drawn in a fixed order, in its layout."""
    rng = np.random.default_rng(config.seed)
    d, t, b, i, h = config.dirs, config.seq, config.batch, config.input_size, config.hidden_size
    g = config.gates

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    arrays = {
        "X": normal(t, b, i),
        "W": normal(d, g * h, i, scale=0.5),
        "R": normal(d, g * h, h, scale=0.5),
        "B": normal(d, 2 * g * h, scale=0.5),
        "P": normal(d, 3 * h, scale=0.5),
        "initial_h": normal(d, b, h),
        "initial_c": normal(d, b, h),
        "sequence_lens": rng.integers(1, t + 1, b).astype(np.int32),
    }
    arrays["sequence_lens"][0] = max(1, t - 1)  # at least one row stops early
    if config.layout:
        arrays["X"] = arrays["X"].transpose(1, 0, 2).copy()
        for name in ("initial_h", "initial_c"):
            arrays[name] = arrays[name].transpose(1, 0, 2).copy()
    return arrays


def make_onnx_recurrent(config: OnnxRecurrent) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model and its feeds.  sequence_lens/initial_h/initial_c are graph inputs;
    W/R/B/P are initializers (graph inputs with ``weights_as_inputs``)."""
    arrays = recurrent_arrays(config)
    wanted = {
        "X": True, "W": True, "R": True, "B": config.bias, "sequence_lens": config.sequence_lens,
        "initial_h": config.initial_h, "initial_c": config.initial_c, "P": config.peepholes,
    }
    node_inputs = [name if used else "" for name, used in wanted.items()]
    while node_inputs[-1] == "":
        node_inputs.pop()
    attrs = {"direction": config.direction, "layout": config.layout}
    if config.op_type == "LSTM":
        attrs["input_forget"] = config.input_forget
    elif config.op_type == "GRU":
        attrs["linear_before_reset"] = config.linear_before_reset
    if config.hidden_size_attr:
        attrs["hidden_size"] = config.hidden_size
    for key in ("clip", "activations", "activation_alpha", "activation_beta"):
        if getattr(config, key) is not None:
            attrs[key] = getattr(config, key)
    shapes = config.output_shapes()
    node_outputs = [name if name in config.outputs else "" for name in config.result_names]
    while node_outputs[-1] == "":
        node_outputs.pop()
    node = helper.make_node(config.op_type, node_inputs, node_outputs, name=config.op_type.lower(), **attrs)
    weights = {"W", "R", "B", "P"}
    fed = [n for n in node_inputs if n and (n not in weights or config.weights_as_inputs)]
    elem = {"sequence_lens": TensorProto.INT32}
    model = make_model(
        [node],
        [(n, elem.get(n, TensorProto.FLOAT), list(arrays[n].shape)) for n in fed],
        [(n, TensorProto.FLOAT, shapes[n]) for n in node_outputs if n],
        {n: arrays[n] for n in node_inputs if n and n not in fed},
        opset=config.opset,
    )
    return model, {n: arrays[n] for n in fed}


# --- PyTorch exports --------------------------------------------------------------------


@dataclass(frozen=True)
class TorchRecurrent:
    """An ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` classifier and how to export it.

    ``cell``: ``"lstm"``, ``"gru"``, ``"rnn_tanh"`` or ``"rnn_relu"`` (``nn.RNN`` with that
    nonlinearity).  ``head``: ``"softmax"`` (Linear + Softmax on the last time step),
    ``"log_softmax"``, ``"linear"`` (logits only) or ``"none"`` (the recurrent layer's
    output and final states).
    """

    cell: str = "lstm"
    exporter: str = "torchscript"  # or "dynamo"
    opset: int = 17
    input_size: int = 5
    hidden_size: int = 7
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    head: str = "softmax"
    num_classes: int = 3
    dynamic: bool = True
    external_data: bool = True  # dynamo exporter only
    seed: int = 0

    @property
    def file_name(self) -> str:
        fields = [self.cell, self.exporter, f"op{self.opset}", f"l{self.num_layers}",
                  "bi" if self.bidirectional else "uni", "bf" if self.batch_first else "sf", self.head,
                  "dyn" if self.dynamic else "static",
                  "ext" if self.external_data and self.exporter == "dynamo" else "emb", f"s{self.seed}",
                  f"{self.input_size}x{self.hidden_size}x{self.num_classes}"]
        return "-".join(fields) + ".onnx"

    def input_shape(self, batch: int, seq: int) -> tuple[int, int, int]:
        return (batch, seq, self.input_size) if self.batch_first else (seq, batch, self.input_size)

    @property
    def states(self) -> int:
        """Final states the layer returns: ``h`` and ``c`` for an LSTM, ``h`` otherwise."""
        return 2 if self.cell == "lstm" else 1


def torch_classifier(config: TorchRecurrent):
    """The (seeded, eval-mode) ``torch.nn.Module`` that ``export_torch_recurrent`` exports."""
    import torch

    layers = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    kwargs = {"num_layers": config.num_layers, "batch_first": config.batch_first,
              "bidirectional": config.bidirectional}
    if config.cell.startswith("rnn_"):
        kwargs["nonlinearity"] = config.cell[4:]

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.recurrent = layers.get(config.cell, torch.nn.RNN)(config.input_size, config.hidden_size, **kwargs)
            width = config.hidden_size * (2 if config.bidirectional else 1)
            self.head = torch.nn.Linear(width, config.num_classes)

        def forward(self, x):
            y, states = self.recurrent(x)
            if config.head == "none":
                return (y, *states) if config.cell == "lstm" else (y, states)
            last = y[:, -1] if config.batch_first else y[-1]
            logits = self.head(last)
            if config.head == "softmax":
                return torch.softmax(logits, dim=-1)
            if config.head == "log_softmax":
                return torch.log_softmax(logits, dim=-1)
            return logits

    torch.manual_seed(config.seed)
    return Classifier().eval()


def export_torch_recurrent(config: TorchRecurrent, directory: Path) -> Path:
    """Export ``config``'s classifier to ``directory`` (input ``x``); returns the file.

    The exporters warn about their own internals (deprecations, export-time guards);
    those warnings are silenced here so ``-W error`` applies to tensorgate's code.
    """
    import torch

    path = Path(directory) / config.file_name
    model = torch_classifier(config)
    example = torch.randn(*config.input_shape(batch=2, seq=4))
    outputs = ["y", "h_n", "c_n"][:1 + config.states] if config.head == "none" else ["probs"]
    batch_axis, seq_axis = (0, 1) if config.batch_first else (1, 0)
    kwargs = {"input_names": ["x"], "output_names": outputs, "opset_version": config.opset}
    if config.exporter == "dynamo":
        if config.dynamic:
            dims = {batch_axis: torch.export.Dim("batch"), seq_axis: torch.export.Dim("seq")}
            kwargs["dynamic_shapes"] = {"x": dims}
        kwargs.update(dynamo=True, external_data=config.external_data, verbose=False)
    else:
        if config.dynamic:
            kwargs["dynamic_axes"] = {"x": {batch_axis: "batch", seq_axis: "seq"}}
        kwargs.update(dynamo=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, **kwargs)
    return path
