"""Hand-built ONNX GRUs and RNNs and PyTorch-exported ``nn.GRU``/``nn.RNN`` models through
the importer and the NumPy runtime, against onnxruntime and against torch itself.

Where onnxruntime departs from the ONNX specification, the specification wins and the
test says so: onnxruntime gives Affine and ScaledTanh alpha = beta = 0 when the node
omits them (the specification: Affine alpha 1, beta 0; ScaledTanh alpha 1, beta 1), and
it refuses layout 1 (compared against the layout-0 node on transposed tensors).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from models import OnnxRecurrent, TorchRecurrent, assert_close_f32, make_onnx_recurrent, run_onnxruntime
from models import export_torch_recurrent, torch_classifier
from test_frontend_lstm import compare_with_onnxruntime
from tensorgate.errors import FrontendError
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.ir import DenseMap

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
DIRECTIONS = ("forward", "reverse", "bidirectional")
FEATURES = {
    "defaults": {},
    "no_bias": {"bias": False},
    "clip": {"clip": 0.6},
    "sequence_lens": {"sequence_lens": True},
    "initial_h": {"initial_h": True},
    "everything": {"clip": 0.9, "sequence_lens": True, "initial_h": True},
}
NODES = {"gru_lbr0": ("GRU", 0), "gru_lbr1": ("GRU", 1), "rnn": ("RNN", 0)}


def gru_or_rnn(node: str, **kwargs) -> OnnxRecurrent:
    op_type, lbr = NODES[node]
    return OnnxRecurrent(op_type=op_type, linear_before_reset=lbr, outputs=("Y", "Y_h"), **kwargs)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("node", NODES)
def test_matches_onnxruntime(node, direction, feature):
    seed = list(FEATURES).index(feature) + 10 * DIRECTIONS.index(direction)
    compare_with_onnxruntime(gru_or_rnn(node, direction=direction, seed=seed, **FEATURES[feature]))


@PROPERTY
@given(node=st.sampled_from(sorted(NODES)), direction=st.sampled_from(DIRECTIONS),
       sizes=st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
       feature=st.sampled_from(sorted(FEATURES)), seed=st.integers(0, 2**16))
def test_any_sizes_match_onnxruntime(node, direction, sizes, feature, seed):
    seq, batch, input_size, hidden = sizes
    compare_with_onnxruntime(gru_or_rnn(node, direction=direction, seq=seq, batch=batch, input_size=input_size,
                                        hidden_size=hidden, seed=seed, **FEATURES[feature]))


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",)])
@pytest.mark.parametrize("node", NODES)
def test_either_output_alone(node, outputs):
    config = replace(gru_or_rnn(node, direction="bidirectional", sequence_lens=True), outputs=outputs)
    assert list(compare_with_onnxruntime(config)) == list(outputs)


GRU_ACTIVATIONS = [
    (("HardSigmoid", "ScaledTanh"), (0.3, 0.9), (0.4, 1.1)),
    (("sigmoid", "SOFTSIGN", "Softsign", "LeakyRelu"), (0.05,), None),
    (("Sigmoid", "Elu", "HardSigmoid", "Softplus"), (0.7, 0.25), (0.45,)),
    (("ThresholdedRelu", "Tanh"), (0.1,), None),
]
RNN_ACTIVATIONS = [
    (("Relu",), None, None),
    (("Relu", "Tanh"), None, None),
    (("Affine",), (0.5,), (0.1,)),
    (("Sigmoid", "ScaledTanh"), (0.8,), (0.9,)),
    (("LeakyRelu", "Elu"), (0.1, 0.3), None),
]


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("activations, alpha, beta", GRU_ACTIVATIONS)
def test_gru_activations_with_alpha_and_beta(activations, alpha, beta, lbr):
    """Names match without regard to case; alpha/beta are taken in order by the
    activations that have them."""
    direction = "bidirectional" if len(activations) == 4 else "forward"
    compare_with_onnxruntime(OnnxRecurrent(op_type="GRU", direction=direction, activations=activations,
                                           activation_alpha=alpha, activation_beta=beta, clip=3.0,
                                           linear_before_reset=lbr, outputs=("Y", "Y_h")))


@pytest.mark.parametrize("activations, alpha, beta", RNN_ACTIVATIONS)
def test_rnn_activations_with_alpha_and_beta(activations, alpha, beta):
    direction = "bidirectional" if len(activations) == 2 else "forward"
    compare_with_onnxruntime(OnnxRecurrent(op_type="RNN", direction=direction, activations=activations,
                                           activation_alpha=alpha, activation_beta=beta, outputs=("Y", "Y_h")))


@pytest.mark.parametrize("node, activations, spec", [
    ("rnn", ("Affine",), ((1.0,), (0.0,))),
    ("rnn", ("ScaledTanh",), ((1.0,), (1.0,))),
    ("gru_lbr1", ("Sigmoid", "Affine"), ((1.0,), (0.0,))),
    ("gru_lbr0", ("Sigmoid", "ScaledTanh"), ((1.0,), (1.0,))),
])
def test_omitted_alpha_beta_take_the_specs_defaults_not_onnxruntimes(node, activations, spec):
    """onnxruntime reads an omitted alpha/beta of Affine and ScaledTanh as 0 (the output
    is then constant); the specification's defaults are what the IR computes: equal to
    onnxruntime given those defaults explicitly, and unlike onnxruntime without them."""
    config = gru_or_rnn(node, activations=activations)
    model, feeds = make_onnx_recurrent(config)
    outputs = run_module(import_onnx(model), feeds)
    explicit, _ = make_onnx_recurrent(replace(config, activation_alpha=spec[0], activation_beta=spec[1]))
    for name, want in run_onnxruntime(explicit, feeds).items():
        assert_close_f32(outputs[name], want, name)
    onnxruntime_reading = run_onnxruntime(model, feeds)["Y"]
    assert np.abs(onnxruntime_reading - outputs["Y"]).max() > 0.1


LAYOUT_CASES = {
    "forward": {},
    "reverse_state_clip": {"direction": "reverse", "initial_h": True, "clip": 0.7},
    "bidirectional_lens": {"direction": "bidirectional", "sequence_lens": True, "initial_h": True},
}


@pytest.mark.parametrize("case", LAYOUT_CASES)
@pytest.mark.parametrize("node", NODES)
def test_layout_1_equals_layout_0_on_transposed_tensors(node, case):
    config = gru_or_rnn(node, layout=1, seed=7, **LAYOUT_CASES[case])
    model, feeds = make_onnx_recurrent(config)
    reference_model, reference_feeds = make_onnx_recurrent(replace(config, layout=0))
    expected = run_onnxruntime(reference_model, reference_feeds)
    outputs = run_module(import_onnx(model), feeds)
    assert_close_f32(outputs["Y"], expected["Y"].transpose(2, 0, 1, 3), "Y")
    assert_close_f32(outputs["Y_h"], expected["Y_h"].transpose(1, 0, 2), "Y_h")


@pytest.mark.parametrize("node", NODES)
def test_float64_agrees_with_float32(node):
    model, feeds = make_onnx_recurrent(gru_or_rnn(node, direction="bidirectional", sequence_lens=True, clip=0.8))
    module = import_onnx(model)
    wide = run_module(module, feeds, dtype=np.float64)
    assert wide["Y"].dtype == np.float64
    for name, want in wide.items():
        assert_close_f32(run_module(module, feeds)[name], want, name)


def test_gru_weights_become_attributes():
    config = OnnxRecurrent(op_type="GRU", direction="bidirectional", sequence_lens=True, initial_h=True, clip=0.5,
                           linear_before_reset=1, outputs=("Y", "Y_h"))
    model, feeds = make_onnx_recurrent(config)
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    module = import_onnx(model)
    assert not module.ops_of("const")
    (gru,) = module.ops
    assert (gru.kind, gru.loc) == ("gru", "gru")
    assert [v.name for v in gru.operands] == ["X", "sequence_lens", "initial_h"]
    assert all(isinstance(m, DenseMap) for m in gru.attrs["w"] + gru.attrs["r"])
    for d in range(2):
        np.testing.assert_array_equal(gru.attrs["w"][d].to_dense(), arrays["W"][d])
        np.testing.assert_array_equal(gru.attrs["r"][d].to_dense(), arrays["R"][d])
    np.testing.assert_array_equal(gru.attrs["bias"], arrays["B"])
    assert (gru.attrs["linear_before_reset"], gru.attrs["clip"], gru.attrs["activations"]) == (1, 0.5, None)
    assert [str(v.type) for v in gru.results] == ["f32[4,2,3,6]", "f32[2,3,6]"]


def test_rnn_omitted_inputs_are_absent_operands():
    (rnn,) = import_onnx(make_onnx_recurrent(OnnxRecurrent(op_type="RNN", initial_h=True, bias=False,
                                                           outputs=("Y", "Y_h")))[0]).ops
    assert rnn.kind == "rnn" and rnn.operands[1] is None and rnn.operands[2].name == "initial_h"
    assert rnn.attrs["bias"] is None


# --- what the importer refuses --------------------------------------------------------------


def import_error(config: OnnxRecurrent) -> str:
    with pytest.raises(FrontendError) as info:
        import_onnx(make_onnx_recurrent(config)[0])
    message = str(info.value)
    assert "\n" not in message and f"node '{config.op_type.lower()}' ({config.op_type})" in message
    return message


@pytest.mark.parametrize("op_type", ["GRU", "RNN"])
def test_weights_fed_as_inputs_are_refused(op_type):
    message = import_error(OnnxRecurrent(op_type=op_type, weights_as_inputs=True, outputs=("Y",)))
    assert "input 'W' must be an initializer or a Constant output" in message


def test_wrong_number_of_activations_says_how_many():
    message = import_error(OnnxRecurrent(op_type="GRU", direction="bidirectional", activations=("Sigmoid", "Tanh"),
                                         outputs=("Y",)))
    assert "needs 4 activations (f, g per direction), got 2" in message
    message = import_error(OnnxRecurrent(op_type="RNN", activations=("Tanh", "Tanh"), outputs=("Y",)))
    assert "needs 1 activations (f per direction), got 2" in message


def test_unknown_activation_and_bad_linear_before_reset():
    assert "activation 'Gelu' is not supported" in import_error(
        OnnxRecurrent(op_type="GRU", activations=("Sigmoid", "Gelu"), outputs=("Y",)))
    assert "linear_before_reset must be 0 or 1, got 2" in import_error(
        OnnxRecurrent(op_type="GRU", linear_before_reset=2, outputs=("Y",)))


def test_w_with_the_wrong_number_of_gate_rows_is_named():
    model, _ = make_onnx_recurrent(OnnxRecurrent(op_type="GRU", outputs=("Y",)))
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.CopyFrom(numpy_helper.from_array(np.zeros((1, 12, 5), np.float32), "W"))
    with pytest.raises(FrontendError, match=r"W has shape \[1, 12, 5\], expected \[1, 18, input_size\]"):
        import_onnx(model, raising=False)


def test_constant_node_weights_are_read_like_initializers():
    """W, R and B given by Constant nodes (what some exporters write) import alike."""
    model, feeds = make_onnx_recurrent(OnnxRecurrent(op_type="GRU", linear_before_reset=1, outputs=("Y", "Y_h")))
    graph = model.graph
    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in graph.initializer]
    del graph.initializer[:]
    graph.node.insert(0, constants[0])
    for node in constants[1:]:
        graph.node.insert(0, node)
    expected = run_onnxruntime(model, feeds)
    outputs = run_module(import_onnx(model), feeds)
    for name, want in expected.items():
        assert_close_f32(outputs[name], want, name)


# --- PyTorch nn.GRU / nn.RNN -------------------------------------------------------------


def torch_reference(config: TorchRecurrent, x: np.ndarray) -> list[np.ndarray]:
    """What the torch module itself computes on ``x`` (outputs as the export orders them)."""
    with torch.no_grad():
        outputs = torch_classifier(config)(torch.as_tensor(x))
    return [t.numpy() for t in (outputs if isinstance(outputs, tuple) else (outputs,))]


def dynamo_defaults(cell: str) -> TorchRecurrent:
    """torch 2.13's default exporter at a size where it computes weights in the graph."""
    return TorchRecurrent(cell=cell, exporter="dynamo", opset=18, input_size=40, hidden_size=64, num_layers=2,
                          bidirectional=True, batch_first=True, head="linear", dynamic=False)


