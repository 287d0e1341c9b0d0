"""Quantized ``add`` and ``mul`` of two computed values (DeepFilterNet's residual adds, its
lsnr head's scale and offset), ``sigmoid``/``tanh`` of a head, and ``relu`` on the PE array.

* the integer result is one rounding of the exact sum or product of the operands' codes
  (within half an output LSB), and within the LSBs the formats guarantee of float;
* the PE array's EW instruction (add, relu) equals the golden model bit for bit at P = 1
  and 16, 8 and 16 bits, with a concatenation of separately stored values read by one walk;
* a residual add after a GRU or an LSTM, CLI ``compile`` -> ``simulate`` == ``run``;
* the onnx target's QDQ form of them equals the golden model bit for bit in onnxruntime.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tensorgate.backend.onnx_export import export_onnx
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.lower import accelerator_stages
from tensorgate.cli import main
from tensorgate.fixedpoint.formats import code_max, code_min, dequantize
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import FixedExecutor, run_fixed, run_module
from tensorgate.passes import PassManager
from tensorgate.runtime.simulator import Simulator


def _model(nodes, inputs: dict[str, list[int]], outputs: dict[str, list[int]], initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s)
                                           for k, s in inputs.items()],
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in outputs.items()],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _quantized(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tmp_path, bits: int):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    np.savez(tmp_path / "calibration.npz", **feeds)
    module = import_onnx(path)
    PassManager.parse(f"canonicalize, quantize{{bits={bits} calibration={tmp_path / 'calibration.npz'}}}").run(module)
    return module


@st.composite
def _broadcast_pair(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    other = [1 if draw(st.booleans()) else d for d in shape][draw(st.integers(0, len(shape) - 1)):]
    return (shape, other) if draw(st.booleans()) else (other, shape)


@settings(max_examples=25, deadline=None)
@given(shapes=_broadcast_pair(), kind=st.sampled_from(["Add", "Mul"]), bits=st.sampled_from([8, 16]),
       scales=st.tuples(st.floats(0.01, 50), st.floats(0.01, 50)), seed=st.integers(0, 2**16))
def test_quantized_add_and_mul_round_the_exact_result_once(tmp_path_factory, shapes, kind, bits, scales, seed):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes
    out_shape = list(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)))
    feeds = {"a": (rng.standard_normal(a_shape) * scales[0]).astype(np.float32),
             "b": (rng.standard_normal(b_shape) * scales[1]).astype(np.float32)}
    model = _model([helper.make_node(kind, ["a", "b"], ["y"])], {"a": a_shape, "b": b_shape}, {"y": out_shape})
    module = _quantized(model, feeds, tmp_path_factory.mktemp("q"), bits)
    (op,) = module.ops_of(kind.lower())
    fa, fb, fo = (v.type.dtype for v in (*op.operands, op.result))
    codes = FixedExecutor(module).input_codes(feeds)
    a, b = dequantize(codes["a"], fa), dequantize(codes["b"], fb)
    got = dequantize(run_fixed(module, feeds, raw=True)["y"], fo)
    exact = a + b if kind == "Add" else a * b
    lsb = 2.0 ** -fo.frac
    in_range = np.clip(exact, code_min(fo) * lsb, code_max(fo) * lsb)
    assert np.abs(got - in_range).max() <= lsb / 2  # one rounding of the exact result, then saturation
    x, y = (feeds[k].astype(np.float64) for k in "ab")
    ea, eb = 2.0 ** -(fa.frac + 1), 2.0 ** -(fb.frac + 1)  # the inputs' rounding
    bound = ea + eb if kind == "Add" else np.abs(x) * eb + np.abs(y) * ea + ea * eb
    assert np.all(np.abs(got - (x + y if kind == "Add" else x * y)) <= bound + lsb / 2 + 1e-12)


def test_a_sigmoid_head_with_a_scale_and_an_offset_stays_within_its_lsbs(tmp_path):
    """enc.onnx's lsnr: sigmoid(W x + b) * 35 - 15 (constants quantized at weight-bits)."""
    model, feeds = _head_model(np.random.default_rng(3))
    module = _quantized(model, feeds, tmp_path, 16)
    assert {op.kind for op in module.ops} >= {"add", "mul", "sigmoid", "tanh"}
    expected = run_module(import_onnx(tmp_path / "m.onnx"), feeds)
    got = run_fixed(module, feeds)
    for name in ("lsnr", "t"):
        fmt = module.outputs[[v.name for v in module.outputs].index(name)].type.dtype
        assert np.abs(got[name] - expected[name]).max() <= 8 * 2.0 ** -fmt.frac, name  # 16-bit: a few LSBs


