"""The head and shape ops through the importer and the NumPy runtime, against
onnxruntime on small hand-built graphs, plus how each maps onto the IR (Gemm and
MatMul with a constant right operand become ``linear``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from models import assert_close_f32, make_model, run_onnxruntime
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module

F, I64 = TensorProto.FLOAT, TensorProto.INT64
INT64_MAX = np.iinfo(np.int64).max


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def check(model, feeds):
    """Import ``model``, run it, compare every output with onnxruntime; returns the module."""
    expected = run_onnxruntime(model, feeds)
    module = import_onnx(model)
    assert [v.name for v in module.outputs] == list(expected)
    outputs = run_module(module, feeds)
    for name, want in expected.items():
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(outputs[name], want, err_msg=name)
        else:
            assert_close_f32(outputs[name], want, name)
    return module


def node(op_type, inputs, outputs, **attrs):
    return helper.make_node(op_type, inputs, outputs, name=f"n_{outputs[0]}", **attrs)


def kinds(module):
    return [op.kind for op in module.ops]


# --- Gemm and MatMul ------------------------------------------------------------------------


def test_gemm_with_constant_b_is_one_linear_op():
    model = make_model([node("Gemm", ["a", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
                       [("a", F, ["batch", 6])], [("y", F, ["batch", 3])],
                       {"w": normal(3, 6, seed=1), "c": normal(3, seed=2)})
    module = check(model, {"a": normal(4, 6)})
    (linear,) = module.ops
    assert linear.kind == "linear" and linear.loc == "n_y"
    np.testing.assert_array_equal(linear.attrs["weight"].to_dense(), 0.5 * normal(3, 6, seed=1))
    np.testing.assert_array_equal(linear.attrs["bias"], 2.0 * normal(3, seed=2))


def test_gemm_trans_a_adds_a_transpose():
    model = make_model([node("Gemm", ["a", "w", "c"], ["y"], transA=1)],
                       [("a", F, [6, 4])], [("y", F, [4, 3])], {"w": normal(6, 3), "c": normal(1, 3)})
    assert kinds(check(model, {"a": normal(6, 4)})) == ["transpose", "linear"]


@pytest.mark.parametrize("c_shape", [[4, 3], [4, 1]])
def test_gemm_with_per_row_c_adds_it(c_shape):
    model = make_model([node("Gemm", ["a", "w", "c"], ["y"], beta=0.3)],
                       [("a", F, [4, 6])], [("y", F, [4, 3])], {"w": normal(6, 3), "c": normal(*c_shape)})
    assert kinds(check(model, {"a": normal(4, 6)})) == ["linear", "const", "add"]


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4), trans_a=st.booleans(),
       trans_b=st.booleans(), alpha=st.sampled_from([1.0, 0.5, -2.0]), beta=st.sampled_from([1.0, 0.0, 3.0]),
       c_kind=st.sampled_from(["none", "scalar", "row", "row2d", "column", "full"]),
       b_constant=st.booleans(), c_constant=st.booleans())
def test_gemm_any_form_matches_onnxruntime(m, k, n, trans_a, trans_b, alpha, beta, c_kind, b_constant, c_constant):
    a = normal(*((k, m) if trans_a else (m, k)), seed=1)
    b = normal(*((n, k) if trans_b else (k, n)), seed=2)
    c_shape = {"none": None, "scalar": [], "row": [n], "row2d": [1, n], "column": [m, 1], "full": [m, n]}[c_kind]
    arrays = {"a": a, "b": b} | ({} if c_shape is None else {"c": normal(*c_shape, seed=3)})
    constant = {"b": b_constant, "c": c_constant}
    inits = {name: arrays[name] for name in ("b", "c") if name in arrays and constant[name]}
    feeds = {name: array for name, array in arrays.items() if name not in inits}
    model = make_model(
        [node("Gemm", list(arrays), ["y"], transA=int(trans_a), transB=int(trans_b), alpha=alpha, beta=beta)],
        [(name, F, list(array.shape)) for name, array in feeds.items()], [("y", F, [m, n])], inits)
    module = check(model, feeds)
    assert ("linear" in kinds(module)) == b_constant


def test_matmul_with_constant_matrix_is_linear():
    model = make_model([node("MatMul", ["x", "w"], ["y"])], [("x", F, [2, 3, 4])], [("y", F, [2, 3, 5])],
                       {"w": normal(4, 5, seed=1)})
    module = check(model, {"x": normal(2, 3, 4)})
    (linear,) = module.ops
    assert linear.kind == "linear" and linear.attrs["bias"] is None
    np.testing.assert_array_equal(linear.attrs["weight"].to_dense(), normal(4, 5, seed=1).T)


@pytest.mark.parametrize("x_shape, w_shape, w_constant", [
    ([4], [4, 5], True),
    ([2, 3, 4], [2, 4, 5], True),
    ([3, 4], [4, 5], False),
    ([2, 3, 4], [4], False),
])
def test_matmul_other_forms(x_shape, w_shape, w_constant):
    w = normal(*w_shape, seed=1)
    out_shape = list(np.matmul(np.zeros(x_shape), np.zeros(w_shape)).shape)
    model = make_model([node("MatMul", ["x", "w"], ["y"])],
                       [("x", F, x_shape)] + ([] if w_constant else [("w", F, w_shape)]),
                       [("y", F, out_shape)], {"w": w} if w_constant else {})
    feeds = {"x": normal(*x_shape)} | ({} if w_constant else {"w": w})
    module = check(model, feeds)
    assert (module.ops[-1].kind == "linear") == (w_constant and len(w_shape) == 2)


# --- elementwise and normalization -----------------------------------------------------------


def test_elementwise_chain_with_broadcasting():
    nodes = [
        node("Add", ["x", "b"], ["s"]), node("Mul", ["s", "x"], ["p"]), node("Sub", ["p", "k"], ["d"]),
        node("Div", ["d", "k"], ["q"]), node("Relu", ["q"], ["r"]), node("Sigmoid", ["r"], ["g"]),
        node("Tanh", ["q"], ["t"]), node("Neg", ["t"], ["n"]), node("Exp", ["n"], ["e"]),
        node("Add", ["g", "e"], ["y"]),
    ]
    model = make_model(nodes, [("x", F, [2, 3, 4]), ("b", F, [4])], [("y", F, [2, 3, 4])],
                       {"k": np.array([[1.5], [-2.0], [0.5]], np.float32)})
    check(model, {"x": normal(2, 3, 4), "b": normal(4, seed=1)})


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_softmax_axes(op_type, axis):
    attrs = {} if axis is None else {"axis": axis}
    model = make_model([node(op_type, ["x"], ["y"], **attrs)], [("x", F, [2, 3, 4])], [("y", F, [2, 3, 4])])
    check(model, {"x": 3 * normal(2, 3, 4)})


def test_softmax_before_opset_13_on_the_last_axis():
    model = make_model([node("Softmax", ["x"], ["y"], axis=1)], [("x", F, [2, 5])], [("y", F, [2, 5])], opset=12)
    assert import_onnx(model).ops[0].attrs["axis"] == 1
    check(model, {"x": normal(2, 5)})


# --- indexing and shapes ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_slice_matches_onnxruntime(data, shape):
    axes = data.draw(st.permutations(range(len(shape))).map(lambda p: p[:data.draw(st.integers(1, len(shape)))]))
    bound = st.one_of(st.integers(-7, 7), st.sampled_from([INT64_MAX, -INT64_MAX]))
    steps = [data.draw(st.sampled_from([-3, -1, 1, 2])) for _ in axes]
    starts = [data.draw(bound) for _ in axes]
    ends = [data.draw(bound.filter(lambda end, step=step: step > 0 or end != INT64_MAX)) for step in steps]
    negative_axes = data.draw(st.booleans())
    axes_values = [a - len(shape) if negative_axes else a for a in axes]
    model = make_model([node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
                       [("x", F, shape)], [("y", F, [None] * len(shape))],
                       {"starts": np.array(starts), "ends": np.array(ends), "axes": np.array(axes_values),
                        "steps": np.array(steps)})
    check(model, {"x": normal(*shape)})


def test_slice_to_int64_max_with_negative_step_follows_the_onnx_spec():
    """The spec clamps an end of INT64_MAX to dim-1 for a negative step, so [0:MAX:-1] is
    empty; onnxruntime instead runs such a slice to the front.  We follow the spec, as
    onnx's reference evaluator does."""
    model = make_model([node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])],
                       [("x", F, [4])], [("y", F, [None])],
                       {"starts": np.array([2]), "ends": np.array([INT64_MAX]), "axes": np.array([0]),
                        "steps": np.array([-1])})
    x = normal(4)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    assert expected.shape == (0,)
    np.testing.assert_array_equal(run_module(import_onnx(model), {"x": x})["y"], expected)


