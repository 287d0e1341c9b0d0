"""Tensorized linear maps written in PyTorch (TT, BT, HT; einsum chains, one einsum,
reshape/permute/matmul chains) raise to one ``linear`` op whose map holds the model's
own parameters, and compute what onnxruntime computes on the exported file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from models import assert_close_f32, make_model, run_onnxruntime
from tensorized_models import TorchTensorizedLinear, export_tensorized_linear
from tensorgate.frontend import import_onnx
from tensorgate.ir.linear_map import DenseMap
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.interpreter import run_module

F = TensorProto.FLOAT


def check_against_onnxruntime(module, path, in_dim: int, batches=(1, 3)):
    rng = np.random.default_rng(in_dim)
    for batch in batches:
        feeds = {"x": rng.standard_normal((batch, in_dim)).astype(np.float32)}
        assert_close_f32(run_module(module, feeds)["y"], run_onnxruntime(path, feeds)["y"], f"batch {batch}")


@st.composite
def tensorized_linears(draw):
    """TT and BT maps of 2 or 3 modes, HT maps of 3 (with 2 modes an HT tree is a
    Tucker block, and raises as BT); ranks from 1 except for HT in matmul chains, whose
    rank-1 bonds the exported graph does not show (the size-1 axes are merged away),
    so its tree cannot be read back."""
    fmt = draw(st.sampled_from(["tt", "bt", "ht"]))
    style = draw(st.sampled_from(["einsum", "einsum1", "matmul"]))
    d = 3 if fmt == "ht" else draw(st.integers(2, 3))
    factors = st.lists(st.integers(2, 3), min_size=d, max_size=d)
    rank = draw(st.integers(2 if (fmt, style) == ("ht", "matmul") else 1, 3))
    return dict(fmt=fmt, out_factors=draw(factors), in_factors=draw(factors), rank=rank,
                blocks=draw(st.integers(1, 2)), style=style, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=tensorized_linears())
def test_exported_map_raises_to_its_own_cores(tmp_path, spec):
    torch.manual_seed(spec.pop("seed"))
    linear = TorchTensorizedLinear(**spec)
    path = export_tensorized_linear(linear, tmp_path / "linear.onnx")
    module = import_onnx(path)
    assert module.notes == []
    assert [op.kind for op in module.ops] == ["linear"]
    (op,) = module.ops
    assert op.operands[0] is module.inputs[0]
    assert op.attrs["weight"] == linear.reference_map()  # same format, factors, ranks, tree and bits
    bias = linear.bias_array()
    assert bias is None and op.attrs["bias"] is None or np.array_equal(op.attrs["bias"], bias)
    check_against_onnxruntime(module, path, linear.in_dim)


def test_dynamo_export_raises_too(tmp_path):
    torch.manual_seed(1)
    linear = TorchTensorizedLinear("bt", (4, 2, 3), (3, 2, 2), rank=2, blocks=2, style="matmul")
    path = export_tensorized_linear(linear, tmp_path / "linear.onnx", exporter="dynamo")
    module = import_onnx(path)
    (op,) = module.ops_of("linear")
    assert op.attrs["weight"] == linear.reference_map()
    check_against_onnxruntime(module, path, linear.in_dim)


def test_raised_map_prints_and_parses_back(tmp_path):
    torch.manual_seed(2)
    linear = TorchTensorizedLinear("ht", (2, 3, 2, 2), (3, 2, 2, 2), rank=2, style="einsum1")
    module = import_onnx(export_tensorized_linear(linear, tmp_path / "linear.onnx"))
    text = print_module(module)
    again = parse_module(text, module_tensors(module))
    assert print_module(again) == text
    assert again.ops_of("linear")[0].attrs["weight"] == linear.reference_map()


def test_generic_ops_are_kept_without_raising(tmp_path):
    torch.manual_seed(3)
    linear = TorchTensorizedLinear("tt", (2, 3, 2), (2, 2, 3), rank=2, style="einsum")
    path = export_tensorized_linear(linear, tmp_path / "linear.onnx")
    module = import_onnx(path, raising=False)
    assert len(module.ops_of("einsum")) == 3
    check_against_onnxruntime(module, path, linear.in_dim)


def test_a_plain_dense_layer_is_left_alone():
    w = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    model = make_model(nodes, [("x", F, ["batch", 4])], [("y", F, ["batch", 5])], {"w": w})
    module = import_onnx(model)
    (op,) = module.ops
    assert op.kind == "linear" and isinstance(op.attrs["weight"], DenseMap) and module.notes == []


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


NOT_RAISED = {  # equation, core, the input's reshape, what the note says
    "a core meets the batch axis": ("bi,bij->bj", normal(2, 4, 5), [-1, 4], "a batch axis"),
    "a diagonal of the input": ("bii,ij->bj", normal(3, 5), [-1, 3, 3], "diagonal"),
    "a constant summed on its own": ("bi,ijk->bj", normal(6, 5, 2), [-1, 6], "summed on its own"),
}


@pytest.mark.parametrize("name", NOT_RAISED)
def test_what_is_not_a_format_runs_as_einsum_with_a_note(name):
    equation, core, shape, reason = NOT_RAISED[name]
    in_dim = math.prod(shape[1:])
    feeds = {"x": normal(2, in_dim, seed=1)}
    out_dim = np.einsum(equation, feeds["x"].reshape([2] + shape[1:]), core).shape[-1]
    nodes = [helper.make_node("Reshape", ["x", "shape_in"], ["t"], name="reshape_in"),
             helper.make_node("Einsum", ["t", "core"], ["y"], name="the_einsum", equation=equation)]
    inits = {"core": core, "shape_in": np.array(shape, np.int64)}
    model = make_model(nodes, [("x", F, ["batch", in_dim])], [("y", F, ["batch", out_dim])], inits, opset=18)
    module = import_onnx(model)
    assert module.ops_of("einsum"), "the contraction stays a generic op"
    (note,) = module.notes
    assert note.startswith("tensorized map not raised at node") and "the_einsum" in note and reason in note
    assert_close_f32(run_module(module, feeds)["y"], run_onnxruntime(model, feeds)["y"])
