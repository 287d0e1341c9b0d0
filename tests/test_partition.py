"""Real-model patterns through the importer: a model is split into tensorgate regions
(the recurrent core and the ops the IR models around it) and host regions (run by
onnxruntime); weights computed from constants are folded, ``If`` on a bound input takes
its branch, wrong declared output shapes are not followed, written-out cells are raised.
Every model is compared with onnxruntime on the original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from host_models import (VadLike, lstm_in_loop, vad_feeds, vad_like, with_custom_nodes, written_cell,
                         wrong_output_shape)
from models import assert_close_f32, make_model, run_onnxruntime
from tensorgate.errors import FrontendError
from tensorgate.frontend import import_onnx
from tensorgate.frontend.macs import node_macs
from tensorgate.frontend.partition import plan_partition
from tensorgate.interpreter import run_module
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.stats import partition_regions
from tensorgate.ir.verifier import verify_module
from tensorgate.onnx_form.host import region_op_counts

F = onnx.TensorProto.FLOAT


def check_against_onnxruntime(model, module, feeds, reference_feeds=None):
    expected = run_onnxruntime(model, reference_feeds or feeds)
    actual = run_module(module, feeds)
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert_close_f32(actual[name], expected[name], name)


def host_op_types(module) -> list[dict[str, int]]:
    return [region_op_counts(op) for op in module.ops_of("host")]


@pytest.mark.parametrize("case", [VadLike(), VadLike(computed_weights=True), VadLike(batch=2, stride=3)])
def test_conv_front_end_is_hosted_and_the_lstm_compiled(case):
    model = vad_like(case)
    module = import_onnx(model)
    (lstm,) = module.ops_of("lstm")
    assert lstm.attrs["w"][0].format == "dense"
    front, head = host_op_types(module)
    assert front == {"Conv": 2, "Slice": 2, "Pow": 2, "Add": 1, "Pad": 1, "Sqrt": 1, "Unsqueeze": 1}
    assert head == {"Conv": 1, "ReduceMean": 1, "Sigmoid": 1}
    assert {op.kind for op in module.ops} >= {"gather", "concat", "relu", "transpose"}
    check_against_onnxruntime(model, module, vad_feeds(case))


def test_host_regions_and_partition_macs():
    case = VadLike()
    module = import_onnx(vad_like(case))
    kinds = [(r.kind, r.macs) for r in partition_regions(module)]
    steps, frames, channels, hidden = case.steps, case.frames, case.channels, case.hidden
    stft = steps * 2 * frames * case.kernel
    encoder = steps * channels * frames * 3
    assert kinds == [("host", stft + encoder), ("tensorgate", steps * 4 * hidden * (channels + hidden)),
                     ("host", hidden)]


def test_computed_weights_are_folded_like_initializers():
    plain, computed = (import_onnx(vad_like(VadLike(computed_weights=flag))) for flag in (False, True))
    (a,), (b,) = plain.ops_of("lstm"), computed.ops_of("lstm")
    for key in ("w", "r"):
        assert np.array_equal(a.attrs[key][0].to_dense(), b.attrs[key][0].to_dense())


def test_if_on_a_bound_input_takes_its_branch():
    case = VadLike(branch_on_sr=True, computed_weights=True)
    model = vad_like(case)
    module = import_onnx(model, bind={"sr": 16000})
    assert [v.name for v in module.inputs] == ["input", "state"]
    assert len(module.ops_of("lstm")) == 1
    assert not any("If" in ops for ops in host_op_types(module))
    feeds = vad_feeds(case)
    check_against_onnxruntime(model, module, feeds, {**feeds, "sr": np.array(16000)})
    other = import_onnx(model, bind={"sr": 8000})
    check_against_onnxruntime(model, other, feeds, {**feeds, "sr": np.array(8000)})
    assert not np.array_equal(other.ops_of("lstm")[0].attrs["w"][0].to_dense(),
                              module.ops_of("lstm")[0].attrs["w"][0].to_dense())


def test_if_on_an_unbound_input_is_refused_with_the_input_to_bind():
    message = refusal(vad_like(VadLike(branch_on_sr=True)))
    assert "node 'by_rate' (If)" in message and "holds LSTM" in message and "input(s) sr: --bind" in message


def test_binding_checks_the_name_and_the_value():
    model = vad_like(VadLike(branch_on_sr=True))
    with pytest.raises(FrontendError, match=r"--bind rate: the model has no input 'rate' \(its inputs: input, "
                                            r"state, sr\)"):
        import_onnx(model, bind={"rate": 1})
    with pytest.raises(FrontendError, match=r"--bind sr: shape \[2\] does not fit the declared \[\]"):
        import_onnx(model, bind={"sr": [16000, 8000]})
    with pytest.raises(FrontendError, match=r"--shape input: shape \[1, 3, 4\] does not fit the declared \[1,28\]"):
        import_onnx(model, bind={"sr": 16000}, shapes={"input": [1, 3, 4]})


def test_fixed_input_shapes_make_every_type_static():
    module = import_onnx(wrong_output_shape(), shapes={"x": [5, 1, 6]})
    assert all(v.type.is_static for v in module.values())
    assert str(module.outputs[0].type) == "f32[5,1,7]"


def test_wrong_declared_output_shape_is_not_followed_and_warned_about():
    model = wrong_output_shape()
    module = import_onnx(model)
    assert module.warnings == ["graph output 'probs' is declared f32[1,seqlen] but the graph computes "
                               "f32[width,1,7]; following the graph, as onnxruntime does"]
    x = np.random.default_rng(0).standard_normal((4, 1, 6)).astype(np.float32)
    check_against_onnxruntime(model, module, {"x": x})


def test_declared_dims_fill_in_what_the_graph_leaves_unknown():
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["y"])]
    model = make_model(nodes, [("x", F, ["batch", 3])], [("y", F, ["batch", 3])], {"rows": np.array([-1, 3])})
    module = import_onnx(model)
    assert str(module.outputs[0].type) == "f32[batch,3]" and not module.warnings


def test_written_out_cell_applied_once_is_raised():
    model = written_cell()
    module = import_onnx(model)
    (lstm,) = module.ops_of("lstm")
    assert lstm.operands[0].type.shape[0] == 1 and not module.notes
    assert not module.ops_of("sigmoid") and not module.ops_of("linear")
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((2, 6)).astype(np.float32),
             "state": rng.standard_normal((2, 2, 5)).astype(np.float32)}
    check_against_onnxruntime(model, module, feeds)


def refusal(model, **options) -> str:
    """The one-line message ``import_onnx`` refuses ``model`` with."""
    with pytest.raises(FrontendError) as info:
        import_onnx(model, **options)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_recurrent_op_in_a_loop_with_a_dynamic_trip_count_is_refused_with_the_reason():
    message = refusal(lstm_in_loop())
    assert "tensorgate compiles nothing" in message
    assert "node 'repeat' (Loop)" in message and "its body holds LSTM" in message


def test_every_node_onnxruntime_cannot_run_is_listed_at_once():
    message = refusal(with_custom_nodes())
    assert "2 node(s) that neither tensorgate nor onnxruntime can run" in message
    assert "node 'denoise' (com.example.Denoise)" in message and "node 'decode' (com.example.Decode)" in message


def lstm_with_head(scaled_weights: bool):
    """LSTM -> MatMul -> Hardmax; with ``scaled_weights`` W is scaled by an input at run time."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((1, 12, 4)).astype(np.float32),
             "r": rng.standard_normal((1, 12, 3)).astype(np.float32),
             "head": rng.standard_normal((3, 2)).astype(np.float32)}
    nodes = [helper.make_node("Mul", ["w", "scale"], ["w_scaled"], name="scaling")] if scaled_weights else []
    nodes += [helper.make_node("LSTM", ["x", "w_scaled" if scaled_weights else "w", "r"], ["", "h"], name="lstm",
                               hidden_size=3),
              helper.make_node("MatMul", ["h", "head"], ["logits"], name="head"),
              helper.make_node("Hardmax", ["logits"], ["y"], name="argmax", axis=-1)]
    inputs = [("x", F, [2, 1, 4])] + ([("scale", F, [])] if scaled_weights else [])
    model = make_model(nodes, inputs, [("y", F, [1, 1, 2])], inits)
    feeds = {"x": rng.standard_normal((2, 1, 4)).astype(np.float32)}
    return model, {**feeds, "scale": np.array(0.5, np.float32)} if scaled_weights else feeds


