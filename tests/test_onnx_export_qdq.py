"""QDQ export of quantized modules: onnxruntime equals the integer golden model bit for
bit (``runtime.fixed_runtime``), with and without onnxruntime's graph optimizations
(which fuse and move Q/DQ nodes)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from decomposed import classifier_module, lstm_module, random_feeds, random_map
from onnx import numpy_helper

from tensorgate.backend.onnx_export import export_onnx, write_onnx_artifact
from tensorgate.interpreter import run_fixed
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.types import F32, TensorType
from tensorgate.onnx_form import QDQ_OPSET, ExportError
from tensorgate.passes import PassManager

LEVELS = [onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL, onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL]


def run_ort(model: onnx.ModelProto, feeds: dict, level) -> dict[str, np.ndarray]:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = level
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def quantized(module: Module, options: str, tmp_path, calibrate: bool = False) -> Module:
    """``module`` through ``quantize{options}``; integer inputs need a calibration file."""
    if calibrate:
        path = tmp_path / "calibration.npz"
        np.savez(path, **random_feeds(module, np.random.default_rng(5), {"batch": 16}))
        options += f" calibration={path}"
    return PassManager.parse(f"quantize{{{options}}}").run(module.copy())


def assert_bit_exact(module: Module, seed: int = 0) -> onnx.ModelProto:
    """ORT = golden model, on ordinary inputs and on inputs large enough to saturate."""
    model = export_onnx(module)
    rng = np.random.default_rng(seed)
    for scale in (1.0, 8.0):
        feeds = {name: (value * scale).astype(value.dtype) if value.dtype.kind == "f" else value
                 for name, value in random_feeds(module, rng).items()}
        expected = run_fixed(module, feeds)
        for level in LEVELS:
            actual = run_ort(model, feeds, level)
            for name, value in expected.items():
                np.testing.assert_array_equal(actual[name].astype(np.float64), value, err_msg=f"{name} at {level}")
    return model


def maps(fmt, rng, count=1, out_factors=(4, 4), in_factors=(2, 3), **kwargs):
    return [random_map(fmt, rng, out_factors, in_factors, **kwargs) for _ in range(count)]


H, I = 4, 6


@pytest.mark.parametrize("options", ["bits=8", "bits=8 rounding=half-away activation=lut",
                                     "bits=8 per=tensor activation=lut table-size=64"])
@pytest.mark.parametrize("w_format,r_format", [("tt", "dense"), ("ht", "tt"), ("bt", "ht")])
def test_classifier(tmp_path, options, w_format, r_format):
    rng = np.random.default_rng(0)
    r = maps(r_format, rng, 1, (16,), (4,)) if r_format == "dense" else maps(r_format, rng, 1, in_factors=(2, 2))
    module = classifier_module(maps(w_format, rng), r, H, I, classes=3, softmax=False)
    model = assert_bit_exact(quantized(module, options, tmp_path))
    assert model.opset_import[0].version == QDQ_OPSET
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Scan"} <= ops
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith(".codes")]
    assert weights and all(w.dtype.kind == "i" for w in weights), "weights are stored as integer codes"


def test_every_lstm_option(tmp_path):
    """Bidirectional, padding, peepholes, clip, ragged lengths, initial states."""
    rng = np.random.default_rng(1)
    w = [random_map("tt", rng, (3, 6), (2, 4), out_pad=2, in_pad=2), random_map("ht", rng, (4, 4), (3, 2))]
    r = [random_map("bt", rng, (4, 4), (2, 2)), random_map("tt", rng, (4, 4), (2, 2))]
    module = lstm_module(w, r, H, I, direction="bidirectional", peepholes=True, sequence_lens=True,
                         initial_h=True, initial_c=True, clip=0.7)
    assert_bit_exact(quantized(module, "bits=8", tmp_path, calibrate=True))


def test_mixed_widths_per_gate_reverse_batch_major(tmp_path):
    rng = np.random.default_rng(2)
    module = lstm_module(maps("dense", rng, 4, (4,), (6,)), maps("tt", rng, 4, (2, 2), (2, 2)), H, I,
                         direction="reverse", sequence_lens=True, input_forget=1, peepholes=True, clip=2.0)
    assert_bit_exact(quantized(module, "bits=8 state-bits=12 weight-bits=6 segments=8", tmp_path, calibrate=True))
    batch_major = lstm_module(maps("tt", rng), maps("tt", rng, in_factors=(2, 2)), H, I, layout=1, initial_h=True)
    assert_bit_exact(quantized(batch_major, "bits=8 rounding=half-away", tmp_path))


def test_contraction_schedule_with_precontracted_cores(tmp_path):
    rng = np.random.default_rng(3)
    module = classifier_module(maps("ht", rng, 1, (2, 2, 4), (1, 2, 3)), maps("tt", rng, in_factors=(2, 2)), H, I,
                               classes=3, softmax=False)
    module = PassManager.parse("order-contractions{precontract=always}").run(module)
    assert_bit_exact(quantized(module, "bits=8", tmp_path))


def test_linear_layers_on_a_sequence(tmp_path):
    rng = np.random.default_rng(4)
    module = Module("main")
    b = Builder(module)
    x = b.input("x", TensorType((5, "batch", 6), F32))
    hidden = b.op("linear", [x], {"weight": random_map("bt", rng, (2, 4), (3, 2)),
                                  "bias": rng.standard_normal(8).astype(np.float32)}, names=["hidden"]).result
    moved = b.op("transpose", [b.op("relu", [hidden]).result], {"perm": [1, 0, 2]}, names=["moved"]).result
    module.outputs = [b.op("linear", [moved], {"weight": random_map("dense", rng, (3,), (8,))}, names=["y"]).result]
    assert_bit_exact(quantized(module, "bits=8", tmp_path))


def test_wide_accumulators_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    module = classifier_module(maps("tt", rng), maps("dense", rng, 1, (16,), (4,)), H, I, classes=3, softmax=False)
    with pytest.raises(ExportError, match=r"can reach 3\d bits, more than the 24 that float32 holds exactly"):
        export_onnx(quantized(module, "bits=16", tmp_path))


def test_quantized_artifact(tmp_path):
    rng = np.random.default_rng(6)
    module = quantized(classifier_module(maps("tt", rng), maps("tt", rng, in_factors=(2, 2)), H, I, classes=3,
                                         softmax=False), "bits=8", tmp_path)
    out = write_onnx_artifact(module, tmp_path / "art", "quantize", "model.onnx")
    model = onnx.load(out / "model.onnx")
    feeds = random_feeds(module, rng)
    actual = run_ort(model, feeds, LEVELS[1])
    np.testing.assert_array_equal(actual["logits"].astype(np.float64), run_fixed(module, feeds)["logits"])