def assert_computes_what_torch_does(module, path, config: TorchRecurrent, x: np.ndarray) -> None:
    """The module on ``x`` equals torch's module and onnxruntime on the exported file."""
    outputs = run_module(module, {"x": x})
    for got, torch_value, (name, ort_value) in zip(outputs.values(), torch_reference(config, x),
                                                   run_onnxruntime(path, {"x": x}).items()):
        assert_close_f32(got, torch_value, f"{name} vs torch")
        assert_close_f32(got, ort_value, f"{name} vs onnxruntime")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(cell=st.sampled_from(["gru", "rnn_tanh", "rnn_relu"]), layers=st.integers(1, 2),
       bidirectional=st.booleans(), batch_first=st.booleans(), head=st.sampled_from(["none", "softmax"]),
       sizes=st.tuples(st.integers(1, 7), st.integers(1, 9)), seed=st.integers(0, 1000))
def test_torch_exports_match_torch_and_onnxruntime(tmp_path, cell, layers, bidirectional, batch_first, head,
                                                    sizes, seed):
    """Each ``nn.GRU`` (``linear_before_reset=1`` as torch exports it) and ``nn.RNN`` layer
    is one IR op; the module computes what torch does, and what onnxruntime does on the file."""
    input_size, hidden = sizes
    config = TorchRecurrent(cell=cell, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                            head=head, input_size=input_size, hidden_size=hidden, seed=seed)
    path = export_torch_recurrent(config, tmp_path)
    module = import_onnx(path)
    kind = "gru" if cell == "gru" else "rnn"
    assert len(module.ops_of(kind)) == layers and not module.ops_of("lstm")
    if cell == "gru":
        assert all(op.attrs["linear_before_reset"] == 1 for op in module.ops_of("gru"))
    rng = np.random.default_rng(seed)
    for batch, seq in [(2, 4), (3, 1)]:
        assert_computes_what_torch_does(module, path, config,
                                        rng.standard_normal(config.input_shape(batch, seq)).astype(np.float32))