def test_slice_without_axes_and_steps():
    model = make_model([node("Slice", ["x", "starts", "ends"], ["y"])], [("x", F, [4, 5])], [("y", F, [2, 3])],
                       {"starts": np.array([1, -4]), "ends": np.array([3, 4])})
    module = check(model, {"x": normal(4, 5)})
    assert module.ops[0].attrs == {"starts": [1, -4], "ends": [3, 4], "axes": None, "steps": None}


@pytest.mark.parametrize("indices, axis", [(np.array([[0, -1], [2, 1]]), 1), (np.array(-2), 0), (np.array(1), -1)])
def test_gather(indices, axis):
    x = normal(3, 4, 5)
    want = np.take(x, indices, axis=axis).shape
    model = make_model([node("Gather", ["x", "i"], ["y"], axis=axis)], [("x", F, [3, 4, 5])],
                       [("y", F, list(want))], {"i": indices})
    check(model, {"x": x})


def test_squeeze_and_unsqueeze_with_axes_inputs():
    nodes = [node("Unsqueeze", ["x", "ax"], ["u"]), node("Squeeze", ["u", "sq"], ["s"]),
             node("Squeeze", ["s"], ["y"])]
    model = make_model(nodes, [("x", F, [3, 1, 4])], [("y", F, [3, 4])],
                       {"ax": np.array([0, -1]), "sq": np.array([0])})
    module = check(model, {"x": normal(3, 1, 4)})
    assert [op.attrs["axes"] for op in module.ops] == [[0, -1], [0], [1, 3]]


