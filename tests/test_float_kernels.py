"""The float runtime's onnxruntime recurrent kernel (``runtime.float_kernels``) against
its NumPy kernel and against onnxruntime on the imported model: LSTM, GRU and RNN over
shapes, directions, layouts, sequence lengths, initial states and cell attributes; which
kernel ``auto`` picks; sessions built once per layer; and the CLI's ``run --kernel``."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from models import OnnxRecurrent, assert_close_f32, make_onnx_recurrent, run_onnxruntime
from tensorgate.cli import main
from tensorgate.demo import demo_files
from tensorgate.errors import ExecutionError, UsageError
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.ir import F32, DenseMap, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.runtime import float_kernels
from tensorgate.runtime.float_kernels import float_executor, run_float


@st.composite
def recurrent_configs(draw) -> OnnxRecurrent:
    op_type = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
    lstm = op_type == "LSTM"
    return OnnxRecurrent(
        op_type=op_type,
        seq=draw(st.integers(1, 6)), batch=draw(st.integers(1, 4)),
        input_size=draw(st.integers(1, 6)), hidden_size=draw(st.integers(1, 6)),
        direction=draw(st.sampled_from(["forward", "reverse", "bidirectional"])),
        layout=draw(st.sampled_from([0, 1])),
        bias=draw(st.booleans()),
        sequence_lens=draw(st.booleans()),
        initial_h=draw(st.booleans()),
        initial_c=lstm and draw(st.booleans()),
        peepholes=lstm and draw(st.booleans()),
        clip=draw(st.sampled_from([None, 0.8])),
        input_forget=int(lstm and draw(st.booleans())),
        linear_before_reset=int(op_type == "GRU" and draw(st.booleans())),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recurrent_configs())
def test_onnxruntime_kernel_matches_numpy_kernel_and_onnxruntime(config):
    model, feeds = make_onnx_recurrent(config)
    module = import_onnx(model)
    numpy_outputs = run_float(module, feeds, kernel="numpy")
    kernel_outputs = run_float(module, feeds, kernel="onnxruntime")
    assert kernel_outputs.keys() == numpy_outputs.keys()
    for name, expected in numpy_outputs.items():
        assert_close_f32(kernel_outputs[name], expected, name)
    if config.layout == 0:  # onnxruntime rejects the batch-major layout; the kernel transposes around it
        for name, expected in run_onnxruntime(model, feeds).items():
            assert_close_f32(kernel_outputs[name], expected, name)


def test_auto_runs_a_dense_layer_in_onnxruntime(monkeypatch):
    model, feeds = make_onnx_recurrent(OnnxRecurrent(direction="bidirectional", initial_h=True))
    module = import_onnx(model)
    sessions = count_sessions(monkeypatch)
    auto = float_executor(module, kernel="auto")
    assert len(sessions) == 1
    onnxruntime_kernel = run_float(module, feeds, kernel="onnxruntime")
    for name, value in auto.run(feeds).items():
        np.testing.assert_array_equal(value, onnxruntime_kernel[name])


def tt_lstm_module(batch: int = 2, steps: int = 3) -> Module:
    """An LSTM whose W is a TT (input 24 = 2·3·4, gates 4·4 = 2·2·4), R dense."""
    rng = np.random.default_rng(3)
    cores = [rng.standard_normal(shape).astype(np.float32) * 0.5
             for shape in [(1, 2, 2, 2), (2, 2, 3, 2), (2, 4, 4, 1)]]
    module = Module("tt_lstm")
    build = Builder(module)
    x = build.input("x", TensorType((steps, batch, 24), F32))
    lstm = build.op("lstm", [x], {
        "hidden_size": 4, "w": [TTMap.from_cores(cores)],
        "r": [DenseMap(rng.standard_normal((16, 4)).astype(np.float32) * 0.5)],
        "bias": rng.standard_normal((1, 32)).astype(np.float32),
    }, names=["y", "y_h", "y_c"])
    module.outputs = list(lstm.results)
    verify_module(module)
    return module


def test_decomposed_layer_auto_is_numpy_and_onnxruntime_kernel_agrees(monkeypatch):
    module = tt_lstm_module()
    feeds = {"x": np.random.default_rng(4).standard_normal((3, 2, 24)).astype(np.float32)}
    sessions = count_sessions(monkeypatch)
    auto = float_executor(module, kernel="auto").run(feeds)
    assert sessions == []
    numpy_outputs = run_module(module, feeds)
    kernel_outputs = run_float(module, feeds, kernel="onnxruntime")
    for name, expected in numpy_outputs.items():
        np.testing.assert_array_equal(auto[name], expected)
        assert_close_f32(kernel_outputs[name], expected, name)


def test_sessions_are_built_once_per_layer(monkeypatch):
    model, feeds = make_onnx_recurrent(OnnxRecurrent(op_type="GRU"))
    module = import_onnx(model)
    sessions = count_sessions(monkeypatch)
    executor = float_executor(module, kernel="onnxruntime")
    first = executor.run(feeds)
    second = executor.run(feeds)
    assert len(sessions) == 1
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def count_sessions(monkeypatch) -> list:
    """The sessions the float kernels make from here on, in a list that grows."""
    made = []
    real = onnxruntime.InferenceSession

    def recording(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(float_kernels.onnxruntime, "InferenceSession", recording)
    return made


def test_float64_run_needs_the_numpy_kernel():
    model, feeds = make_onnx_recurrent(OnnxRecurrent())
    module = import_onnx(model)
    with pytest.raises(ExecutionError, match="float32 only"):
        float_executor(module, np.float64, kernel="onnxruntime")
    auto = run_float(module, feeds, np.float64, kernel="auto")
    numpy_outputs = run_module(module, feeds, np.float64)
    for name, expected in numpy_outputs.items():
        np.testing.assert_array_equal(auto[name], expected)


def test_onnxruntime_failure_is_an_execution_error():
    model, feeds = make_onnx_recurrent(OnnxRecurrent(sequence_lens=True))
    feeds["sequence_lens"] = np.array([9, 1, 2], np.int32)  # past the 4 steps: onnxruntime refuses it
    with pytest.raises(ExecutionError, match="'lstm'.*onnxruntime's kernel failed.*sequence_lens"):
        run_float(import_onnx(model), feeds, kernel="onnxruntime")


def test_unknown_kernel_is_a_usage_error():
    model, _ = make_onnx_recurrent(OnnxRecurrent())
    with pytest.raises(UsageError, match="'cuda' is not one of auto, numpy, onnxruntime"):
        float_executor(import_onnx(model), kernel="cuda")


def test_cli_kernel_choices_are_the_runtime_s():
    from tensorgate.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    kernel = next(action for action in run._actions if action.dest == "kernel")
    assert tuple(kernel.choices) == float_kernels.KERNEL_CHOICES


MODEL, INPUTS = demo_files()


def test_cli_run_kernels_agree(tmp_path, capsys):
    artifact = tmp_path / "artifact"
    assert main(["compile", str(MODEL), "-o", str(artifact)]) == 0
    results = {}
    for kernel in float_kernels.KERNEL_CHOICES:
        out = tmp_path / f"{kernel}.npz"
        assert main(["run", str(artifact), "--input", str(INPUTS), "--output", str(out), "--kernel", kernel]) == 0
        with np.load(out) as data:
            results[kernel] = data["probabilities"]
    assert_close_f32(results["onnxruntime"], results["numpy"])
    np.testing.assert_array_equal(results["auto"], results["onnxruntime"])


def test_cli_kernel_refused_for_a_quantized_artifact(tmp_path, capsys):
    model = onnx.load(MODEL)
    softmax = model.graph.node.pop()
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, ["batch", 10]))
    onnx.save(model, tmp_path / "logits.onnx")
    artifact = tmp_path / "q"
    assert main(["compile", str(tmp_path / "logits.onnx"), "-p", "canonicalize, dce, quantize{bits=16}",
                 "-o", str(artifact)]) == 0
    capsys.readouterr()
    code = main(["run", str(artifact), "--input", str(INPUTS), "--output", str(tmp_path / "o.npz"),
                 "--kernel", "numpy"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("error: --kernel")
