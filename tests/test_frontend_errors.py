"""Bad input to the ONNX frontend: every failure is a one-line ``FrontendError`` that
names the file (or model) and, where there is one, the node and its op type."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models import OnnxRecurrent, make_model, make_onnx_recurrent
from tensorgate.errors import FrontendError, TensorgateError
from tensorgate.frontend import import_onnx

F = TensorProto.FLOAT


def error_of(source, *fragments: str) -> str:
    with pytest.raises(FrontendError) as info:
        import_onnx(source)
    message = str(info.value)
    assert isinstance(info.value, TensorgateError)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def lstm_file(tmp_path):
    path = tmp_path / "lstm.onnx"
    onnx.save(make_onnx_recurrent(OnnxRecurrent())[0], path)
    return path


# --- files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    error_of(tmp_path / "absent.onnx", "absent.onnx", "no such file")


def test_directory(tmp_path):
    error_of(tmp_path, str(tmp_path), "not a file")


def test_text_file_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf\n")
    error_of(path, str(path), "not an ONNX model")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    error_of(path, str(path), "not an ONNX model")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_protobuf(lstm_file, fraction):
    data = lstm_file.read_bytes()
    lstm_file.write_bytes(data[:int(len(data) * fraction)])
    error_of(lstm_file, str(lstm_file))


def test_missing_external_data(tmp_path):
    model, _ = make_onnx_recurrent(OnnxRecurrent())
    path = tmp_path / "lstm.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="lstm.weights", size_threshold=0)
    (tmp_path / "lstm.weights").unlink()
    error_of(path, str(path), "external data")


# --- invalid models --------------------------------------------------------------------------


def relu_graph(**node_attrs):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="act", **node_attrs)]
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2])],
                             [helper.make_tensor_value_info("y", F, [2])])


def test_model_failing_the_checker(tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(relu_graph(alpha=1.0), opset_imports=[helper.make_opsetid("", 17)]), path)
    error_of(path, str(path), "fails the ONNX checker", "alpha")


def test_node_reading_an_undefined_value():
    nodes = [helper.make_node("Relu", ["ghost"], ["y"], name="act")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2])],
                              [helper.make_tensor_value_info("y", F, [2])])
    error_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
             "model 'g'", "fails the ONNX checker", "'ghost'")


def test_model_failing_shape_inference():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="sum")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", F, [2, 3]),
                                           helper.make_tensor_value_info("b", F, [4, 5])],
                              [helper.make_tensor_value_info("y", F, [2, 3])])
    error_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
             "model 'g'", "shape inference failed")


# --- what the importer does not support -------------------------------------------------------


def one_node_model(op_type, inputs=("x",), input_shape=(2, 3), output_shape=(2, 3), inits=None,
                   opset=22, domain="", **attrs):
    nodes = [helper.make_node(op_type, list(inputs), ["y"], name="the_node", domain=domain, **attrs)]
    model = make_model(nodes, [("x", F, list(input_shape))], [("y", F, list(output_shape))], inits or {},
                       opset=opset)
    return model


def test_unsupported_op_names_node_and_op(tmp_path):
    path = tmp_path / "op.onnx"
    onnx.save(one_node_model("Hardmax"), path)
    error_of(path, str(path), "node 'the_node' (Hardmax)", "op type Hardmax is not supported")


def test_custom_domain_op():
    nodes = [helper.make_node("Fancy", ["x"], ["y"], name="the_node", domain="com.example")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2])],
                              [helper.make_tensor_value_info("y", F, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    error_of(model, "node 'the_node' (com.example.Fancy)", "domain 'com.example'")


def test_unnamed_node_is_named_by_type_and_position():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Hardmax", ["r"], ["y"])]
    model = make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])])
    error_of(model, "node 'Hardmax_1' (Hardmax)")


def test_unsupported_attribute():
    node = helper.make_node("Constant", [], ["y"], name="the_node", value_string="hello")
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.STRING, [])])
    error_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
             "node 'the_node' (Constant)", "attribute 'value_string' is not supported")


def test_unsupported_lstm_activation(tmp_path):
    path = tmp_path / "act.onnx"
    onnx.save(make_onnx_recurrent(OnnxRecurrent(activations=("Sigmoid", "Swish", "Tanh")))[0], path)
    error_of(path, str(path), "node 'lstm' (LSTM)", "activation 'Swish'")


def test_lstm_weights_that_are_not_constant():
    error_of(make_onnx_recurrent(OnnxRecurrent(weights_as_inputs=True))[0], "node 'lstm' (LSTM)", "'W'")


def test_cast_to_unsupported_type():
    model = one_node_model("Cast", to=TensorProto.FLOAT16)
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    error_of(model, "node 'the_node' (Cast)", "FLOAT16")


def test_graph_input_of_unsupported_type():
    nodes = [helper.make_node("Cast", ["x"], ["y"], name="the_node", to=F)]
    model = make_model(nodes, [("x", TensorProto.FLOAT16, [2])], [("y", F, [2])])
    error_of(model, "graph input 'x'", "FLOAT16")


def test_slice_bounds_that_are_not_constant():
    nodes = [helper.make_node("Shape", ["x"], ["n"]),
             helper.make_node("Slice", ["x", "zero", "n"], ["y"], name="the_node")]
    model = make_model(nodes, [("x", F, ["n"])], [("y", F, ["n"])], {"zero": np.array([0])})
    error_of(model, "node 'the_node' (Slice)", "'ends'", "must be an initializer or a Constant")


def test_slice_that_numpy_would_clamp_differently_on_a_symbolic_dim():
    model = one_node_model("Slice", inputs=("x", "s", "e", "a", "st"), input_shape=("n",), output_shape=(None,),
                           inits={"s": np.array([-3]), "e": np.array([-10]), "a": np.array([0]),
                                  "st": np.array([-1])})
    error_of(model, "node 'the_node' (Slice)", "dim 'n'")


def test_softmax_before_opset_13_over_several_axes():
    model = one_node_model("Softmax", opset=12, axis=0)
    error_of(model, "node 'the_node' (Softmax)", "only the last axis")


def test_op_version_older_than_supported():
    model = one_node_model("Slice", opset=9, starts=[0], ends=[1], axes=[1], output_shape=(2, 1))
    error_of(model, "node 'the_node' (Slice)", "version 1", "needs version 10")


def test_split_of_a_symbolic_dim_without_sizes():
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], name="the_node", axis=0)]
    model = make_model(nodes, [("x", F, ["n", 2])], [("a", F, [None, 2]), ("b", F, [None, 2])])
    error_of(model, "node 'the_node' (Split)", "dim 'n'")


def test_identity_from_graph_input_to_graph_output():
    error_of(one_node_model("Identity"), "node 'the_node' (Identity)", "graph output 'y'")


@pytest.mark.parametrize("clip", [0.0, -1.5])
def test_lstm_clip_must_be_positive(clip):
    error_of(make_onnx_recurrent(OnnxRecurrent(clip=clip))[0], "node 'lstm' (LSTM)",
             f"clip must be positive, got {clip}")


def test_lstm_bias_must_hold_both_onnx_biases():
    model = make_onnx_recurrent(OnnxRecurrent())[0]
    bias = next(t for t in model.graph.initializer if t.name == "B")
    halved = onnx.numpy_helper.to_array(bias)[:, : bias.dims[1] // 2]
    bias.CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(halved), "B"))
    error_of(model, "node 'lstm' (LSTM)", "B has shape", "(Wb then Rb)")