def test_squeeze_and_unsqueeze_with_axes_attributes_before_opset_13():
    nodes = [node("Unsqueeze", ["x"], ["u"], axes=[1]), node("Squeeze", ["u"], ["y"], axes=[1, 3])]
    model = make_model(nodes, [("x", F, [3, 4, 1])], [("y", F, [3, 4])], opset=12)
    check(model, {"x": normal(3, 4, 1)})


def test_reshape_with_zero_minus_one_and_computed_shape():
    """Torch exports compute shapes at run time: Shape -> Slice -> Concat -> Reshape."""
    nodes = [
        node("Reshape", ["x", "target"], ["r"]),
        node("Shape", ["x"], ["sh"]),
        node("Slice", ["sh", "zero", "one"], ["lead"]),
        node("Concat", ["lead", "minus_one"], ["dyn"], axis=0),
        node("Reshape", ["r", "dyn"], ["y"], allowzero=0),
    ]
    model = make_model(nodes, [("x", F, ["batch", 3, 4])], [("y", F, ["batch", 12])],
                       {"target": np.array([0, -1, 2]), "zero": np.array([0]), "one": np.array([1]),
                        "minus_one": np.array([-1])})
    module = check(model, {"x": normal(5, 3, 4)})
    assert str(module.outputs[0].type) == "f32[batch,12]"
    assert str(module.ops_of("reshape")[0].results[0].type) == "f32[batch,6,2]"


@pytest.mark.parametrize("perm", [None, [1, 2, 0]])
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    out = [4, 3, 2] if perm is None else [3, 4, 2]
    model = make_model([node("Transpose", ["x"], ["y"], **attrs)], [("x", F, [2, 3, 4])], [("y", F, out)])
    check(model, {"x": normal(2, 3, 4)})


def test_concat_and_flatten():
    nodes = [node("Concat", ["a", "b", "c"], ["cat"], axis=-1), node("Flatten", ["cat"], ["f0"], axis=0),
             node("Flatten", ["cat"], ["f"]), node("Flatten", ["cat"], ["f3"], axis=3)]
    model = make_model(nodes, [("a", F, [2, 3, 1]), ("b", F, [2, 3, 2])],
                       [("f0", F, [1, 30]), ("f", F, [2, 15]), ("f3", F, [30, 1])], {"c": normal(2, 3, 2, seed=4)})
    check(model, {"a": normal(2, 3, 1), "b": normal(2, 3, 2, seed=1)})


