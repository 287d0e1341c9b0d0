"""PyTorch-exported LSTM classifiers (both exporters, opsets 14-22) through the
importer and the NumPy runtime, against onnxruntime on the same file."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from models import TorchRecurrent, assert_close_f32, run_onnxruntime, torch_classifier
from tensorgate.frontend import import_onnx
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.interpreter import run_module

CONFIGS = {
    "torchscript14": TorchRecurrent(exporter="torchscript", opset=14),
    "torchscript17_2layer_bi_batch_first": TorchRecurrent(exporter="torchscript", opset=17, num_layers=2,
                                                     bidirectional=True, batch_first=True),
    "torchscript17_states": TorchRecurrent(exporter="torchscript", opset=17, num_layers=2, bidirectional=True,
                                      head="none"),
    "dynamo18_batch_first_external": TorchRecurrent(exporter="dynamo", opset=18, batch_first=True),
    "dynamo20_2layer_bi_static": TorchRecurrent(exporter="dynamo", opset=20, num_layers=2, bidirectional=True,
                                           head="log_softmax", dynamic=False, external_data=False),
    # static: with dynamic shapes at opset 22 the exporter bakes the example's length into a
    # Reshape, so onnxruntime itself fails on other lengths
    "dynamo22_odd_sizes_static": TorchRecurrent(exporter="dynamo", opset=22, input_size=3, hidden_size=11,
                                           num_classes=2, dynamic=False, external_data=False),
    # torch 2.13's defaults on weights above 8192 elements: the gate reordering is left as
    # Slice/Concat/Unsqueeze chains over the initializers, which the importer folds
    "dynamo_defaults_computed_weights": TorchRecurrent(exporter="dynamo", opset=18, input_size=40, hidden_size=64,
                                                  num_layers=2, bidirectional=True, batch_first=True,
                                                  head="linear", dynamic=False),
}


def shapes_to_run(config: TorchRecurrent) -> list[tuple[int, int]]:
    """(batch, seq) pairs: the export's own, and for dynamic exports two others."""
    return [(2, 4), (3, 6), (1, 1)] if config.dynamic else [(2, 4)]


@pytest.mark.parametrize("name", CONFIGS)
def test_export_matches_onnxruntime(torch_export, name):
    config = CONFIGS[name]
    path = torch_export(config)
    module = import_onnx(path)
    assert [v.name for v in module.inputs] == ["x"]
    rng = np.random.default_rng(len(name))
    for batch, seq in shapes_to_run(config):
        feeds = {"x": rng.standard_normal(config.input_shape(batch, seq)).astype(np.float32)}
        expected = run_onnxruntime(path, feeds)
        assert [v.name for v in module.outputs] == list(expected)
        outputs = run_module(module, feeds)
        for key, want in expected.items():
            assert_close_f32(outputs[key], want, f"{key} at batch={batch} seq={seq}")


@pytest.mark.parametrize("name", CONFIGS)
def test_each_layer_is_one_lstm_op_and_the_head_is_linear(torch_export, name):
    config = CONFIGS[name]
    module = import_onnx(torch_export(config))
    layers = module.ops_of("lstm")
    assert len(layers) == config.num_layers
    direction = "bidirectional" if config.bidirectional else "forward"
    assert all(op.attrs["direction"] == direction and op.attrs["hidden_size"] == config.hidden_size
               for op in layers)
    assert all(op.loc for op in module.ops if op.kind != "const")
    assert not module.ops_of("matmul")
    assert len(module.ops_of("linear")) == (0 if config.head == "none" else 1)


@pytest.mark.parametrize("name", [n for n, c in CONFIGS.items() if c.dynamic])
def test_symbolic_batch_dim_reaches_the_outputs(torch_export, name):
    config = CONFIGS[name]
    module = import_onnx(torch_export(config))
    batch_axis = 0 if config.batch_first else 1
    batch = module.inputs[0].type.shape[batch_axis]
    assert batch == "batch"
    output = module.outputs[0].type
    assert output.shape[0] == batch or output.shape[batch_axis] == batch


def test_weights_read_from_external_data_are_torchs(torch_export):
    """The dynamo exporter writes W and R to a sidecar file; the imported maps must be
    torch's weights with the gates reordered from i,f,g,o to ONNX's i,o,f,c."""
    config = CONFIGS["dynamo18_batch_first_external"]
    path = torch_export(config)
    raw = onnx.load(path, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in raw.graph.initializer)
    (lstm,) = import_onnx(path).ops_of("lstm")
    torch_lstm = torch_classifier(config).recurrent
    i, f, g, o = np.split(torch_lstm.weight_ih_l0.detach().numpy(), 4)
    np.testing.assert_array_equal(lstm.attrs["w"][0].to_dense(), np.concatenate([i, o, f, g]))
    i, f, g, o = np.split(torch_lstm.weight_hh_l0.detach().numpy(), 4)
    np.testing.assert_array_equal(lstm.attrs["r"][0].to_dense(), np.concatenate([i, o, f, g]))


@pytest.mark.parametrize("name", CONFIGS)
def test_imported_module_prints_and_parses_back(torch_export, name):
    """The CLI dumps and reloads imported modules as text; ONNX value names with
    '/', ':' and '.' must survive that."""
    module = import_onnx(torch_export(CONFIGS[name]))
    text = print_module(module)
    assert print_module(parse_module(text, module_tensors(module))) == text
