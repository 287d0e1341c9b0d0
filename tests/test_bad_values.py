"""Errors that name the real culprit (issue 15, item 7): NaN/Inf weights name the
initializer at import, NaN/Inf, complex, string and empty inputs name the input, NaN
outputs of ``tensorgate run`` give a warning; a corrupt initializer reports onnx's own
tensor check (not the checker's complaint about a missing output shape), and a negative
declared dim or an unknown opset is refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from models import OnnxRecurrent, make_model, make_onnx_recurrent
from onnx import TensorProto, numpy_helper

from tensorgate.cli import main
from tensorgate.errors import ExecutionError, FrontendError, PassError
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_fixed, run_module
from tensorgate.ir import DenseMap
from tensorgate.passes import PassManager
from tensorgate.passes.decompose import Decompose


def lstm_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    return make_onnx_recurrent(OnnxRecurrent())


def with_initializer(model: onnx.ModelProto, name: str, change) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    change(next(t for t in copy.graph.initializer if t.name == name))
    return copy


def without_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    return model


def set_entry(value: float):
    def change(tensor: TensorProto) -> None:
        array = numpy_helper.to_array(tensor).copy()
        array[0, 1, 2] = value
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return change


def truncate(tensor: TensorProto) -> None:
    tensor.raw_data = tensor.raw_data[:-8]


def negative_dim(tensor: TensorProto) -> None:
    tensor.dims[1] = -tensor.dims[1]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_name_the_initializer(value):
    model, _ = lstm_model()
    with pytest.raises(FrontendError, match=r"initializer 'R' holds -?(nan|inf) at \[0, 1, 2\] \(1 of 144"):
        import_onnx(with_initializer(model, "R", set_entry(value)))


def test_minus_infinity_outside_a_weight_is_a_value_like_any_other():
    """An Add of -inf (a mask) is no weight: the import takes it."""
    mask = np.array([0.0, -np.inf, 0.0], np.float32)
    model = make_model([onnx.helper.make_node("Add", ["x", "mask"], ["y"])], [("x", TensorProto.FLOAT, [2, 3])],
                       [("y", TensorProto.FLOAT, [2, 3])], {"mask": mask})
    outputs = run_module(import_onnx(model), {"x": np.ones((2, 3), np.float32)})
    assert outputs["y"][0, 1] == -np.inf


@pytest.mark.parametrize("change, root_cause", [
    (truncate, r"initializer 'W' is corrupt: .*raw_data size \(472 bytes\) is too small .* \(480 bytes required\)"),
    (negative_dim, r"initializer 'W' is corrupt: Negative dimension value \(tensor name: W\)"),
])
@pytest.mark.parametrize("output_shapes", [True, False])
def test_a_corrupt_initializer_reports_the_tensor_check(change, root_cause, output_shapes):
    model, _ = lstm_model()
    corrupt = with_initializer(model, "W", change)
    if not output_shapes:
        corrupt = without_output_shapes(corrupt)
    with pytest.raises(FrontendError, match=root_cause) as caught:
        import_onnx(corrupt)
    assert "Field 'shape'" not in str(caught.value)


def test_a_negative_declared_dim_is_refused():
    model, _ = lstm_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -3
    with pytest.raises(FrontendError, match="graph input 'X' declares the negative dim -3"):
        import_onnx(model)


def test_an_opset_newer_than_onnx_is_refused():
    model, _ = lstm_model()
    model.opset_import[0].version = 999
    with pytest.raises(FrontendError, match=f"opset 999, but the installed onnx knows opsets 1..{onnx.defs.onnx_opset_version()}"):
        import_onnx(model)


def test_decompose_names_a_non_finite_map():
    model, _ = lstm_model()
    module = import_onnx(model)
    (op,) = module.ops_of("lstm")
    matrix = op.attrs["w"][0].matrix.copy()
    matrix[0, 0] = np.nan
    op.attrs["w"] = [DenseMap(matrix)]
    with pytest.raises(PassError, match=r"map 'w' #0 \(24x5\) holds NaN or infinite weights"):
        Decompose(method="tt", eps=0.5).run(module)


def bad_inputs(x: np.ndarray) -> list[tuple[np.ndarray, str]]:
    nan, inf = x.copy(), x.copy()
    nan[0, 1, 2], inf[1, 0, 0] = np.nan, -np.inf
    return [
        (nan, r"input 'X' holds nan at \[0, 1, 2\]"),
        (inf, r"input 'X' holds -inf at \[1, 0, 0\]"),
        (x.astype(np.complex64), r"input 'X' holds complex numbers \(complex64\)"),
        (np.full(x.shape, "a"), r"input 'X' holds strings"),
        (np.zeros((x.shape[0], 0, x.shape[2]), np.float32), r"input 'X' is empty \(shape \[4, 0, 5\]\)"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_inputs_name_the_input_in_both_runtimes(case):
    model, feeds = lstm_model()
    module = import_onnx(model)
    quantized = PassManager.parse("quantize{bits=8}").run(module.copy())
    array, message = bad_inputs(feeds["X"])[case]
    for run in (run_module, run_fixed):
        with pytest.raises(ExecutionError, match=message):
            run(module if run is run_module else quantized, {"X": array})


def test_run_warns_of_nan_outputs(tmp_path, capsys):
    """Products that overflow float32 to +inf and -inf sum to NaN."""
    weight = np.array([[1e30, -1e30]], np.float32)
    model = make_model([onnx.helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
                       [("x", TensorProto.FLOAT, ["batch", 2])], [("y", TensorProto.FLOAT, ["batch", 1])],
                       {"w": weight})
    onnx.save(model, tmp_path / "model.onnx")
    np.savez(tmp_path / "x.npz", x=np.array([[1e10, 1e10], [1.0, 2.0]], np.float32))
    assert main(["compile", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "art")]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "art"), "--input", str(tmp_path / "x.npz"), "--output",
                 str(tmp_path / "y.npz")]) == 0
    err = capsys.readouterr().err
    assert "warning: output 'y' holds NaN in 1 of its 2 entries" in err
    assert np.isnan(np.load(tmp_path / "y.npz")["y"][0, 0])


@pytest.mark.parametrize("op_type", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("lengths", [[5, 1, 2], [-1, 1, 2], [4, 1, 7]])
def test_sequence_lengths_onnxruntime_refuses_are_refused(op_type, lengths, tmp_path):
    """Lengths past the 4 steps or negative: onnxruntime refuses them, and so do the float runtime and the golden model, naming the op; lengths 0 and
    4 run in all three."""
    model, feeds = make_onnx_recurrent(OnnxRecurrent(op_type=op_type, sequence_lens=True))
    np.savez(tmp_path / "calibration.npz", **feeds)
    quantized = PassManager.parse(f"quantize{{bits=8 calibration={tmp_path / 'calibration.npz'}}}").run(
        import_onnx(model))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    bad = {**feeds, "sequence_lens": np.array(lengths, np.int32)}
    with pytest.raises(Exception):
        session.run(None, bad)
    for run, module in ((run_module, import_onnx(model)), (run_fixed, quantized)):
        with pytest.raises(ExecutionError, match=f"'{op_type.lower()}'.*sequence_lens"):
            run(module, bad)
    edge = {**feeds, "sequence_lens": np.array([0, 4, 2], np.int32)}
    session.run(None, edge)
    run_module(import_onnx(model), edge)
    run_fixed(quantized, edge)