@pytest.mark.parametrize("axis, shape", [(-1, [6, 5]), (-3, [1, 30])])
def test_flatten_negative_axis(axis, shape):
    model = make_model([node("Flatten", ["x"], ["y"], axis=axis)], [("x", F, [2, 3, 5])], [("y", F, shape)])
    check(model, {"x": normal(2, 3, 5)})


@pytest.mark.parametrize("inputs, attrs, opset, sizes", [
    (["x", "sizes"], {"axis": 1}, 17, [1, 4, 2]),
    (["x"], {"axis": 1, "num_outputs": 3}, 18, [3, 3, 1]),
    (["x"], {"axis": -1}, 17, [2, 2, 2]),
    (["x"], {"axis": 1, "split": [5, 1, 1]}, 12, [5, 1, 1]),
])
def test_split(inputs, attrs, opset, sizes):
    outputs = ["p", "q", "r"]
    shape = [2, 7, 6]
    axis = attrs["axis"] % 3
    model = make_model([node("Split", inputs, outputs, **attrs)], [("x", F, shape)],
                       [(name, F, shape[:axis] + [s] + shape[axis + 1:]) for name, s in zip(outputs, sizes)],
                       {"sizes": np.array(sizes)} if "sizes" in inputs else {}, opset=opset)
    module = check(model, {"x": normal(*shape)})
    assert module.ops[0].attrs["sizes"] == sizes


def test_shape_cast_expand_and_constant_of_shape():
    nodes = [
        node("Shape", ["x"], ["full"]),
        node("Shape", ["x"], ["tail"], start=1, end=3),
        node("ConstantOfShape", ["full"], ["zeros"]),
        node("ConstantOfShape", ["tail"], ["sevens"], value=helper.make_tensor("v", I64, [1], [7])),
        node("Cast", ["sevens"], ["sevens_f"], to=F),
        node("Expand", ["sevens_f", "full"], ["big"]),
        node("Add", ["big", "zeros"], ["y"]),
        node("Cast", ["x"], ["xi"], to=TensorProto.INT32),
        node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE),
    ]
    model = make_model(nodes, [("x", F, ["n", 3, 4])],
                       [("y", F, ["n", 3, 4]), ("tail", I64, [2]), ("xi", TensorProto.INT32, ["n", 3, 4]),
                        ("xd", TensorProto.DOUBLE, ["n", 3, 4])])
    module = check(model, {"x": 3 * normal(2, 3, 4)})
    assert str(module.outputs[2].type) == "i32[n,3,4]"


def test_constant_node_forms():
    nodes = [
        helper.make_node("Constant", [], ["t"], value=helper.make_tensor("t", F, [2], [1.5, -2.0])),
        helper.make_node("Constant", [], ["f"], value_float=0.25),
        helper.make_node("Constant", [], ["fs"], value_floats=[1.0, 2.0]),
        helper.make_node("Constant", [], ["i"], value_int=3),
        helper.make_node("Constant", [], ["is"], value_ints=[2, 1]),
        node("Mul", ["x", "t"], ["a"]), node("Add", ["a", "f"], ["b"]), node("Sub", ["b", "fs"], ["c"]),
        node("Reshape", ["c", "is"], ["y"]),
        node("Add", ["i", "i"], ["six"]),
    ]
    model = make_model(nodes, [("x", F, [2])], [("y", F, [2, 1]), ("six", I64, [])])
    module = check(model, {"x": normal(2)})
    assert "" not in [op.loc for op in module.ops_of("const")]


def test_identity_aliases_and_names_graph_outputs():
    nodes = [node("Identity", ["x"], ["x2"]), node("Relu", ["x2"], ["r"]), node("Identity", ["r"], ["y"]),
             node("Identity", ["k"], ["k_out"])]
    model = make_model(nodes, [("x", F, [3])], [("y", F, [3]), ("k_out", F, [2])], {"k": normal(2, seed=5)})
    module = check(model, {"x": normal(3)})
    assert kinds(module) == ["relu", "const"]
    assert [v.name for v in module.outputs] == ["y", "k_out"]
