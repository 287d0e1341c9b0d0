"""Tensorized LSTMs exported by the dynamo exporter (opset 18) raise like the
TorchScript ones (``test_raise_lstm``): one ``lstm`` op, torch's own cores, outputs
equal to onnxruntime's.  The dynamo exporter writes ``chunk`` as a Split, CSEs shared
subexpressions across BT blocks, and with a static batch folds the first step's
``R·0 + b`` into a constant."""

from __future__ import annotations

import pytest

from tensorized_models import TensorizedLSTM, check_outputs, check_parameters, check_raised, exporter_of
from tensorgate.frontend import import_onnx

CONFIGS = {
    "tt matmul, torch gates": TensorizedLSTM(fmt="tt", style="matmul", exporter="dynamo", opset=18),
    "bt einsum chain, onnx gates, a map per gate, batch first": TensorizedLSTM(
        fmt="bt", style="einsum", gate_order="iofc", gates="separate", out_factors=(2, 2, 2), batch_first=True,
        exporter="dynamo", opset=18),
    "ht one einsum, torch gates, static batch": TensorizedLSTM(fmt="ht", style="einsum1", dynamic_batch=False,
                                                               exporter="dynamo", opset=18),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name) -> (path, module)``: each configuration exported and imported once."""
    return exporter_of(CONFIGS, tmp_path_factory.mktemp("tensorized_lstm_dynamo"))


@pytest.mark.parametrize("name", CONFIGS)
def test_dynamo_export_raises_to_one_lstm_with_torchs_cores(exported, name):
    path, module = exported(name)
    op = check_raised(module, CONFIGS[name])
    check_parameters(op, CONFIGS[name])
    check_outputs(module, path, CONFIGS[name])


def test_first_step_folded_by_the_exporter_is_recognized(exported):
    """With a static batch the exporter turns step 0's ``R·0 + b`` into a constant; the
    lstm op still gets R and the two biases separately."""
    path, module = exported("ht one einsum, torch gates, static batch")
    raw = import_onnx(path, raising=False)
    assert len(raw.ops_of("linear")) == CONFIGS["ht one einsum, torch gates, static batch"].seq - 1
    (op,) = module.ops_of("lstm")
    assert op.operands[2:] == [None, None]
