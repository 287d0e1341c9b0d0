"""A grouped linear layer written as ``Einsum('btgi,gih->btgh')`` with a constant weight
(DeepFilterNet's GroupedLinearEinsum) imports as one ``linear`` per group: it matches
onnxruntime in float, and quantized it runs on the accelerator bit-exactly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models import run_onnxruntime
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_fixed, run_module
from tensorgate.passes import PassManager
from tensorgate.runtime.simulator import Simulator

STEPS = 3


def grouped_linear(groups: int, width_in: int, width_out: int, equation: str = "btgi,gih->btgh",
                   seed: int = 0) -> onnx.ModelProto:
    """x [1, T, G*I] -> Reshape [1, T, G, I] -> Einsum with W [G, I, H] -> Reshape [1, T, G*H]."""
    rng = np.random.default_rng(seed)
    weight = (rng.normal(size=(groups, width_in, width_out)) / np.sqrt(width_in)).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["x", "split_shape"], ["grouped"]),
        helper.make_node("Einsum", ["grouped", "weight"], ["mixed"], equation=equation),
        helper.make_node("Reshape", ["mixed", "joined_shape"], ["y"]),
    ]
    initializers = [numpy_helper.from_array(weight, "weight"),
                    numpy_helper.from_array(np.array([1, STEPS, groups, width_in], np.int64), "split_shape"),
                    numpy_helper.from_array(np.array([1, STEPS, groups * width_out], np.int64), "joined_shape")]
    graph = helper.make_graph(nodes, "grouped_linear",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, STEPS, groups * width_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, STEPS, groups * width_out])],
                              initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def feeds(groups: int, width_in: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(1, STEPS, groups * width_in)).astype(np.float32)}


@pytest.mark.parametrize("groups, width_in, width_out", [(4, 8, 4), (3, 5, 6), (1, 4, 4)])
def test_grouped_einsum_is_one_linear_per_group(groups, width_in, width_out):
    model = grouped_linear(groups, width_in, width_out)
    module = import_onnx(model)
    assert module.ops_of("einsum") == [] and len(module.ops_of("linear")) == groups
    assert sum(op.attrs["weight"].params() for op in module.ops_of("linear")) == groups * width_in * width_out
    inputs = feeds(groups, width_in)
    np.testing.assert_allclose(run_module(module, inputs)["y"], run_onnxruntime(model, inputs)["y"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("equation, width_out", [("btgi,gih->bthg", 3), ("btgi,hig->btgh", 2), ("btgi,gih->btgi", 4)])
def test_other_einsums_stay_einsum(equation, width_out):
    """Not a grouped linear ``...gi,gih->...gh`` over the last axis (the output transposed,
    the weight's axes in another order, nothing produced): the op stays a generic einsum
    and still matches onnxruntime."""
    model = grouped_linear(2, 4, width_out, equation)
    module = import_onnx(model)
    assert module.ops_of("linear") == [] and len(module.ops_of("einsum")) == 1
    inputs = feeds(2, 4)
    np.testing.assert_allclose(run_module(module, inputs)["y"], run_onnxruntime(model, inputs)["y"],
                               rtol=1e-5, atol=1e-6)


def test_quantized_grouped_linear_runs_on_the_accelerator_bit_exactly(tmp_path):
    model = grouped_linear(4, 8, 4)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, x=np.random.default_rng(2).normal(size=(1, STEPS, 32)).astype(np.float32))
    module = PassManager.parse(f"quantize{{bits=16 calibration={calibration}}}").run(import_onnx(model))
    artifact = write_verilog_artifact(module, tmp_path / "hw", "quantize", "grouped.onnx", 4)
    inputs = feeds(4, 8)
    outputs, _ = Simulator(artifact).run(inputs, raw=True)
    golden = run_fixed(module, inputs, raw=True)
    assert np.array_equal(outputs["y"], golden["y"])
    lsb = 2.0 ** -module.outputs[0].producer.operands[0].type.dtype.frac
    # each output sums 8 products of inputs and weights rounded to half an LSB, then rounds once more
    np.testing.assert_allclose(run_fixed(module, inputs)["y"], run_onnxruntime(model, inputs)["y"], atol=8 * lsb)
