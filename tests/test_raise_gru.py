"""Tensorized GRUs written in PyTorch (``tensorized_gru``), exported by either exporter,
raise to one ``gru`` op whose W maps hold the model's own cores (gates reordered from
torch's r, z, n to ONNX's z, r, h) with ``linear_before_reset`` as the cell computes it,
and whose outputs equal onnxruntime's on the exported file."""

from __future__ import annotations

import numpy as np
import pytest

from models import assert_close_f32, run_onnxruntime
from tensorized_gru import TensorizedGRU, expected_bias, expected_r, expected_w, export_tensorized_gru, tensorized_gru
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module

CONFIGS = {
    "tt einsum chain, stacked, torch's cell": TensorizedGRU(fmt="tt", style="einsum"),
    "ht matmul, a map per gate, lbr0, lerp, batch first": TensorizedGRU(
        fmt="ht", style="matmul", gates="separate", form="lbr0", update="lerp", out_factors=(2, 2, 2),
        batch_first=True),
    "bt one einsum, stacked, reverse, initial state": TensorizedGRU(fmt="bt", style="einsum1", reverse=True,
                                                                    initial_state=True),
    "tt matmul, stacked, lbr0, dynamo": TensorizedGRU(fmt="tt", style="matmul", form="lbr0", exporter="dynamo",
                                                      opset=18),
    "ht einsum chain, a map per gate, dynamo, lerp": TensorizedGRU(
        fmt="ht", style="einsum", gates="separate", update="lerp", out_factors=(2, 2, 2), exporter="dynamo",
        opset=18),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name) -> (path, module)``: each configuration exported and imported once."""
    directory = tmp_path_factory.mktemp("tensorized_gru")
    cache = {}

    def export(name):
        if name not in cache:
            path = export_tensorized_gru(CONFIGS[name], directory)
            cache[name] = path, import_onnx(path)
        return cache[name]

    return export


@pytest.mark.parametrize("name", CONFIGS)
def test_gru_is_raised_with_its_decomposed_maps(exported, name):
    config = CONFIGS[name]
    _, module = exported(name)
    (op,) = module.ops_of("gru")
    assert module.notes == []
    assert not {"einsum", "linear", "matmul", "sigmoid", "tanh", "mul"} & {o.kind for o in module.ops}
    assert {m.format for m in op.attrs["w"]} == {config.fmt}
    assert op.attrs["linear_before_reset"] == (config.form == "lbr1")
    assert op.attrs["direction"] == ("reverse" if config.reverse else "forward")
    assert op.attrs["hidden_size"] == config.hidden_size


@pytest.mark.parametrize("name", CONFIGS)
def test_cores_and_biases_are_torchs_parameters(exported, name):
    """Cores bit-identical to torch's parameters (a stacked map's leading-factor tensor
    permuted to ONNX order), R and the biases exactly torch's in ONNX order."""
    (op,) = exported(name)[1].ops_of("gru")
    model = tensorized_gru(CONFIGS[name])
    assert op.attrs["w"] == expected_w(model)
    assert np.array_equal(np.concatenate([m.to_dense() for m in op.attrs["r"]]), expected_r(model))
    assert np.array_equal(op.attrs["bias"], expected_bias(model))


@pytest.mark.parametrize("name", CONFIGS)
def test_outputs_match_onnxruntime_and_the_text_form_round_trips(exported, name):
    path, module = exported(name)
    config = CONFIGS[name]
    for batch in (1, 4):
        feeds = config.feeds(batch, np.random.default_rng(batch))
        expected = run_onnxruntime(path, feeds)
        outputs = run_module(module, feeds)
        assert list(outputs) == list(expected) == ["y", "h"]
        for key, want in expected.items():
            assert_close_f32(outputs[key], want, f"{key} at batch {batch}")
    text = print_module(module)
    assert print_module(parse_module(text, module_tensors(module))) == text


def test_a_cell_that_is_not_a_gru_stays_generic_with_a_note(tmp_path):
    """z blending the other way round, ``(1 - z)·h + z·n``, is not ONNX's GRU: the cells
    stay generic ops, computing what the model computes, and a note says why."""
    config = TensorizedGRU(update="swapped")
    path = export_tensorized_gru(config, tmp_path)
    module = import_onnx(path)
    assert not module.ops_of("gru")
    (note,) = module.notes
    assert note.startswith("GRU cell not raised at node '/Add_5' (and 2 more like it): the update gate weighs the "
                           "candidate by z and the state by 1 - z; an ONNX GRU computes (1 - z)·n + z·h")
    feeds = config.feeds(3, np.random.default_rng(0))
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(run_module(module, feeds)[key], want, key)


def test_a_first_step_folded_by_a_static_batch_export_stays_generic_with_notes(tmp_path):
    """With a static batch and zero initial state the dynamo exporter folds step 0's
    ``R·0`` terms; the GRU is then not raised (documented), and still computes what
    onnxruntime does."""
    config = TensorizedGRU(exporter="dynamo", opset=18, dynamic_batch=False)
    path = export_tensorized_gru(config, tmp_path)
    module = import_onnx(path)
    assert not module.ops_of("gru") and module.notes
    assert any(note.startswith("GRU cell not raised") for note in module.notes)
    feeds = config.feeds(2, np.random.default_rng(0))
    for key, want in run_onnxruntime(path, feeds).items():
        assert_close_f32(run_module(module, feeds)[key], want, key)