def test_an_unsupported_head_is_hosted():
    model, feeds = lstm_with_head(scaled_weights=False)
    module = import_onnx(model)
    assert [op.kind for op in module.ops if op.kind != "const"] == ["lstm", "linear", "host"]
    assert host_op_types(module) == [{"Hardmax": 1}] and not module.warnings
    check_against_onnxruntime(model, module, feeds)


def test_a_recurrent_op_left_to_onnxruntime_is_warned_about():
    model, feeds = lstm_with_head(scaled_weights=True)
    module = import_onnx(model)
    assert [op.kind for op in module.ops if op.kind != "const"] == ["host", "linear", "host"]
    assert module.warnings == ["recurrent op 'lstm' (LSTM) is not compiled, it runs in onnxruntime: node 'lstm' "
                               "(LSTM): input 'W' ('w_scaled') must be an initializer or a Constant output"]
    check_against_onnxruntime(model, module, feeds)


def test_host_op_text_round_trips_and_verifies():
    module = import_onnx(vad_like(VadLike()))
    text = print_module(module, "w.npz")
    assert text.count(" = host(") == 2
    again = parse_module(text, module_tensors(module))
    verify_module(again)
    assert print_module(again, "w.npz") == text
    feeds = vad_feeds(VadLike())
    for name, array in run_module(again, feeds).items():
        assert np.array_equal(array, run_module(module, feeds)[name])


