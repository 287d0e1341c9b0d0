"""What the raising leaves as generic ops still runs: the ``einsum`` op against
onnxruntime, shape arithmetic folded before the import, and the notes that say what
was not raised and why."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from models import assert_close_f32, make_model, run_onnxruntime
from tensorgate.errors import FrontendError, VerifyError
from tensorgate.frontend import import_onnx
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.types import F32, TensorType
from tensorgate.runtime.numpy_runtime import run_module

F = TensorProto.FLOAT


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def einsum_model(equation: str, shapes: list[tuple[int, ...]]):
    """A one-node Einsum model and feeds for it."""
    names = [f"x{k}" for k in range(len(shapes))]
    feeds = {n: normal(*s, seed=k) for k, (n, s) in enumerate(zip(names, shapes))}
    output_shape = np.einsum(equation.replace(" ", ""), *feeds.values()).shape
    node = helper.make_node("Einsum", names, ["y"], name="the_einsum", equation=equation)
    model = make_model([node], [(n, F, list(s)) for n, s in zip(names, shapes)], [("y", F, list(output_shape))],
                       opset=18)
    return model, feeds


EQUATIONS = {
    "batched matmul": ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    "TT step": ("bijkl,aimr->bjklmr", [(2, 3, 4, 2, 2), (1, 3, 5, 2)]),
    "implicit output": ("kj,ij", [(4, 5), (3, 5)]),
    "ellipsis": ("...ij,jk->...ik", [(2, 3, 3, 4), (4, 5)]),
    "broadcast ellipsis": ("...i,...i->...", [(2, 1, 4), (1, 3, 4)]),
    "full sum": ("ij,ij->", [(3, 4), (3, 4)]),
    "diagonal": ("ii->i", [(3, 3)]),
    "spaces": ("b i j , j k -> b i k", [(2, 3, 4), (4, 5)]),
}


@pytest.mark.parametrize("name", EQUATIONS)
def test_einsum_matches_onnxruntime(name):
    equation, shapes = EQUATIONS[name]
    model, feeds = einsum_model(equation, shapes)
    expected = run_onnxruntime(model, feeds)["y"]
    module = import_onnx(model)
    (op,) = module.ops_of("einsum")
    assert op.results[0].type.shape == expected.shape
    assert_close_f32(run_module(module, feeds)["y"], expected, name)


def test_einsum_prints_and_parses_back():
    model, _ = einsum_model(*EQUATIONS["ellipsis"])
    module = import_onnx(model)
    text = print_module(module)
    assert "einsum" in text
    assert print_module(parse_module(text, module_tensors(module))) == text


@pytest.mark.parametrize("equation, message", [
    ("ij,jk->ik", "2 operand terms for 1 operands"),
    ("ijk->ik", "does not fit an operand of rank 2"),
    ("ij->ix", "uses one no operand has"),
    ("ij->ii", "repeats a letter"),
    ("i2->i", "characters other than letters"),
])
def test_einsum_equation_errors_name_the_op(equation, message):
    module = Module()
    x = Builder(module).input("x", TensorType((3, 3), F32))
    with pytest.raises(VerifyError, match=message) as info:
        Builder(module).op("einsum", [x], {"equation": equation}, loc="node_7")
    assert "node_7" in str(info.value)


def test_einsum_label_sizes_must_agree():
    module = Module()
    builder = Builder(module)
    a, b = builder.input("a", TensorType((3, 4), F32)), builder.input("b", TensorType((5, 6), F32))
    with pytest.raises(VerifyError, match="label 'j' has sizes 4 and 5"):
        builder.op("einsum", [a, b], {"equation": "ij,jk->ik"})


def test_einsum_with_a_bad_equation_is_a_frontend_error():
    model, _ = einsum_model("ij->i", [(2, 2)])
    model.graph.node[0].attribute[0].s = b"ij->iij"
    with pytest.raises(FrontendError, match="the_einsum|Einsum"):
        import_onnx(model)
