"""Small ONNX models with the patterns of real recurrent models (``from host_models import ...``),
built with ``onnx.helper`` so no test downloads anything:

* ``vad_like``: silero VAD's shape: a reflect-padded STFT as a strided Conv, magnitude by
  Slice/Pow/Add/Sqrt, a Conv + Relu encoder, an LSTM whose state comes in and goes out as
  one tensor (``state[0]``, ``state[1]``; ``stateN`` a Concat), a Conv1d k=1 + Sigmoid +
  ReduceMean head; optionally the LSTM weights computed from constants by Slice/Concat as
  torch's dynamo exporter writes them, and the whole thing inside an ``If`` on an ``sr``
  input whose other branch has its own LSTM.
* ``written_cell``: silero's op18 export of an ``nn.LSTMCell`` applied once: two Gemms
  with ``transB``, Split in torch's gate order i, f, g, o, σ/tanh, the state update.
* ``wrong_output_shape``: a CRNN tail whose graph output is declared ``[1, seqlen]``
  while the graph computes ``[T, 1, C]`` (ddddocr).
* ``lstm_in_loop``: an LSTM inside a ``Loop`` whose trip count is an input.
* ``with_custom_nodes``: an LSTM and nodes of a domain onnxruntime does not know.

Weights are drawn from a seeded generator; the feeds of each model from ``feeds``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F, I64 = TensorProto.FLOAT, TensorProto.INT64
OPSET = 17


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _const(name: str, array) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"{name}_node", value=_init(name, array))


@dataclass(frozen=True)
class VadLike:
    batch: int = 1
    samples: int = 28
    frames: int = 8  # STFT bins (the Conv makes 2·frames channels)
    kernel: int = 8
    stride: int = 4
    channels: int = 6
    hidden: int = 5
    computed_weights: bool = False
    branch_on_sr: bool = False
    seed: int = 0

    @property
    def steps(self) -> int:
        return (self.samples + 8 - self.kernel) // self.stride + 1


def _vad_nodes(case: VadLike, rng, prefix: str, x: str, state: str, output: str, state_out: str):
    """Nodes and initializers of one VAD network reading ``x``/``state``, writing ``output``/``state_out``."""
    p = prefix
    h, c, b = case.hidden, case.channels, case.batch
    inits = {
        f"{p}pads": np.array([0, 4, 0, 4], np.int64),
        f"{p}axis1": np.array([1], np.int64),
        f"{p}stft": rng.standard_normal((2 * case.frames, 1, case.kernel)).astype(np.float32) * 0.5,
        f"{p}re_s": np.array([0], np.int64), f"{p}re_e": np.array([case.frames], np.int64),
        f"{p}im_e": np.array([2 * case.frames], np.int64),
        f"{p}two": np.array(2.0, np.float32),
        f"{p}enc_w": rng.standard_normal((c, case.frames, 3)).astype(np.float32) * 0.3,
        f"{p}enc_b": rng.standard_normal(c).astype(np.float32) * 0.1,
        f"{p}zero": np.array(0, np.int64), f"{p}one": np.array(1, np.int64),
        f"{p}axis0": np.array([0], np.int64), f"{p}axis_last": np.array([-1], np.int64),
        f"{p}head_w": rng.standard_normal((1, h, 1)).astype(np.float32),
        f"{p}head_b": rng.standard_normal(1).astype(np.float32) * 0.1,
    }
    w = rng.standard_normal((1, 4 * h, c)).astype(np.float32) * 0.4
    r = rng.standard_normal((1, 4 * h, h)).astype(np.float32) * 0.4
    bias = rng.standard_normal((1, 8 * h)).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Pad", [x, f"{p}pads"], [f"{p}padded"], name=f"{p}pad", mode="reflect"),
        helper.make_node("Unsqueeze", [f"{p}padded", f"{p}axis1"], [f"{p}signal"], name=f"{p}unsqueeze"),
        helper.make_node("Conv", [f"{p}signal", f"{p}stft"], [f"{p}spectrum"], name=f"{p}stft_conv",
                         strides=[case.stride]),
        helper.make_node("Slice", [f"{p}spectrum", f"{p}re_s", f"{p}re_e", f"{p}axis1"], [f"{p}re"], name=f"{p}re"),
        helper.make_node("Slice", [f"{p}spectrum", f"{p}re_e", f"{p}im_e", f"{p}axis1"], [f"{p}im"], name=f"{p}im"),
        helper.make_node("Pow", [f"{p}re", f"{p}two"], [f"{p}re2"], name=f"{p}re2"),
        helper.make_node("Pow", [f"{p}im", f"{p}two"], [f"{p}im2"], name=f"{p}im2"),
        helper.make_node("Add", [f"{p}re2", f"{p}im2"], [f"{p}power"], name=f"{p}power"),
        helper.make_node("Sqrt", [f"{p}power"], [f"{p}magnitude"], name=f"{p}magnitude"),
        helper.make_node("Conv", [f"{p}magnitude", f"{p}enc_w", f"{p}enc_b"], [f"{p}enc"], name=f"{p}enc_conv",
                         pads=[1, 1]),
        helper.make_node("Relu", [f"{p}enc"], [f"{p}features"], name=f"{p}enc_relu"),
        helper.make_node("Transpose", [f"{p}features"], [f"{p}sequence"], name=f"{p}time_major", perm=[2, 0, 1]),
        helper.make_node("Gather", [state, f"{p}zero"], [f"{p}h0"], name=f"{p}h0", axis=0),
        helper.make_node("Gather", [state, f"{p}one"], [f"{p}c0"], name=f"{p}c0", axis=0),
        helper.make_node("Unsqueeze", [f"{p}h0", f"{p}axis0"], [f"{p}h0_"], name=f"{p}h0_"),
        helper.make_node("Unsqueeze", [f"{p}c0", f"{p}axis0"], [f"{p}c0_"], name=f"{p}c0_"),
    ]
    if case.computed_weights:
        nodes += _gate_reordering(f"{p}w", w, inits) + _gate_reordering(f"{p}r", r, inits)
        inits[f"{p}b"] = bias
    else:
        inits.update({f"{p}w": w, f"{p}r": r, f"{p}b": bias})
    nodes += [
        helper.make_node("LSTM", [f"{p}sequence", f"{p}w", f"{p}r", f"{p}b", "", f"{p}h0_", f"{p}c0_"],
                         ["", f"{p}hn", f"{p}cn"], name=f"{p}lstm", hidden_size=h),
        helper.make_node("Squeeze", [f"{p}hn", f"{p}axis0"], [f"{p}h"], name=f"{p}h"),
        helper.make_node("Squeeze", [f"{p}cn", f"{p}axis0"], [f"{p}c"], name=f"{p}c"),
        helper.make_node("Unsqueeze", [f"{p}h", f"{p}axis0"], [f"{p}h_"], name=f"{p}h_"),
        helper.make_node("Unsqueeze", [f"{p}c", f"{p}axis0"], [f"{p}c_"], name=f"{p}c_"),
        helper.make_node("Concat", [f"{p}h_", f"{p}c_"], [state_out], name=f"{p}state_out", axis=0),
        helper.make_node("Relu", [f"{p}h"], [f"{p}h_relu"], name=f"{p}head_relu"),
        helper.make_node("Unsqueeze", [f"{p}h_relu", f"{p}axis_last"], [f"{p}h_col"], name=f"{p}h_col"),
        helper.make_node("Conv", [f"{p}h_col", f"{p}head_w", f"{p}head_b"], [f"{p}logit"], name=f"{p}head_conv"),
        helper.make_node("Sigmoid", [f"{p}logit"], [f"{p}prob"], name=f"{p}prob"),
        helper.make_node("ReduceMean", [f"{p}prob"], [output], name=f"{p}mean", axes=[1, 2], keepdims=0),
    ]
    return nodes, inits, b


def _gate_reordering(name: str, weights: np.ndarray, inits: dict) -> list[onnx.NodeProto]:
    """``name`` = the four gate blocks of ``weights`` cut out by Slice and joined again by
    Concat, then Unsqueeze'd: torch's dynamo exporter's gate reordering, over a stored
    ``[4H, in]`` matrix."""
    rows = weights.shape[1] // 4
    nodes, blocks = [], []
    for k, gate in enumerate((0, 3, 1, 2)):
        inits[f"{name}_s{k}"] = np.array([gate * rows], np.int64)
        inits[f"{name}_e{k}"] = np.array([(gate + 1) * rows], np.int64)
        inits.setdefault("gate_axis", np.array([0], np.int64))
        nodes.append(helper.make_node("Slice", [f"{name}_stored", f"{name}_s{k}", f"{name}_e{k}", "gate_axis"],
                                      [f"{name}_g{k}"], name=f"{name}_slice{k}"))
        blocks.append(f"{name}_g{k}")
    inits[f"{name}_stored"] = np.concatenate([weights[0][g * rows:(g + 1) * rows] for g in (0, 2, 3, 1)])
    nodes.append(helper.make_node("Concat", blocks, [f"{name}_cat"], name=f"{name}_concat", axis=0))
    nodes.append(helper.make_node("Unsqueeze", [f"{name}_cat", "gate_axis"], [name], name=f"{name}_unsqueeze"))
    return nodes


def vad_like(case: VadLike = VadLike()) -> onnx.ModelProto:
    rng = np.random.default_rng(case.seed)
    b, h = case.batch, case.hidden
    graph_inputs = [helper.make_tensor_value_info("input", F, [b, case.samples]),
                    helper.make_tensor_value_info("state", F, [2, b, h])]
    outputs = [helper.make_tensor_value_info("output", F, [b]), helper.make_tensor_value_info("stateN", F, [2, b, h])]
    if not case.branch_on_sr:
        nodes, inits, _ = _vad_nodes(case, rng, "", "input", "state", "output", "stateN")
        graph = helper.make_graph(nodes, "vad", graph_inputs, outputs, [_init(k, v) for k, v in inits.items()])
        return _checked(graph)
    branches = []
    for label in ("hi", "lo"):
        nodes, inits, _ = _vad_nodes(case, rng, f"{label}_", "input", "state", f"{label}_output", f"{label}_stateN")
        body = [_const(k, v) for k, v in inits.items()] + nodes
        branches.append(helper.make_graph(body, f"{label}_branch", [], [
            helper.make_tensor_value_info(f"{label}_output", F, [b]),
            helper.make_tensor_value_info(f"{label}_stateN", F, [2, b, h])]))
    nodes = [helper.make_node("Equal", ["sr", "rate_16k"], ["is_16k"], name="is_16k"),
             helper.make_node("If", ["is_16k"], ["output", "stateN"], name="by_rate", then_branch=branches[0],
                              else_branch=branches[1])]
    graph = helper.make_graph(nodes, "vad_sr", graph_inputs + [helper.make_tensor_value_info("sr", I64, [])],
                              outputs, [_init("rate_16k", np.array(16000, np.int64))])
    return _checked(graph)


def vad_feeds(case: VadLike, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.uniform(-1, 1, (case.batch, case.samples)).astype(np.float32),
            "state": (rng.standard_normal((2, case.batch, case.hidden)) * 0.5).astype(np.float32)}


def written_cell(batch: int = 2, inputs: int = 6, hidden: int = 5, seed: int = 0) -> onnx.ModelProto:
    """``h, c = LSTMCell(x, (state[0], state[1]))`` as torch's dynamo exporter writes it."""
    rng = np.random.default_rng(seed)
    inits = {"w_ih": rng.standard_normal((4 * hidden, inputs)).astype(np.float32) * 0.4,
             "w_hh": rng.standard_normal((4 * hidden, hidden)).astype(np.float32) * 0.4,
             "b_ih": rng.standard_normal(4 * hidden).astype(np.float32) * 0.1,
             "b_hh": rng.standard_normal(4 * hidden).astype(np.float32) * 0.1,
             "zero": np.array(0, np.int64), "one": np.array(1, np.int64), "axis0": np.array([0], np.int64)}
    nodes = [
        helper.make_node("Gather", ["state", "zero"], ["h"], name="h", axis=0),
        helper.make_node("Gather", ["state", "one"], ["c"], name="c", axis=0),
        helper.make_node("Gemm", ["x", "w_ih", "b_ih"], ["gx"], name="gemm_x", transB=1),
        helper.make_node("Gemm", ["h", "w_hh", "b_hh"], ["gh"], name="gemm_h", transB=1),
        helper.make_node("Add", ["gx", "gh"], ["gates"], name="gates"),
        helper.make_node("Split", ["gates"], ["i_", "f_", "g_", "o_"], name="chunk", axis=1, num_outputs=4),
        helper.make_node("Sigmoid", ["i_"], ["i"], name="sig_i"),
        helper.make_node("Sigmoid", ["f_"], ["f"], name="sig_f"),
        helper.make_node("Tanh", ["g_"], ["g"], name="tanh_g"),
        helper.make_node("Sigmoid", ["o_"], ["o"], name="sig_o"),
        helper.make_node("Mul", ["f", "c"], ["fc"], name="fc"),
        helper.make_node("Mul", ["i", "g"], ["ig"], name="ig"),
        helper.make_node("Add", ["fc", "ig"], ["c_new"], name="c_new"),
        helper.make_node("Tanh", ["c_new"], ["tc"], name="tanh_c"),
        helper.make_node("Mul", ["o", "tc"], ["h_new"], name="h_new"),
        helper.make_node("Unsqueeze", ["h_new", "axis0"], ["h_"], name="h_"),
        helper.make_node("Unsqueeze", ["c_new", "axis0"], ["c_"], name="c_"),
        helper.make_node("Concat", ["h_", "c_"], ["stateN"], name="state_out", axis=0),
    ]
    graph = helper.make_graph(nodes, "cell", [helper.make_tensor_value_info("x", F, [batch, inputs]),
                                              helper.make_tensor_value_info("state", F, [2, batch, hidden])],
                              [helper.make_tensor_value_info("h_new", F, [batch, hidden]),
                               helper.make_tensor_value_info("stateN", F, [2, batch, hidden])],
                              [_init(k, v) for k, v in inits.items()])
    return _checked(graph, opset=18)


