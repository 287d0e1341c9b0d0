"""An RNN cell written out step by step (``h' = f(W x_t + R h + b)`` per time step, as a
Python loop over ``nn.RNNCell`` exports) raises to one ``rnn`` op whose outputs equal
onnxruntime's on the file; what is not an RNN chain stays generic ops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from models import assert_close_f32, run_onnxruntime
from onnx import TensorProto, helper, numpy_helper

from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module


@dataclass(frozen=True)
class WrittenRNN:
    activation: str = "Tanh"
    steps: int = 4
    batch: int = 2
    inputs: int = 6
    hidden: int = 5
    reverse: bool = False
    initial: bool = False
    time_major: bool = False  # steps cut by Split + Squeeze of a [T, B, I] input, else Gather along axis 1
    folded_first: bool = False  # step 0's R·0 + b_hh written as the constant b_hh (a folding exporter)
    share_recurrence: bool = True  # False: each step's R differs (not one RNN)


def written_rnn(case: WrittenRNN, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    hidden = case.hidden
    inits = {"w": rng.standard_normal((hidden, case.inputs)) * 0.5, "b_ih": rng.standard_normal(hidden) * 0.1,
             "b_hh": rng.standard_normal(hidden) * 0.1, "axis": np.array([0 if case.time_major else 1], np.int64)}
    inits.update({f"r{t}": rng.standard_normal((hidden, hidden)) * 0.5 for t in range(case.steps)})
    nodes = []
    x_shape = [case.steps, case.batch, case.inputs] if case.time_major else [case.batch, case.steps, case.inputs]
    if case.time_major:
        nodes.append(helper.make_node("Split", ["x"], [f"xs{t}" for t in range(case.steps)], axis=0,
                                      num_outputs=case.steps))
    h = "h0" if case.initial else None
    order = range(case.steps - 1, -1, -1) if case.reverse else range(case.steps)
    for k, t in enumerate(order):
        inits[f"t{t}"] = np.array(t, np.int64)
        if case.time_major:
            nodes.append(helper.make_node("Squeeze", [f"xs{t}", "axis"], [f"x{t}"]))
        else:
            nodes.append(helper.make_node("Gather", ["x", f"t{t}"], [f"x{t}"], axis=1))
        nodes.append(helper.make_node("Gemm", [f"x{t}", "w", "b_ih"], [f"gx{t}"], transB=1))
        r = f"r{t}" if not case.share_recurrence else "r0"
        if h is None and case.folded_first:
            nodes.append(helper.make_node("Add", [f"gx{t}", "b_hh"], [f"pre{t}"]))
        elif h is None:
            inits["zeros"] = np.zeros((case.batch, hidden))
            nodes.append(helper.make_node("Gemm", ["zeros", r, "b_hh"], [f"gh{t}"], transB=1))
            nodes.append(helper.make_node("Add", [f"gx{t}", f"gh{t}"], [f"pre{t}"]))
        else:
            nodes.append(helper.make_node("Gemm", [h, r, "b_hh"], [f"gh{t}"], transB=1))
            nodes.append(helper.make_node("Add", [f"gx{t}", f"gh{t}"], [f"pre{t}"]))
        nodes.append(helper.make_node(case.activation, [f"pre{t}"], [f"h{t + 1}" if k < case.steps - 1 else "h_last"]))
        h = f"h{t + 1}" if k < case.steps - 1 else "h_last"
        nodes.append(helper.make_node("Unsqueeze", [h, "axis"], [f"y{t}"]))
    nodes.append(helper.make_node("Concat", [f"y{t}" for t in range(case.steps)], ["y"],
                                  axis=0 if case.time_major else 1))
    y_shape = [case.steps, case.batch, hidden] if case.time_major else [case.batch, case.steps, hidden]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if case.initial:
        inputs.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, [case.batch, hidden]))
    graph = helper.make_graph(
        nodes, "written_rnn", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape),
         helper.make_tensor_value_info("h_last", TensorProto.FLOAT, [case.batch, hidden])],
        [numpy_helper.from_array(np.asarray(v, np.int64 if v.dtype.kind == "i" else np.float32), k)
         for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _feeds(case: WrittenRNN, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (case.steps, case.batch, case.inputs) if case.time_major else (case.batch, case.steps, case.inputs)
    feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
    if case.initial:
        feeds["h0"] = rng.standard_normal((case.batch, case.hidden)).astype(np.float32)
    return feeds


CASES = {
    "tanh, batch-major, zero state": WrittenRNN(),
    "relu, reverse, initial state": WrittenRNN(activation="Relu", reverse=True, initial=True),
    "sigmoid, time-major split": WrittenRNN(activation="Sigmoid", time_major=True, initial=True),
    "tanh, first step folded": WrittenRNN(folded_first=True, steps=3),
}


@pytest.mark.parametrize("name", CASES)
def test_written_rnn_is_raised_and_matches_onnxruntime(tmp_path, name):
    case = CASES[name]
    path = tmp_path / "rnn.onnx"
    onnx.save(written_rnn(case), path)
    module = import_onnx(path)
    (rnn,) = module.ops_of("rnn")
    assert rnn.attrs["activations"] == [case.activation] and rnn.attrs["hidden_size"] == case.hidden
    assert rnn.attrs["direction"] == ("reverse" if case.reverse else "forward")
    assert not module.ops_of("tanh") and not module.ops_of("relu") and not module.ops_of("sigmoid")
    feeds = _feeds(case)
    ours = run_module(module, feeds)
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(ours[key], want, key)


def test_steps_with_different_recurrent_maps_stay_generic(tmp_path):
    """Each step its own R: not one RNN; the ops stay as they are and compute the same."""
    case = WrittenRNN(share_recurrence=False, initial=True)
    path = tmp_path / "rnn.onnx"
    onnx.save(written_rnn(case), path)
    module = import_onnx(path)
    assert not module.ops_of("rnn") and len(module.ops_of("tanh")) == case.steps
    assert any(note.startswith("RNN not raised") for note in module.notes)
    feeds = _feeds(case)
    ours = run_module(module, feeds)
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(ours[key], want, key)


def test_a_per_step_head_is_no_rnn(tmp_path):
    """``tanh(W x_t + b)`` of every step, no state carried: a head, left as it is, no note."""
    case = WrittenRNN(steps=2)
    model = written_rnn(case)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "t0"], ["x0"], axis=1),
         helper.make_node("Gemm", ["x0", "w", "b_ih"], ["g0"], transB=1), helper.make_node("Tanh", ["g0"], ["y"])],
        "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
        [i for i in model.graph.initializer if i.name in ("t0", "w", "b_ih")])
    path = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    module = import_onnx(path)
    assert not module.ops_of("rnn") and module.ops_of("tanh") and not module.notes


@pytest.mark.parametrize("nonlinearity,exporter", [
    ("tanh", "torchscript"), ("relu", "torchscript"), pytest.param("tanh", "dynamo", marks=pytest.mark.slow)])
def test_a_loop_over_torchs_rnn_cell_is_raised(tmp_path, nonlinearity, exporter):
    """``for t: h = nn.RNNCell(x[:, t], h)`` with ``torch.stack`` of the steps, as a user writes it."""
    import contextlib
    import io
    import logging
    import warnings

    import torch

    class Loop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.RNNCell(6, 5, nonlinearity=nonlinearity)

        def forward(self, x):
            h = torch.zeros(x.shape[0], 5)
            steps = []
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
                steps.append(h)
            return torch.stack(steps, 1), h

    torch.manual_seed(0)
    path = tmp_path / "loop.onnx"
    logging.getLogger("torch").setLevel(logging.ERROR)  # the exporter logs what it skips
    options = {} if exporter == "dynamo" else {"opset_version": 17, "dynamic_axes": {"x": {0: "batch"}}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
            io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Loop().eval(), (torch.randn(2, 4, 6),), path, dynamo=exporter == "dynamo",
                          input_names=["x"], **options)
    module = import_onnx(path)
    (rnn,) = module.ops_of("rnn")
    assert rnn.attrs["activations"] == [nonlinearity.capitalize()] and not module.notes
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 4, 6)).astype(np.float32)}
    ours = run_module(module, feeds)
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(ours[key], want, key)