def _head_model(rng) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["bias", "m"], ["pre"]),
             helper.make_node("Sigmoid", ["pre"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "offset"], ["lsnr"]), helper.make_node("Tanh", ["pre"], ["t"])]
    inits = [_init("w", rng.standard_normal((8, 1))), _init("bias", [0.3]), _init("scale", 35.0),
             _init("offset", -15.0)]
    model = _model(nodes, {"x": [2, 5, 8]}, {"lsnr": [2, 5, 1], "t": [2, 5, 1]}, inits)
    return model, {"x": rng.standard_normal((2, 5, 8)).astype(np.float32)}


def _ew_model(rng) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Two linear layers concatenated (separately stored), relu, a residual add of a
    transposed input, a broadcast constant offset, and a scale on the host."""
    nodes = [helper.make_node("MatMul", ["a", "w1"], ["m1"]), helper.make_node("MatMul", ["a", "w2"], ["m2"]),
             helper.make_node("Concat", ["m1", "m2"], ["cat"], axis=-1), helper.make_node("Relu", ["cat"], ["r"]),
             helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 2, 1]), helper.make_node("Add", ["r", "bt"], ["s"]),
             helper.make_node("Add", ["s", "offset"], ["y"]), helper.make_node("Mul", ["y", "scale"], ["z"])]
    inits = [_init("w1", rng.standard_normal((4, 3))), _init("w2", rng.standard_normal((4, 3)) * 3),
             _init("offset", rng.standard_normal(6)), _init("scale", 0.7)]
    model = _model(nodes, {"a": [2, 3, 4], "b": [2, 6, 3]}, {"y": [2, 3, 6], "z": [2, 3, 6]}, inits)
    feeds = {"a": rng.standard_normal((2, 3, 4)).astype(np.float32),
             "b": rng.standard_normal((2, 6, 3)).astype(np.float32)}
    return model, feeds


@pytest.mark.parametrize("pes,bits", [(1, 8), (16, 16), (16, 8), (1, 16)])
def test_add_and_relu_on_the_pe_array_equal_the_golden_model(tmp_path, pes, bits):
    model, feeds = _ew_model(np.random.default_rng(pes + bits))
    module = _quantized(model, feeds, tmp_path, bits)
    stages = accelerator_stages(module)
    assert {"add", "relu", "concat"} <= {op.kind for op in stages.core.ops}
    assert [op.kind for op in stages.suffix] == ["mul"]  # no multiplier in the EW path: the host's
    artifact = write_verilog_artifact(module, tmp_path / "hw", "quantize", "m.onnx", pes)
    outputs, _ = Simulator(artifact).run(feeds, raw=True)
    golden = run_fixed(module, feeds, raw=True)
    for name in golden:
        assert np.array_equal(outputs[name], golden[name]), name


def _recurrent_residual(cell: str, rng, steps: int = 4, inputs: int = 6, hidden: int = 5):
    """x [1, T, I] -> linear + relu -> GRU/LSTM (time-major) -> + a skip linear of x ->
    a sigmoid head: DeepFilterNet's df_dec pattern."""
    gates = {"GRU": 3, "LSTM": 4}[cell]
    nodes = [helper.make_node("MatMul", ["x", "w_in"], ["m"]), helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("Transpose", ["r"], ["tm"], perm=[1, 0, 2]),
             helper.make_node(cell, ["tm", "W", "R", "B"], ["Y"], hidden_size=hidden),
             helper.make_node("Squeeze", ["Y", "axis1"], ["ys"]),
             helper.make_node("Transpose", ["ys"], ["bm"], perm=[1, 0, 2]),
             helper.make_node("MatMul", ["x", "w_skip"], ["skip"]), helper.make_node("Add", ["bm", "skip"], ["res"]),
             helper.make_node("MatMul", ["res", "w_head"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["p"])]
    inits = [_init("w_in", rng.standard_normal((inputs, hidden)) * 0.5),
             _init("W", rng.standard_normal((1, gates * hidden, hidden)) * 0.4),
             _init("R", rng.standard_normal((1, gates * hidden, hidden)) * 0.4),
             _init("B", rng.standard_normal((1, 2 * gates * hidden)) * 0.1),
             _init("w_skip", rng.standard_normal((inputs, hidden))), _init("w_head", rng.standard_normal((hidden, 2))),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    model = _model(nodes, {"x": [1, steps, inputs]}, {"res": [1, steps, hidden], "p": [1, steps, 2]}, inits)
    return model, {"x": rng.standard_normal((1, steps, inputs)).astype(np.float32)}


def _cli(capsys, *argv: str) -> None:
    code = main(list(argv))
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize("cell", ["GRU", "LSTM"])
def test_residual_add_after_a_recurrent_layer_simulates_as_run(tmp_path, capsys, cell):
    model, feeds = _recurrent_residual(cell, np.random.default_rng(5))
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", **feeds)
    pipeline = f"quantize{{bits=16 calibration={tmp_path / 'x.npz'}}}"
    _cli(capsys, "compile", str(tmp_path / "m.onnx"), "-p", pipeline, "--target", "verilog", "--pes", "4",
         "-o", str(tmp_path / "hw"))
    manifest = json.loads((tmp_path / "hw" / "manifest.json").read_text())
    assert manifest["target"] == "verilog"
    _cli(capsys, "simulate", str(tmp_path / "hw"), "--input", str(tmp_path / "x.npz"), "--raw",
         "--output", str(tmp_path / "sim.npz"))
    _cli(capsys, "run", str(tmp_path / "hw"), "--input", str(tmp_path / "x.npz"), "--raw",
         "--output", str(tmp_path / "gold.npz"))
    with np.load(tmp_path / "sim.npz") as sim, np.load(tmp_path / "gold.npz") as gold:
        assert sorted(sim.files) == sorted(gold.files) == ["p", "res"]
        for name in gold.files:
            assert np.array_equal(sim[name], gold[name]), name
    _cli(capsys, "run", str(tmp_path / "hw"), "--input", str(tmp_path / "x.npz"), "--output",
         str(tmp_path / "real.npz"))
    expected = run_module(import_onnx(tmp_path / "m.onnx"), feeds)
    with np.load(tmp_path / "real.npz") as real:
        np.testing.assert_allclose(real["res"], expected["res"], atol=2e-2)


@pytest.mark.parametrize("make", [_head_model, _ew_model])
def test_the_qdq_export_computes_the_golden_models_codes(tmp_path, make):
    model, feeds = make(np.random.default_rng(7))
    module = _quantized(model, feeds, tmp_path, 8)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(export_onnx(module).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    expected = run_fixed(module, feeds)
    for name, got in zip(names, session.run(names, feeds)):
        np.testing.assert_array_equal(got.astype(np.float64), expected[name], err_msg=name)


def test_integer_shape_arithmetic_is_left_alone(tmp_path):
    """An ``add`` of int64 shape values (a symbolic batch) is no fixed-point add."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Sub", ["s", "s"], ["z"]),
             helper.make_node("Add", ["s", "z"], ["same"]), helper.make_node("Reshape", ["x", "same"], ["xr"]),
             helper.make_node("MatMul", ["xr", "w"], ["y"])]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                              [_init("w", np.ones((4, 3)))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    module = import_onnx(tmp_path / "m.onnx")
    PassManager.parse("canonicalize, quantize").run(module)
    (add,) = module.ops_of("add")
    assert add.attrs["quant"] is None and str(add.result.type.dtype) == "i64"