def wrong_output_shape(inputs: int = 6, hidden: int = 5, classes: int = 7,
                       seed: int = 0) -> onnx.ModelProto:
    """A bidirectional LSTM and a Gemm classifier over ``x[width, 1, inputs]``, its output
    reshaped to ``[width, 1, classes]`` by a shape computed at run time, declared ``[1, seqlen]``."""
    rng = np.random.default_rng(seed)
    inits = {"w": rng.standard_normal((2, 4 * hidden, inputs)).astype(np.float32) * 0.4,
             "r": rng.standard_normal((2, 4 * hidden, hidden)).astype(np.float32) * 0.4,
             "flat": np.array([-1, 2 * hidden], np.int64), "zero": np.array([0], np.int64),
             "cls": rng.standard_normal((classes, 2 * hidden)).astype(np.float32),
             "tail": np.array([1, classes], np.int64)}
    nodes = [
        helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="lstm", hidden_size=hidden, direction="bidirectional"),
        helper.make_node("Transpose", ["y"], ["y_t"], name="y_t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["y_t", "flat"], ["rows"], name="rows"),
        helper.make_node("Gemm", ["rows", "cls"], ["logits"], name="classifier", transB=1),
        helper.make_node("Shape", ["x"], ["x_shape"], name="x_shape"),
        helper.make_node("Gather", ["x_shape", "zero"], ["steps"], name="steps", axis=0),
        helper.make_node("Concat", ["steps", "tail"], ["out_shape"], name="out_shape", axis=0),
        helper.make_node("Reshape", ["logits", "out_shape"], ["probs"], name="probs"),
    ]
    graph = helper.make_graph(nodes, "crnn", [helper.make_tensor_value_info("x", F, ["width", 1, inputs])],
                              [helper.make_tensor_value_info("probs", F, [1, "seqlen"])],
                              [_init(k, v) for k, v in inits.items()])
    return _checked(graph, full=False)  # a full check infers shapes, and the declared one is wrong