@pytest.mark.parametrize("edit, message", [
    (lambda op: op.attrs.update(model=op.attrs["model"].astype(np.int64)), "must be the serialized ONNX model"),
    (lambda op: op.operands.pop(), "the region takes 1 inputs, the op has 0 operands"),
    (lambda op: op.attrs.update(inputs=[{"name": "input", "type": "f32[1,99]"}]), "takes f32[1,99]"),
    (lambda op: op.attrs.update(outputs=[{"name": "x", "type": "f32[1,2,3]"}]), "has type"),
    (lambda op: op.attrs.update(inputs=[{"name": "input"}]), "list of {name, type} entries"),
    (lambda op: op.attrs.update(macs=-3), "attribute 'macs'"),
])
def test_verifier_checks_the_host_signature(edit, message):
    from tensorgate.errors import VerifyError

    module = import_onnx(vad_like(VadLike()))
    edit(module.ops_of("host")[0])
    with pytest.raises(VerifyError, match=message.replace("[", r"\[").replace("{", r"\{")):
        verify_module(module)


def test_model_without_unsupported_ops_is_not_partitioned():
    model = wrong_output_shape()
    partition = plan_partition(model.graph, set())
    assert not partition.regions and len(partition.compiled) == len(model.graph.node)


def test_macs_of_host_nodes():
    shapes = {"x": (1, 2, 10), "w": (4, 1, 3), "y": (1, 4, 8), "a": (5, 6), "b": (6, 7), "ab": (5, 7)}
    conv = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
    assert node_macs(conv, shapes.get) == 4 * 8 * 1 * 3
    assert node_macs(helper.make_node("MatMul", ["a", "b"], ["ab"]), shapes.get) == 5 * 7 * 6
    assert node_macs(helper.make_node("Einsum", ["a", "b"], ["ab"], equation="ij,jk->ik"), shapes.get) == 210
    assert node_macs(helper.make_node("Relu", ["a"], ["r"]), shapes.get) == 0
    assert node_macs(helper.make_node("MatMul", ["a", "unknown"], ["ab"]), shapes.get) is None
