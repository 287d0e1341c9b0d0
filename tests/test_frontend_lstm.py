"""Hand-built ONNX LSTMs through the importer and the NumPy runtime, against
onnxruntime: every direction, optional input, attribute and output subset, and
layout 1 (which onnxruntime refuses: compared against the same LSTM in layout 0 with
transposed tensors, and against onnx's reference evaluator)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from models import OnnxRecurrent, assert_close_f32, make_onnx_recurrent, run_onnxruntime
from tensorgate.errors import FrontendError
from tensorgate.frontend import import_onnx
from tensorgate.ir import DenseMap
from tensorgate.interpreter import run_module

FEATURES = {
    "defaults": {},
    "no_bias": {"bias": False},
    "peepholes": {"peepholes": True},
    "clip": {"clip": 0.6},
    "input_forget": {"input_forget": 1},
    "sequence_lens": {"sequence_lens": True},
    "initial_h": {"initial_h": True},
    "initial_c": {"initial_c": True},
    "everything": {"peepholes": True, "clip": 0.9, "input_forget": 1, "sequence_lens": True,
                   "initial_h": True, "initial_c": True},
}


def compare_with_onnxruntime(config: OnnxRecurrent) -> dict:
    model, feeds = make_onnx_recurrent(config)
    expected = run_onnxruntime(model, feeds)
    module = import_onnx(model)
    assert [v.name for v in module.outputs] == list(expected)
    outputs = run_module(module, feeds)
    for name, want in expected.items():
        assert_close_f32(outputs[name], want, name)
    return outputs


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("feature", FEATURES)
def test_lstm_matches_onnxruntime(direction, feature):
    seed = list(FEATURES).index(feature) + 100 * ["forward", "reverse", "bidirectional"].index(direction)
    compare_with_onnxruntime(OnnxRecurrent(direction=direction, seed=seed, **FEATURES[feature]))


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y", "Y_c"), ("Y_h", "Y_c")])
def test_any_subset_of_outputs(outputs):
    config = OnnxRecurrent(outputs=outputs, direction="bidirectional", sequence_lens=True)
    got = compare_with_onnxruntime(config)
    assert list(got) == list(outputs)


@pytest.mark.parametrize("activations, alpha, beta", [
    (("HardSigmoid", "Softsign", "ScaledTanh"), (0.3, 0.9), (0.4, 1.1)),
    (("Sigmoid", "LeakyRelu", "Softplus"), (0.05,), None),
    (("sigmoid", "TANH", "Elu", "Affine", "Relu", "Tanh"), (0.7, 0.5), (0.2,)),
])
def test_non_default_activations(activations, alpha, beta):
    """Names match without regard to case, as in onnxruntime; alpha/beta pass through."""
    direction = "bidirectional" if len(activations) == 6 else "forward"
    config = OnnxRecurrent(direction=direction, activations=activations, activation_alpha=alpha,
                      activation_beta=beta, clip=3.0)
    compare_with_onnxruntime(config)


@pytest.mark.parametrize("sizes", [(1, 1, 1, 1), (7, 2, 13, 1), (3, 5, 1, 11)])
def test_odd_sizes(sizes):
    seq, batch, input_size, hidden = sizes
    compare_with_onnxruntime(OnnxRecurrent(seq=seq, batch=batch, input_size=input_size, hidden_size=hidden,
                                      direction="bidirectional", initial_c=True, peepholes=True))


def test_hidden_size_comes_from_r_when_the_attribute_is_absent():
    """ONNX makes hidden_size optional; onnxruntime insists on it, the reference
    evaluator reads it from R as we do."""
    model, feeds = make_onnx_recurrent(OnnxRecurrent(hidden_size_attr=False, hidden_size=4, initial_h=True))
    module = import_onnx(model)
    assert module.ops_of("lstm")[0].attrs["hidden_size"] == 4
    outputs = run_module(module, feeds)
    for name, want in zip(["Y", "Y_h", "Y_c"], ReferenceEvaluator(model).run(None, feeds)):
        assert_close_f32(outputs[name], want, name)


def test_weights_become_lstm_attributes():
    config = OnnxRecurrent(direction="bidirectional", peepholes=True, sequence_lens=True, initial_h=True,
                      initial_c=True, clip=0.5, input_forget=1)
    model, feeds = make_onnx_recurrent(config)
    arrays = {init.name: init for init in model.graph.initializer}
    module = import_onnx(model)
    assert not module.ops_of("const"), "W/R/B/P must not also become const ops"
    (lstm,) = module.ops
    assert lstm.loc == "lstm"
    assert [v.name for v in module.inputs] == list(feeds)
    assert [v.name for v in lstm.operands] == ["X", "sequence_lens", "initial_h", "initial_c"]
    w, r = numpy_helper.to_array(arrays["W"]), numpy_helper.to_array(arrays["R"])
    assert all(isinstance(m, DenseMap) for m in lstm.attrs["w"] + lstm.attrs["r"])
    for d in range(2):
        np.testing.assert_array_equal(lstm.attrs["w"][d].to_dense(), w[d])
        np.testing.assert_array_equal(lstm.attrs["r"][d].to_dense(), r[d])
    np.testing.assert_array_equal(lstm.attrs["bias"], numpy_helper.to_array(arrays["B"]))
    np.testing.assert_array_equal(lstm.attrs["peepholes"], numpy_helper.to_array(arrays["P"]))
    assert (lstm.attrs["direction"], lstm.attrs["clip"], lstm.attrs["input_forget"]) == ("bidirectional", 0.5, 1)
    assert lstm.attrs["activations"] is None
    assert [str(v.type) for v in lstm.results] == ["f32[4,2,3,6]", "f32[2,3,6]", "f32[2,3,6]"]


def test_omitted_inputs_are_absent_operands():
    config = OnnxRecurrent(initial_c=True, bias=False)
    (lstm,) = import_onnx(make_onnx_recurrent(config)[0]).ops
    assert lstm.operands[1:] == [None, None, lstm.operands[3]] and lstm.operands[3].name == "initial_c"
    assert lstm.attrs["bias"] is None and lstm.attrs["peepholes"] is None


LAYOUT_CASES = {
    "forward": {},
    "reverse_states_peepholes": {"direction": "reverse", "initial_h": True, "initial_c": True, "peepholes": True},
    "bidirectional_lens_clip": {"direction": "bidirectional", "sequence_lens": True, "clip": 0.7,
                                "initial_h": True, "input_forget": 1},
}


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_layout_1_equals_layout_0_on_transposed_tensors(case):
    """onnxruntime refuses layout 1, so the reference is the layout-0 LSTM with the same
    weights run by onnxruntime, its inputs and outputs transposed (batch first)."""
    config = OnnxRecurrent(layout=1, seed=7, **LAYOUT_CASES[case])
    model, feeds = make_onnx_recurrent(config)
    reference_model, reference_feeds = make_onnx_recurrent(replace(config, layout=0))
    expected = run_onnxruntime(reference_model, reference_feeds)
    outputs = run_module(import_onnx(model), feeds)
    assert_close_f32(outputs["Y"], expected["Y"].transpose(2, 0, 1, 3), "Y")
    assert_close_f32(outputs["Y_h"], expected["Y_h"].transpose(1, 0, 2), "Y_h")
    assert_close_f32(outputs["Y_c"], expected["Y_c"].transpose(1, 0, 2), "Y_c")


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_layout_1_matches_onnx_reference_evaluator(direction):
    """The reference evaluator runs layout 1 but ignores clip, input_forget,
    sequence_lens and activations, so only the features it implements are used."""
    config = OnnxRecurrent(layout=1, direction=direction, initial_h=True, initial_c=True, peepholes=True)
    model, feeds = make_onnx_recurrent(config)
    expected = dict(zip(["Y", "Y_h", "Y_c"], ReferenceEvaluator(model).run(None, feeds)))
    outputs = run_module(import_onnx(model), feeds)
    for name, want in expected.items():
        assert_close_f32(outputs[name], want, name)


# --- what the importer refuses --------------------------------------------------------------


def import_error(config: OnnxRecurrent) -> str:
    with pytest.raises(FrontendError) as info:
        import_onnx(make_onnx_recurrent(config)[0])
    message = str(info.value)
    assert "\n" not in message and "node 'lstm' (LSTM)" in message
    return message


def test_weights_fed_as_inputs_are_refused():
    assert "input 'W' must be an initializer" in import_error(OnnxRecurrent(weights_as_inputs=True))


def test_unknown_activation_is_named():
    message = import_error(OnnxRecurrent(activations=("Sigmoid", "Gelu", "Tanh")))
    assert "activation 'Gelu' is not supported" in message


def test_wrong_number_of_activations():
    config = OnnxRecurrent(direction="bidirectional", activations=("Sigmoid", "Tanh", "Tanh"))
    assert "needs 6 activations" in import_error(config)


def test_unknown_direction():
    assert "direction 'sideways'" in import_error(OnnxRecurrent(direction="sideways"))