def lstm_in_loop(inputs: int = 4, hidden: int = 3, seed: int = 0) -> onnx.ModelProto:
    """An LSTM applied ``trips`` times (an input) inside a Loop body."""
    rng = np.random.default_rng(seed)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("LSTM", ["x", "w", "r"], ["", "h"], name="inner_lstm", hidden_size=hidden),
         helper.make_node("Add", ["acc_in", "h"], ["acc_out"], name="accumulate")],
        "body", [helper.make_tensor_value_info("i", I64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_in", F, [1, 1, hidden])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", F, [1, 1, hidden])])
    nodes = [helper.make_node("Loop", ["trips", "", "acc0"], ["acc"], name="repeat", body=body)]
    inits = {"w": rng.standard_normal((1, 4 * hidden, inputs)).astype(np.float32),
             "r": rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32),
             "acc0": np.zeros((1, 1, hidden), np.float32)}
    graph = helper.make_graph(nodes, "looped", [helper.make_tensor_value_info("x", F, [2, 1, inputs]),
                                                helper.make_tensor_value_info("trips", I64, [])],
                              [helper.make_tensor_value_info("acc", F, [1, 1, hidden])],
                              [_init(k, v) for k, v in inits.items()])
    return _checked(graph)


def with_custom_nodes(inputs: int = 4, hidden: int = 3, seed: int = 0) -> onnx.ModelProto:
    """An LSTM between two nodes of the unknown domain ``com.example``."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Denoise", ["x"], ["clean"], name="denoise", domain="com.example"),
             helper.make_node("LSTM", ["clean", "w", "r"], ["y"], name="lstm", hidden_size=hidden),
             helper.make_node("Decode", ["y"], ["z"], name="decode", domain="com.example")]
    inits = {"w": rng.standard_normal((1, 4 * hidden, inputs)).astype(np.float32),
             "r": rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32)}
    graph = helper.make_graph(nodes, "custom", [helper.make_tensor_value_info("x", F, [2, 1, inputs])],
                              [helper.make_tensor_value_info("z", F, [2, 1, 1, hidden])],
                              [_init(k, v) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.example", 1)])
    return model


def _checked(graph: onnx.GraphProto, opset: int = OPSET, full: bool = True) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=full)
    return model