def test_torch_gru_weights_are_torchs_with_gates_reordered(tmp_path):
    """torch orders GRU gates r, z, n; ONNX z, r, h: the exporter reorders them and the
    imported maps are torch's weights in ONNX order."""
    config = TorchRecurrent(cell="gru", head="none")
    (gru,) = import_onnx(export_torch_recurrent(config, tmp_path)).ops_of("gru")
    layer = torch_classifier(config).recurrent
    r, z, n = np.split(layer.weight_ih_l0.detach().numpy(), 3)
    np.testing.assert_array_equal(gru.attrs["w"][0].to_dense(), np.concatenate([z, r, n]))
    r, z, n = np.split(layer.weight_hh_l0.detach().numpy(), 3)
    np.testing.assert_array_equal(gru.attrs["r"][0].to_dense(), np.concatenate([z, r, n]))


def test_gru_weights_torch_computes_in_the_graph_are_folded_like_an_lstms(torch_export):
    """The dynamo exporter writes a GRU's W, R and B above 8192 elements as
    Slice/Concat/Unsqueeze chains over initializers (the gate reordering); the importer
    folds them as it does an LSTM's, so each layer is one gru op."""
    config = dynamo_defaults("gru")
    path = torch_export(config)
    module = import_onnx(path)
    assert len(module.ops_of("gru")) == 2 and not module.ops_of("host")
    assert_computes_what_torch_does(module, path, config, np.random.default_rng(3).standard_normal(
        config.input_shape(2, 4)).astype(np.float32))


def test_rnn_unrolled_by_the_dynamo_exporter_stays_generic(torch_export):
    """The dynamo exporter writes ``nn.RNN`` unrolled over time (the input projection of
    the whole sequence, then per step an activation of sums), not as an ONNX RNN node;
    that is imported as the generic ops it is (no ``rnn`` op: unrolled RNN cells are not
    raised), and computes what torch does.  The TorchScript exporter writes the RNN node
    (``test_torch_exports_match_torch_and_onnxruntime``)."""
    config = dynamo_defaults("rnn_relu")
    path = torch_export(config)
    module = import_onnx(path)
    assert not module.ops_of("rnn") and not module.ops_of("host") and module.ops_of("relu")
    assert_computes_what_torch_does(module, path, config, np.random.default_rng(3).standard_normal(
        config.input_shape(2, 4)).astype(np.float32))
