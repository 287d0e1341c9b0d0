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


# --- a single step, streamed ------------------------------------------------------------


@dataclass(frozen=True)
class TwoInputLayer:
    """``h1 = f(A x + B y + b)`` written by hand: a streamed RNN step when ``y`` is a module
    input ``[B, H]`` and ``h1`` a module output, else an ordinary layer of two inputs."""

    activation: str = "Tanh"
    matmul: bool = False  # MatMul + Add instead of Gemm
    x_form: str = "plain"  # "plain" [B, I]; "time-major" [1, B, I] squeezed; "batch-major" [B, 1, I] gathered
    y_width: int = 5  # H = 5; another width: y is no state of the output's width
    x_width: int = 6
    output_fed_on: bool = False  # h1 goes through another layer, not out of the module
    batch: int = 2


def two_input_layer(case: TwoInputLayer, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    hidden = 5
    inits = {"a": rng.standard_normal((hidden, case.x_width)) * 0.5, "b": rng.standard_normal((hidden, case.y_width)) * 0.5,
             "bias_x": rng.standard_normal(hidden) * 0.1, "bias_y": rng.standard_normal(hidden) * 0.1,
             "head": rng.standard_normal((hidden, 3)), "zero": np.array(0, np.int64), "axis0": np.array([0], np.int64)}
    x_shape = {"plain": [case.batch, case.x_width], "time-major": [1, case.batch, case.x_width],
               "batch-major": [case.batch, 1, case.x_width]}[case.x_form]
    nodes = {"plain": [], "time-major": [helper.make_node("Squeeze", ["x", "axis0"], ["x_t"])],
             "batch-major": [helper.make_node("Gather", ["x", "zero"], ["x_t"], axis=1)]}[case.x_form]
    x = "x" if case.x_form == "plain" else "x_t"
    if case.matmul:
        inits.update(a_t=inits["a"].T, b_t=inits["b"].T)
        nodes += [helper.make_node("MatMul", [x, "a_t"], ["ax"]), helper.make_node("Add", ["ax", "bias_x"], ["gx"]),
                  helper.make_node("MatMul", ["y", "b_t"], ["by"]), helper.make_node("Add", ["by", "bias_y"], ["gy"])]
    else:
        nodes += [helper.make_node("Gemm", [x, "a", "bias_x"], ["gx"], transB=1),
                  helper.make_node("Gemm", ["y", "b", "bias_y"], ["gy"], transB=1)]
    nodes += [helper.make_node("Add", ["gx", "gy"], ["pre"]), helper.make_node(case.activation, ["pre"], ["h1"])]
    outputs = [helper.make_tensor_value_info("h1", TensorProto.FLOAT, [case.batch, hidden])]
    if case.output_fed_on:
        nodes.append(helper.make_node("MatMul", ["h1", "head"], ["out"]))
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [case.batch, 3])]
    graph = helper.make_graph(
        nodes, "two_inputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [case.batch, case.y_width])],
        outputs, [numpy_helper.from_array(np.asarray(v, v.dtype if v.dtype.kind == "i" else np.float32), k)
                  for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _layer_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def _imported_matches_onnxruntime(tmp_path, model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    module = import_onnx(path)
    ours = run_module(module, feeds)
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(ours[key], want, key)
    return module


STREAMED = {
    "tanh, gemm": TwoInputLayer(),
    "relu, matmul + add": TwoInputLayer(activation="Relu", matmul=True),
    "sigmoid, gemm, time-major step": TwoInputLayer(activation="Sigmoid", x_form="time-major"),
    "tanh, matmul + add, batch-major step": TwoInputLayer(matmul=True, x_form="batch-major"),
    "tanh, input as wide as the state": TwoInputLayer(x_form="time-major", x_width=5),
}


@pytest.mark.parametrize("name", STREAMED)
def test_a_streamed_single_step_is_raised(tmp_path, name):
    """State in as a module input, out as a module output of its width: one ``rnn`` op."""
    case = STREAMED[name]
    model = two_input_layer(case)
    module = _imported_matches_onnxruntime(tmp_path, model, _layer_feeds(model))
    (rnn,) = module.ops_of("rnn")
    assert rnn.attrs["activations"] == [case.activation] and rnn.attrs["hidden_size"] == 5
    assert tuple(rnn.operands[0].type.shape) == (1, case.batch, case.x_width) and not module.notes
    assert not module.ops_of(case.activation.lower())


NOT_STREAMED = {
    "output fed on, not out": TwoInputLayer(output_fed_on=True),
    "second input narrower than the output": TwoInputLayer(y_width=3),
    "second input wider than the output": TwoInputLayer(y_width=7, matmul=True),
    "both inputs as wide as the output": TwoInputLayer(x_width=5),
}


@pytest.mark.parametrize("name", NOT_STREAMED)
def test_an_ordinary_two_input_layer_is_not_raised(tmp_path, name):
    """``tanh(A x + B y + b)`` whose output is not fed back (or where which input is the
    state is not known): left as it is, without a note."""
    case = NOT_STREAMED[name]
    model = two_input_layer(case)
    module = _imported_matches_onnxruntime(tmp_path, model, _layer_feeds(model))
    assert not module.ops_of("rnn") and module.ops_of(case.activation.lower()) and not module.notes


def test_one_step_from_a_graph_input_state_is_raised_and_from_zeros_is_not(tmp_path):
    """Of the written-out chain with one step: raised with ``h0`` an input (``h_last`` is an
    output), left as it is from a zero state (any layer of a time step looks so)."""
    streamed = WrittenRNN(steps=1, initial=True)
    module = _imported_matches_onnxruntime(tmp_path, written_rnn(streamed), _feeds(streamed))
    assert len(module.ops_of("rnn")) == 1 and not module.ops_of("tanh") and not module.notes
    from_zeros = WrittenRNN(steps=1)
    module = _imported_matches_onnxruntime(tmp_path, written_rnn(from_zeros), _feeds(from_zeros))
    assert not module.ops_of("rnn") and module.ops_of("tanh") and not module.notes


@pytest.mark.parametrize("nonlinearity,batched,exporter", [
    ("tanh", True, "torchscript"), ("relu", True, "torchscript"), ("tanh", False, "torchscript"),
    pytest.param("tanh", True, "dynamo", marks=pytest.mark.slow),
    pytest.param("relu", False, "dynamo", marks=pytest.mark.slow)])
def test_a_streamed_torch_rnn_cell_is_raised(tmp_path, nonlinearity, batched, exporter):
    """``forward(x, h) = nn.RNNCell(x, h)``, the state handed in and out each call (batched,
    or unbatched: torch wraps the cell in Unsqueeze/Squeeze of axis 0)."""
    import contextlib
    import io
    import logging
    import warnings

    import torch

    class Streamed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.RNNCell(6, 5, nonlinearity=nonlinearity)

        def forward(self, x, h):
            return self.cell(x, h)

    torch.manual_seed(0)
    shapes = ((2, 6), (2, 5)) if batched else ((6,), (5,))
    path = tmp_path / "cell.onnx"
    logging.getLogger("torch").setLevel(logging.ERROR)
    options = {} if exporter == "dynamo" else {"opset_version": 17}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
            io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Streamed().eval(), tuple(torch.randn(s) for s in shapes), path,
                          dynamo=exporter == "dynamo", input_names=["x", "h"], output_names=["h1"], **options)
    module = import_onnx(path)
    (rnn,) = module.ops_of("rnn")
    assert rnn.attrs["activations"] == [nonlinearity.capitalize()] and not module.notes
    rng = np.random.default_rng(2)
    feeds = {name: rng.standard_normal(s).astype(np.float32) for name, s in zip(("x", "h"), shapes)}
    ours = run_module(module, feeds)
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(ours[key], want, key)
