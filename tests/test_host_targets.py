"""Every target runs host regions: the ``numpy`` artifact runs them in onnxruntime between
its own steps, the ``onnx`` target writes them back around the (compressed) core, and the
``verilog`` target runs them before and after the accelerator, whose outputs equal the
golden model's bit for bit; the quantized golden model dequantizes into a region and
quantizes what comes out."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from accel_models import AccelCase
from accel_models import quantized as quantized_case
from host_models import VadLike, vad_feeds, vad_like
from models import assert_close_f32, run_onnxruntime
from tensorgate.backend.artifact import load_artifact, write_numpy_artifact
from tensorgate.backend.onnx_export import export_onnx
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.backend.verilog.lower import accelerator_stages
from tensorgate.errors import TensorgateError, VerifyError
from tensorgate.fixedpoint.formats import code_max, code_min, dequantize
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import FixedExecutor, run_fixed, run_module
from tensorgate.interpreter.host import run_region
from tensorgate.ir.core import Op, Value
from tensorgate.ir.types import FixedType
from tensorgate.passes import PassManager
from tensorgate.runtime.simulator import Simulator

CASE = VadLike(batch=2, samples=20, hidden=4, channels=4, frames=4)


@pytest.fixture(scope="module")
def model():
    return vad_like(CASE)


@pytest.fixture(scope="module")
def feeds():
    return vad_feeds(CASE)


def quantized(model, feeds, tmp_path, bits=16):
    np.savez(tmp_path / "cal.npz", **feeds)
    module = import_onnx(model)
    PassManager.parse(f"canonicalize, dce, quantize{{bits={bits} calibration={tmp_path / 'cal.npz'}}}").run(module)
    return module


def test_numpy_artifact_runs_host_regions(model, feeds, tmp_path):
    write_numpy_artifact(import_onnx(model), tmp_path / "out", "", "vad.onnx")
    module, manifest = load_artifact(tmp_path / "out")
    assert [r["kind"] for r in manifest["partition"]["regions"]] == ["host", "tensorgate", "host"]
    assert 0 < manifest["partition"]["tensorgate_share"] < 1
    expected = run_onnxruntime(model, feeds)
    for name, array in run_module(module, feeds).items():
        assert_close_f32(array, expected[name], name)


def test_onnx_target_writes_the_regions_back_around_the_compressed_core(model, feeds):
    module = import_onnx(model)
    PassManager.parse("canonicalize, dce, decompose{method=tt weights=all eps=0}").run(module)
    exported = export_onnx(module)
    assert exported.opset_import[0].version == 18  # the opset 17 regions were converted
    session = onnxruntime.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    ours, original = run_module(module, feeds), run_onnxruntime(model, feeds)
    for name in original:
        assert_close_f32(got[name], ours[name], name)
        np.testing.assert_allclose(got[name], original[name], rtol=1e-4, atol=1e-5)  # full-rank TT
    again = import_onnx(exported)
    assert [op.kind for op in again.ops].count("host") == 2 and again.ops_of("lstm")[0].attrs["w"][0].format == "tt"


def test_golden_model_quantizes_at_the_region_boundary(model, feeds, tmp_path):
    module = quantized(model, feeds, tmp_path)
    front, head = module.ops_of("host")
    fmt = front.results[0].type.dtype
    assert isinstance(fmt, FixedType) and front.attrs["quant"]["results"] == [str(fmt)]
    assert str(module.inputs[0].type.dtype) == "f32"  # read by the front end only: stays float
    assert isinstance(head.operands[0].type.dtype, FixedType) and str(head.results[0].type.dtype) == "f32"
    codes = FixedExecutor(module).run_op(front, [feeds["input"]])[0]
    real = run_region(front, [feeds["input"]])[0]
    assert code_min(fmt) <= codes.min() and codes.max() <= code_max(fmt) and np.abs(codes).max() > code_max(fmt) / 4
    assert np.abs(dequantize(codes, fmt) - real).max() <= 2.0 ** -(fmt.frac + 1)
    float_out = run_module(import_onnx(model), feeds)
    np.testing.assert_allclose(run_fixed(module, feeds)["output"], float_out["output"], atol=1e-3)


def test_verilog_target_runs_regions_around_the_accelerator_bit_exactly(model, feeds, tmp_path):
    module = quantized(model, feeds, tmp_path)
    stages = accelerator_stages(module)
    assert [op.kind for op in stages.prefix] == ["host", "relu", "transpose"]
    assert [op.kind for op in stages.suffix] == ["host"]  # the relu of the LSTM's output is an EW instruction
    assert {op.kind for op in stages.core.ops} >= {"lstm", "gather", "concat", "relu"}
    artifact = write_verilog_artifact(module, tmp_path / "hw", "quantize", "vad.onnx", 4)
    outputs, stats = Simulator(artifact).run(feeds, raw=True)
    golden = run_fixed(module, feeds, raw=True)
    assert sorted(outputs) == sorted(golden)
    for name in golden:
        assert np.array_equal(outputs[name], golden[name]), name
    assert stats["macs"] == CASE.steps * CASE.batch * 4 * CASE.hidden * (CASE.channels + CASE.hidden)


def test_verilog_target_refuses_an_op_between_two_parts_of_the_core(tmp_path):
    module, _ = quantized_case(AccelCase(head="dense"), tmp_path)
    (head,) = module.ops_of("linear")
    x = head.operands[0]
    square = Value(module.fresh_name("square"), x.type)  # a quantized mul: the golden model's, no hardware
    module.ops.insert(module.ops.index(head), Op("mul", [x, x], [square], {"quant": {
        "rounding": "nearest-even", "results": [str(x.type.dtype)]}}))
    head.operands[0] = square
    with pytest.raises(VerifyError, match="'mul'.* reads values the accelerator computes and feeds the accelerator"):
        accelerator_stages(module)
    with pytest.raises(TensorgateError, match="cannot run this partition"):
        write_verilog_artifact(module, tmp_path / "hw", "quantize", "m.onnx", 4)
