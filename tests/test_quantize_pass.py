"""The quantize pass: what it assigns, its options, its errors, its report, and the
contraction schedules it follows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tensorgate.errors import ExecutionError, PassError, PipelineError
from tensorgate.fixedpoint.maps import network_plans
from tensorgate.fixedpoint.quant_attrs import LSTMQuant, is_quantized
from tensorgate.ir import F32, DenseMap, FixedType, IntType, Module, TensorType, TTMap, verify_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.passes import PassManager
from tensorgate.passes.quantize import Quantize
from tensorgate.interpreter import run_fixed
from tensorgate.interpreter import run_module

I, H, C = 6, 8, 3


def tt(rng, out_factors, in_factors, rank=3) -> TTMap:
    ranks = [1] + [rank] * (len(out_factors) - 1) + [1]
    return TTMap.from_cores([rng.standard_normal((ranks[k], m, n, ranks[k + 1])) * 0.4
                             for k, (m, n) in enumerate(zip(out_factors, in_factors))])


def classifier(seed: int = 0, decomposed: bool = False, head: str = "linear") -> Module:
    """x -> lstm -> last h -> linear (-> softmax)."""
    rng = np.random.default_rng(seed)
    module = Module("classifier")
    build = Builder(module)
    x = build.input("x", TensorType(("seq", "batch", I), F32))
    w = tt(rng, (4, 8), (2, 3)) if decomposed else DenseMap(rng.standard_normal((4 * H, I)).astype(np.float32) * 0.5)
    r = tt(rng, (4, 8), (2, 4)) if decomposed else DenseMap(rng.standard_normal((4 * H, H)).astype(np.float32) * 0.4)
    lstm = build.op("lstm", [x], {"hidden_size": H, "w": [w], "r": [r],
                                  "bias": rng.standard_normal((1, 8 * H)).astype(np.float32) * 0.3})
    last = build.op("squeeze", [lstm.results[1]], {"axes": [0]}).result
    out = build.op("linear", [last], {"weight": DenseMap(rng.standard_normal((C, H)).astype(np.float32)),
                                      "bias": rng.standard_normal(C).astype(np.float32)}).result
    if head == "softmax":
        out = build.op("softmax", [out], {"axis": -1}).result
    module.outputs = [out]
    verify_module(module)
    return module


def quantized(module: Module, pipeline: str = "quantize") -> Module:
    return PassManager.parse(pipeline).run(module)


def test_every_real_value_gets_a_format_and_every_weight_integer_codes():
    module = quantized(classifier(decomposed=True), "quantize{bits=10 state-bits=14 weight-bits=7}")
    for value in module.values():
        assert isinstance(value.type.dtype, (FixedType, IntType)), value
    lstm = module.ops_of("lstm")[0]
    quant = LSTMQuant.of(lstm)
    assert quant.cell.width == 14 and quant.gate == FixedType(10, 8) and quant.hidden == FixedType(10, 9)
    assert all(fmt.width == 7 for mq in quant.w + quant.r for fmt in mq.tensors.values())
    assert all(len(steps) == len(plan.steps) - 1 and all(fmt.width == 10 for fmt in steps)
               for mq, m in zip(quant.w, lstm.attrs["w"]) for steps, plan in zip(mq.steps, network_plans(m)))
    for m in lstm.attrs["w"] + lstm.attrs["r"]:
        assert all(t.dtype == np.int64 for t in m.tensors().values())
    assert lstm.attrs["bias"].dtype == np.int64 and lstm.attrs["bias"].shape == (1, 4 * H)
    text = print_module(module)
    assert "fix<10,9>" in text and "quant = {" in text
    again = parse_module(text, module_tensors(module))
    verify_module(again)
    assert print_module(again) == text


def test_per_tensor_granularity_shares_one_format_per_map():
    module = quantized(classifier(decomposed=True), "quantize{per=tensor}")
    for mq in LSTMQuant.of(module.ops_of("lstm")[0]).w:
        assert len(set(mq.tensors.values())) == 1


def test_rounding_and_activation_options_reach_the_ir():
    module = quantized(classifier(), "quantize{bits=8 rounding=half-away activation=lut table-size=64}")
    quant = LSTMQuant.of(module.ops_of("lstm")[0])
    assert quant.rounding == "half-away"
    assert quant.sigmoid.kind == "lut" and quant.sigmoid.size <= 64 and quant.tanh.rounding == "half-away"
    module = quantized(classifier(), "quantize{bits=8 segments=8}")
    assert LSTMQuant.of(module.ops_of("lstm")[0]).tanh.size == 8


def test_golden_model_tracks_the_float_model():
    float_module = classifier(seed=1)
    module = quantized(float_module.copy(), "quantize{bits=16}")
    x = np.random.default_rng(5).standard_normal((10, 64, I)) * 0.8
    expected = run_module(float_module, {"x": x}, dtype=np.float64)
    actual = run_fixed(module, {"x": x})
    name = module.outputs[0].name
    assert np.abs(actual[name] - expected[name]).max() < 0.01
    raw = run_fixed(module, {"x": x}, raw=True)[name]
    assert raw.dtype == np.int64 and np.array_equal(raw * 2.0 ** -module.outputs[0].type.dtype.frac, actual[name])


@pytest.mark.parametrize("pipeline, message", [
    ("quantize{bits=40}", "option 'bits' of pass 'quantize' must be <= 32, got 40"),
    ("quantize{bits=1}", "option 'bits' of pass 'quantize' must be >= 2, got 1"),
    ("quantize{act-bits=0}", "option 'act-bits' of pass 'quantize' must be >= 2"),
    ("quantize{segments=24}", "option 'segments' must be a power of two, got 24"),
    ("quantize{rounding=up}", "must be one of nearest-even, half-away"),
    ("quantize{per=row}", "must be one of tensor, core"),
])
def test_bad_options_are_pipeline_errors(pipeline, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(")):
        PassManager.parse(pipeline)


def test_calibration_file_problems_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "none.npz"
    with pytest.raises(PassError, match=f"calibration file '{missing}' does not exist"):
        Quantize(calibration=missing).run(classifier())
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a zip")
    with pytest.raises(PassError, match="is not a readable .npz"):
        Quantize(calibration=garbage).run(classifier())
    wrong_name = tmp_path / "wrong_name.npz"
    np.savez(wrong_name, inputs=np.zeros((4, 2, I)))
    with pytest.raises(PassError, match="lacks x .the model's inputs are x."):
        Quantize(calibration=wrong_name).run(classifier())
    extra = tmp_path / "extra.npz"
    np.savez(extra, x=np.zeros((4, 2, I)), y=np.zeros(3))
    with pytest.raises(PassError, match="has unknown arrays y"):
        Quantize(calibration=extra).run(classifier())
    wrong_shape = tmp_path / "wrong_shape.npz"
    np.savez(wrong_shape, x=np.zeros((4, 2, I + 1)))
    with pytest.raises(PassError, match=r"input 'x' has shape \[4, 2, 7\], expected \[seq,batch,6\]"):
        Quantize(calibration=wrong_shape).run(classifier())
    not_finite = tmp_path / "nan.npz"
    np.savez(not_finite, x=np.full((4, 2, I), np.nan))
    with pytest.raises(PassError, match=r"nan.npz': input 'x' holds nan at \[0, 0, 0\] \(48 of 48 entries"):
        Quantize(calibration=not_finite).run(classifier())


def test_quantized_modules_are_refused_where_float_is_needed():
    module = quantized(classifier())
    assert is_quantized(module)
    with pytest.raises(PassError, match="already quantized"):
        Quantize().run(module)
    for pipeline in ("decompose{method=tt max-rank=2}", "select-ranks{params=100}", "order-contractions",
                     "finetune{data=unused.npz}"):
        name = pipeline.split("{")[0]
        with pytest.raises(PassError, match=rf"pass '{name}' needs a float module, but this one is quantized "
                                            r"\(%x is fix<8,\d+>\); run it before 'quantize'"):
            PassManager.parse(pipeline).run(module)
    with pytest.raises(ExecutionError, match="runs quantized modules"):
        run_fixed(classifier(), {"x": np.zeros((2, 1, I))})


def test_ops_without_a_fixed_point_form_are_named():
    with pytest.raises(PassError, match="'softmax' .* has no fixed-point form.*export the logits"):
        Quantize().run(classifier(head="softmax"))


def test_accumulators_wider_than_63_bits_are_refused():
    with pytest.raises(PassError, match=r"the accumulator of .* needs \d+ bits, more than the 63"):
        quantized(classifier(), "quantize{bits=32}")


def test_report_lists_tensors_outputs_units_and_accumulators(tmp_path):
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, x=np.random.default_rng(0).standard_normal((6, 32, I)))
    quantized(classifier(decomposed=True), f"quantize{{bits=8 calibration={calibration} report={tmp_path}/r.json}}")
    report = json.loads((tmp_path / "r.json").read_text())
    names = {row["name"]: row for row in report["tensors"]}
    assert names["x"]["role"] == "input" and names["x"]["saturated"] == 0
    assert any(name.endswith(".cell") for name in names) and any(".n0.s0" in name for name in names)
    assert all(row["format"].startswith("fix<") for row in report["tensors"])
    (output,) = report["outputs"]
    assert output["sqnr_db"] > 10 and 0 <= output["top1_agreement"] <= 1
    assert len(report["activations"]) == 3 and "max error" in report["activations"][0]
    assert all(2 <= a["bits"] <= 63 for a in report["accumulators"])
    quantized(classifier(), f"quantize{{calibration={calibration} report={tmp_path}/r.txt}}")
    text = (tmp_path / "r.txt").read_text()
    assert "SQNR (dB)" in text and "top-1 agreement" in text and "accumulators:" in text


def test_the_contraction_schedule_decides_the_integer_steps():
    module = classifier(decomposed=True)
    PassManager.parse("order-contractions{precontract=always}, quantize{bits=12}").run(module)
    lstm = module.ops_of("lstm")[0]
    plan = network_plans(lstm.attrs["r"][0])[0]
    assert [step.weights_only for step in plan.steps] == [True, False]
    quant = LSTMQuant.of(lstm)
    assert quant.r[0].steps[0][0].width == 12  # precontracted weights: weight-bits
    float_module = classifier(decomposed=True)
    x = np.random.default_rng(1).standard_normal((5, 16, I))
    expected = run_module(float_module, {"x": x}, dtype=np.float64)["linear"]
    assert np.abs(run_fixed(module, {"x": x})["linear"] - expected).max() < 0.1


def test_a_schedule_changed_after_quantize_is_refused_or_caught_before_running():
    from tensorgate.ir.contraction import CostModel
    from tensorgate.passes.contraction import search_map_schedule

    module = quantized(classifier(decomposed=True), "quantize{bits=12}")
    with pytest.raises(PassError, match="needs a float module"):
        PassManager.parse("order-contractions{precontract=always}").run(module)
    for op in module.ops:
        for m in op.attrs.get("w") or []:
            if isinstance(m, TTMap):
                m.schedule = search_map_schedule(m, 1, 1, CostModel("macs"), "always")
    with pytest.raises(ExecutionError, match="are not the steps .* its formats were chosen for; quantize after "
                                             "order-contractions"):
        run_fixed(module, {"x": np.zeros((2, 1, I))})


def test_per_gate_w_with_stacked_dense_r_is_regrouped_exactly(tmp_path):
    """decompose{gates=separate} leaves R stacked; quantize regroups the dense R per gate."""
    from tensorgate.demo import demo_files
    from tensorgate.explore import without_trailing_softmax
    from tensorgate.frontend import import_onnx

    model, inputs = demo_files()
    with np.load(inputs) as data:
        images = data["image_rows"]
    module, _ = without_trailing_softmax(import_onnx(model), "probabilities")
    PassManager.parse("canonicalize, decompose{method=tt weights=input max-rank=4 d=2 gates=separate "
                      "dense-fallback=false}").run(module)
    lstm = module.ops_of("lstm")[0]
    assert (len(lstm.attrs["w"]), len(lstm.attrs["r"])) == (4, 1)
    stacked_r = lstm.attrs["r"][0].to_dense()
    float_logits = run_module(module, {"image_rows": images})
    np.savez(tmp_path / "cal.npz", image_rows=images)
    PassManager.parse(f"quantize{{bits=16 calibration={tmp_path / 'cal.npz'}}}").run(module)
    regrouped = module.ops_of("lstm")[0].attrs["r"]
    assert len(regrouped) == 4
    name = module.outputs[0].name
    fixed_logits = run_fixed(module, {"image_rows": images})[name]
    np.testing.assert_array_equal(fixed_logits.argmax(-1), float_logits[name].argmax(-1))
    assert np.abs(fixed_logits - float_logits[name]).max() < 1e-2 * np.abs(float_logits[name]).max()
    assert stacked_r.shape == (4 * regrouped[0].out_dim, regrouped[0].in_dim)
