"""What the raising leaves as generic ops still runs: the ``einsum`` op against
onnxruntime, shape arithmetic folded before the import, and PyTorch models that are
not quite a tensorized LSTM, with the notes that say what was not raised and why."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from models import assert_close_f32, make_model, run_onnxruntime
from tensorized_models import TensorizedLSTM, check_outputs, export_tensorized_lstm, tensorized_lstm
from tensorgate.errors import FrontendError, VerifyError
from tensorgate.frontend import import_onnx
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.types import F32, TensorType
from tensorgate.interpreter import run_module

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


def chunk_model():
    """PyTorch's ``chunk`` as the TorchScript exporter writes it: Slice ends computed
    from ``Shape`` at run time, plus a reshape whose target holds the symbolic batch."""
    const = {"one": [1], "three": [3], "four": [4], "zero": [0], "two": [2], "rest": [2, 4]}
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "one"], ["width"], name="width", axis=0),
             helper.make_node("Add", ["width", "three"], ["padded"], name="padded"),
             helper.make_node("Div", ["padded", "four"], ["quarter"], name="quarter"),
             helper.make_node("Mul", ["quarter", "two"], ["half"], name="half"),
             helper.make_node("Mul", ["quarter", "four"], ["whole"], name="whole"),
             helper.make_node("Slice", ["x", "zero", "half", "one"], ["low"], name="low"),
             helper.make_node("Slice", ["x", "half", "whole", "one"], ["high"], name="high"),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0),
             helper.make_node("Concat", ["batch", "rest"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["grid"], name="grid")]
    return make_model(nodes, [("x", F, ["batch", 8])],
                      [("low", F, ["batch", 4]), ("high", F, ["batch", 4]), ("grid", F, ["batch", 2, 4])],
                      {name: np.array(value, np.int64) for name, value in const.items()}, opset=17)


def test_shape_arithmetic_of_static_dims_is_folded_before_the_import():
    model = chunk_model()
    module = import_onnx(model)
    slices = module.ops_of("slice")
    assert [(op.attrs["starts"], op.attrs["ends"]) for op in slices] == [([0], [4]), ([4], [8])]
    assert len(module.ops_of("shape")) == 1, "the batch dim stays computed at run time"
    feeds = {"x": normal(3, 8)}
    expected = run_onnxruntime(model, feeds)
    outputs = run_module(module, feeds)
    for name, want in expected.items():
        np.testing.assert_array_equal(outputs[name], want, err_msg=name)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fallback")
    return lambda config: export_tensorized_lstm(config, directory)


def test_a_cell_that_is_not_an_lstm_runs_with_its_maps_raised(exported):
    """A relu candidate gate: no lstm op, but each step's W is the one raised tt map."""
    config = TensorizedLSTM(fmt="tt", style="einsum", variant="relu_candidate")
    path = exported(config)
    module = import_onnx(path)
    assert not module.ops_of("lstm") and not module.ops_of("einsum")
    maps = [op.attrs["weight"] for op in module.ops_of("linear") if op.attrs["weight"].format == "tt"]
    assert len(maps) == config.seq and all(m is maps[0] for m in maps)
    assert maps[0] == tensorized_lstm(config).w[0].reference_map()
    assert module.notes == [f"LSTM cell not raised at node '/Mul_6' (and {config.seq - 1} more like it): "
                            "the candidate gate goes through relu, an ONNX LSTM applies tanh"]
    check_outputs(module, path, config)


def test_a_map_that_is_no_format_runs_as_einsums(exported):
    """A tensor ring: the einsums stay, and so does the cell that uses them."""
    config = TensorizedLSTM(fmt="tr", style="einsum")
    path = exported(config)
    module = import_onnx(path)
    assert len(module.ops_of("einsum")) == 3 * config.seq and not module.ops_of("lstm")
    ring, cell = module.notes
    assert ring.startswith("tensorized map not raised at nodes '/w.0/Reshape' .. '/w.0/Add' (and 2 more like it)")
    assert ring.endswith("the first and last cores share a bond (a tensor ring)")
    assert cell.startswith("LSTM cell not raised") and "'reshape' op, not only sums of linear maps" in cell
    check_outputs(module, path, config)


def test_inspect_says_what_was_not_raised_and_why(exported, capsys):
    from tensorgate.cli import main

    path = exported(TensorizedLSTM(fmt="tt", style="einsum", variant="relu_candidate"))
    assert main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "not raised: LSTM cell not raised at node '/Mul_6'" in printed
    assert "the candidate gate goes through relu" in printed
