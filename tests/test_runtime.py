"""The NumPy runtime on IR built directly (no frontend): LSTM semantics against
onnxruntime, non-default activations, float64 runs and input validation."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tensorgate.errors import ExecutionError
from tensorgate.ir import F32, DenseMap, Module, TensorType, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.interpreter import run_module

T, B, I, H = 5, 3, 7, 6


def random_lstm(rng, dirs):
    return {
        "W": rng.standard_normal((dirs, 4 * H, I)).astype(np.float32),
        "R": rng.standard_normal((dirs, 4 * H, H)).astype(np.float32) * 0.5,
        "B": rng.standard_normal((dirs, 8 * H)).astype(np.float32),
        "P": rng.standard_normal((dirs, 3 * H)).astype(np.float32),
        "h0": rng.standard_normal((dirs, B, H)).astype(np.float32),
        "c0": rng.standard_normal((dirs, B, H)).astype(np.float32),
        "lens": np.array([5, 2, 4], np.int32),
    }


def onnxruntime_lstm(x, weights, attrs, peepholes):
    inputs = ["x", "W", "R", "B", "lens", "h0", "c0", "P" if peepholes else ""]
    inits = [numpy_helper.from_array(weights[name], name) for name in inputs[1:] if name]
    node = helper.make_node("LSTM", inputs, ["Y", "Y_h", "Y_c"], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h", "Y_c")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def tensorgate_lstm(x, weights, attrs, peepholes, dtype=np.float32):
    dirs = weights["W"].shape[0]
    module = Module("lstm")
    build = Builder(module)
    xv = build.input("x", TensorType(x.shape, F32))
    operands = [xv, build.const(weights["lens"].astype(np.int64)), build.const(weights["h0"]),
                build.const(weights["c0"])]
    ir_attrs = dict(attrs, w=[DenseMap(weights["W"][d]) for d in range(dirs)],
                    r=[DenseMap(weights["R"][d]) for d in range(dirs)], bias=weights["B"],
                    peepholes=weights["P"] if peepholes else None)
    module.outputs = build.op("lstm", operands, ir_attrs).results
    verify_module(module)
    return list(run_module(module, {"x": x}, dtype=dtype).values())


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("clip, input_forget", [(None, 0), (0.7, 0), (None, 1), (0.7, 1)])
def test_lstm_matches_onnxruntime(direction, peepholes, clip, input_forget):
    rng = np.random.default_rng(hash((direction, peepholes, clip, input_forget)) % 2**32)
    dirs = 2 if direction == "bidirectional" else 1
    weights = random_lstm(rng, dirs)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    attrs = {"hidden_size": H, "direction": direction, "input_forget": input_forget}
    if clip is not None:
        attrs["clip"] = clip
    expected = onnxruntime_lstm(x, weights, attrs, peepholes)
    for ours, ref in zip(tensorgate_lstm(x, weights, attrs, peepholes), expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activations, alpha, beta", [
    (["HardSigmoid", "Softsign", "ScaledTanh"], [0.3, 0.9], [0.4, 1.1]),
    (["Sigmoid", "LeakyRelu", "Softplus"], [0.05], None),
    (["Sigmoid", "Relu", "Elu"], [0.7], None),
    (["HardSigmoid", "Affine", "ThresholdedRelu"], [0.25, 0.5, 0.1], [0.6, 0.2]),
])
def test_lstm_non_default_activations_match_onnxruntime(activations, alpha, beta):
    rng = np.random.default_rng(7)
    weights = random_lstm(rng, 1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    attrs = {"hidden_size": H, "activations": activations}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    expected = onnxruntime_lstm(x, weights, attrs, False)
    for ours, ref in zip(tensorgate_lstm(x, weights, attrs, False), expected):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_float64_run_is_closer_to_float64_reference():
    rng = np.random.default_rng(3)
    weights = random_lstm(rng, 1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    attrs = {"hidden_size": H}
    y64 = tensorgate_lstm(x, weights, attrs, False, dtype=np.float64)
    y32 = tensorgate_lstm(x, weights, attrs, False)
    assert y64[0].dtype == np.float64 and y32[0].dtype == np.float32
    np.testing.assert_allclose(y32[0], y64[0], rtol=1e-5, atol=1e-6)


def simple_module():
    module = Module("m")
    build = Builder(module)
    a = build.input("a", TensorType(("batch", 4), F32))
    b = build.input("b", TensorType(("batch", 4), F32))
    module.outputs = [build.op("add", [a, b]).result]
    return module


@pytest.mark.parametrize("inputs, message", [
    ({"a": np.zeros((2, 4), np.float32)}, "missing input(s) b"),
    ({"a": np.zeros((2, 4)), "b": np.zeros((2, 4)), "c": np.zeros(1)}, "unknown input(s) c"),
    ({"a": np.zeros((2, 5)), "b": np.zeros((2, 5))}, "input 'a' has shape [2, 5], expected [batch,4]"),
    ({"a": np.zeros((2, 4)), "b": np.zeros((3, 4))}, "batch=3"),
    ({"a": np.zeros((4,)), "b": np.zeros((2, 4))}, "input 'a' has shape [4]"),
])
def test_bad_inputs_are_clear_errors(inputs, message):
    with pytest.raises(ExecutionError, match=re.escape(message)):
        run_module(simple_module(), inputs)


def test_symbolic_dims_bind_per_run():
    module = simple_module()
    for batch in (1, 5):
        out = run_module(module, {"a": np.ones((batch, 4)), "b": np.ones((batch, 4))})
        assert out[module.outputs[0].name].shape == (batch, 4)


def test_cast_to_bool_is_truthiness():
    module = Module("m")
    build = Builder(module)
    x = build.input("x", TensorType((3,), F32))
    module.outputs = [build.op("cast", [x], {"to": "i1"}).result]
    verify_module(module)
    out = run_module(module, {"x": np.array([0, 2.5, -1], np.float32)})
    assert out[module.outputs[0].name].tolist() == [False, True, True]
