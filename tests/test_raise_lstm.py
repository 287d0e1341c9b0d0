"""Tensorized LSTMs written in PyTorch, exported by the TorchScript exporter, raise to
one ``lstm`` op whose W maps hold the model's own cores and whose outputs equal
onnxruntime's on the exported file (the dynamo exporter: ``test_raise_lstm_dynamo``)."""

from __future__ import annotations

import numpy as np
import pytest

from tensorized_models import (
    TensorizedLSTM, check_outputs, check_parameters, check_raised, exporter_of, tensorized_lstm,
)
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module

CONFIGS = {
    "tt einsum chain, torch gates": TensorizedLSTM(fmt="tt", style="einsum"),
    "tt matmul, onnx gates, a map per gate, batch first": TensorizedLSTM(
        fmt="tt", style="matmul", gate_order="iofc", gates="separate", out_factors=(2, 2, 2), batch_first=True),
    "bt one einsum, torch gates, reverse": TensorizedLSTM(fmt="bt", style="einsum1", reverse=True),
    "bt matmul, onnx gates, initial state": TensorizedLSTM(fmt="bt", style="matmul", gate_order="iofc",
                                                           initial_state=True),
    "ht einsum chain, torch gates, a map per gate": TensorizedLSTM(fmt="ht", style="einsum", gates="separate",
                                                                   out_factors=(2, 2, 2)),
    "ht matmul, onnx gates, static batch": TensorizedLSTM(fmt="ht", style="matmul", gate_order="iofc",
                                                          dynamic_batch=False),
    "tt einsum, the cell spelled otherwise, batch first": TensorizedLSTM(fmt="tt", variant="commuted",
                                                                         batch_first=True),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name) -> (path, module)``: each configuration exported and imported once."""
    return exporter_of(CONFIGS, tmp_path_factory.mktemp("tensorized_lstm"))


@pytest.mark.parametrize("name", CONFIGS)
def test_lstm_is_raised_with_its_decomposed_maps(exported, name):
    _, module = exported(name)
    check_raised(module, CONFIGS[name])


@pytest.mark.parametrize("name", CONFIGS)
def test_cores_and_biases_are_torchs_parameters(exported, name):
    _, module = exported(name)
    check_parameters(module.ops_of("lstm")[0], CONFIGS[name])


@pytest.mark.parametrize("name", CONFIGS)
def test_outputs_match_onnxruntime(exported, name):
    path, module = exported(name)
    check_outputs(module, path, CONFIGS[name])


def test_cores_in_torch_gate_order_are_the_models_but_for_the_leading_factor(exported):
    """The documented reorder for a stacked map in torch order: the tensors other than
    core 0 are torch's own, and core 0 holds torch's slices along m_1."""
    (op,) = exported("tt einsum chain, torch gates")[1].ops_of("lstm")
    model = tensorized_lstm(CONFIGS["tt einsum chain, torch gates"])
    cores = [p.detach().numpy() for name, p in model.w[0].params.items()]
    raised = op.attrs["w"][0].cores
    assert all(np.array_equal(a, b) for a, b in zip(raised[1:], cores[1:]))
    i, f, g, o = np.split(cores[0], 4, axis=1)
    assert np.array_equal(raised[0], np.concatenate([i, o, f, g], axis=1))


def test_initial_state_inputs_become_initial_h_and_c(exported):
    _, module = exported("bt matmul, onnx gates, initial state")
    (op,) = module.ops_of("lstm")
    h0, c0 = (v.producer.operands[0] for v in op.operands[2:])
    assert [h0.name, c0.name] == ["h0", "c0"]


def test_raised_lstm_prints_and_parses_back(exported):
    _, module = exported("ht einsum chain, torch gates, a map per gate")
    text = print_module(module)
    again = parse_module(text, module_tensors(module))
    assert print_module(again) == text
    assert again.ops_of("lstm")[0].attrs["w"] == module.ops_of("lstm")[0].attrs["w"]
