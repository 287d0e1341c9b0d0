"""The ``onnx`` target: onnxruntime on the exported model equals the NumPy runtime on the
module (float32: rtol 1e-5 plus float32 rounding, see ``models.assert_close_f32``), and
importing the export gives the module back (same map formats, bit-identical tensors)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from decomposed import classifier_module, lstm_module, module_differences, random_feeds, random_map
from hypothesis import given, settings
from hypothesis import strategies as st
from models import OnnxRecurrent, TorchRecurrent, assert_close_f32, make_onnx_recurrent, run_onnxruntime

from tensorgate.backend.artifact import load_artifact
from tensorgate.backend.onnx_export import ONNX_FILE, export_onnx, tune_choices, write_onnx_artifact
from tensorgate.frontend import import_onnx
from tensorgate.frontend.raise_export import ExportRaiser
from tensorgate.interpreter import run_module
from tensorgate.ir.builder import Builder
from tensorgate.ir.core import Module
from tensorgate.ir.types import F32, F64, TensorType
from tensorgate.onnx_form import ANNOTATIONS_KEY, MAP_FORMS, OPSET, RECURRENT_FORMS, SCAN_KEYS, LoweringChoices
from tensorgate.onnx_form.recurrent import recurrent_strategy
from tensorgate.passes import PassManager


EVERY_CHOICE = [LoweringChoices(maps, recurrent) for maps in MAP_FORMS for recurrent in RECURRENT_FORMS]


def check_export(module: Module, feeds: dict, atol_eps: float = 4,
                 choices: LoweringChoices | None = None) -> onnx.ModelProto:
    """onnxruntime on the export equals the NumPy runtime; the import is the module.  Every
    distinct export the lowering choices make is checked (``choices``: only that one);
    returns the default's."""
    expected = run_module(module, feeds)
    checked: set[bytes] = set()
    for choice in [choices] if choices is not None else [LoweringChoices()] + EVERY_CHOICE:
        model = export_onnx(module, choice)
        if model.SerializeToString() in checked:
            continue
        checked.add(model.SerializeToString())
        actual = run_onnxruntime(model, feeds)
        for name, value in expected.items():
            assert_close_f32(actual[name], value, f"{name} ({choice})", atol_eps)
        assert module_differences(module, import_onnx(model)) == [], choice
    return export_onnx(module, choices or LoweringChoices())


def op_types(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


# --- LSTMs --------------------------------------------------------------------------------

H, I = 4, 6
GATES = (4 * H,)


def maps(fmt: str, rng, count: int, out_factors=(4, 4), in_factors=(2, 3), **kwargs):
    return [random_map(fmt, rng, out_factors, in_factors, **kwargs) for _ in range(count)]


@pytest.mark.parametrize("fmt", ["tt", "bt", "ht"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_decomposed_input_map_runs_as_identity_lstm(fmt, direction):
    """W decomposed, R dense: the core contraction feeds an LSTM whose W is the identity."""
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    module = lstm_module(maps(fmt, rng, dirs), maps("dense", rng, dirs, in_factors=(4,), out_factors=(16,)),
                         H, I, direction=direction, sequence_lens=True, initial_h=True)
    assert recurrent_strategy(module.ops[0]) == "projected"
    check_export(module, random_feeds(module, rng))
    model = export_onnx(module, LoweringChoices(recurrent="node"))
    assert {"MatMul", "EyeLike", "LSTM"} <= op_types(model) and not {"Scan", "Einsum"} & op_types(model)
    assert {"Einsum", "EyeLike", "LSTM"} <= op_types(export_onnx(module, LoweringChoices("einsum", "node")))
    assert "Scan" in op_types(export_onnx(module)), "by default a decomposed W feeds a Scan"
    w_input = next(n for n in model.graph.node if n.op_type == "LSTM").input[1]
    assert w_input not in {t.name for t in model.graph.initializer}, "the identity must not be stored"


@pytest.mark.parametrize("fmt", ["tt", "bt", "ht"])
def test_decomposed_recurrent_map_runs_as_scan(fmt):
    rng = np.random.default_rng(1)
    module = lstm_module(maps(fmt, rng, 1), maps(fmt, rng, 1, in_factors=(2, 2)), H, I)
    assert recurrent_strategy(module.ops[0]) == "scan"
    model = check_export(module, random_feeds(module, rng))
    assert "Scan" in op_types(model) and "LSTM" not in op_types(model)


def test_bidirectional_scan_with_every_lstm_feature():
    """Mixed formats per direction, padding, peepholes, clip, ragged lengths, initial states."""
    rng = np.random.default_rng(2)
    w = [random_map("tt", rng, (3, 6), (2, 4), out_pad=2, in_pad=2), random_map("ht", rng, (4, 4), (3, 2))]
    r = [random_map("bt", rng, (4, 4), (2, 2)), random_map("tt", rng, (4, 4), (2, 2))]
    module = lstm_module(w, r, H, I, direction="bidirectional", peepholes=True, sequence_lens=True,
                         initial_h=True, initial_c=True, clip=0.7)
    check_export(module, random_feeds(module, rng))


def test_per_gate_maps_reverse_input_forget():
    rng = np.random.default_rng(3)
    module = lstm_module(maps("dense", rng, 4, out_factors=(4,), in_factors=(6,)),
                         maps("tt", rng, 4, out_factors=(2, 2), in_factors=(2, 2)), H, I,
                         direction="reverse", sequence_lens=True, input_forget=1)
    check_export(module, random_feeds(module, rng))


@pytest.mark.parametrize("activations,alpha,beta", [
    (["HardSigmoid", "ScaledTanh", "Affine"], [0.3, 0.7, 1.3], [0.2, 0.9, 0.1]),
    (["LeakyRelu", "Elu", "Softsign"], [0.3, 0.7], None),
    (["ThresholdedRelu", "Softplus", "Relu"], [0.1], None),
])
def test_scan_cell_activations(activations, alpha, beta):
    rng = np.random.default_rng(4)
    module = lstm_module(maps("dense", rng, 1, out_factors=(16,), in_factors=(6,)), maps("tt", rng, 1, in_factors=(2, 2)),
                         H, I, peepholes=True, clip=1.0, activations=activations, activation_alpha=alpha,
                         activation_beta=beta)
    check_export(module, random_feeds(module, rng))


def test_float64_lstm_runs_as_scan():
    """onnxruntime's LSTM has no float64 kernel, so even dense maps take the Scan."""
    rng = np.random.default_rng(5)
    module = lstm_module(maps("tt", rng, 1), maps("dense", rng, 1, out_factors=(16,), in_factors=(4,)), H, I,
                         dtype=F64, peepholes=True, sequence_lens=True)
    assert recurrent_strategy(module.ops[0]) == "scan"
    model = export_onnx(module)
    feeds = random_feeds(module, rng)
    expected, actual = run_module(module, feeds, dtype=np.float64), run_onnxruntime(model, feeds)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-12, atol=1e-14)
    assert module_differences(module, import_onnx(model)) == []


def test_batch_major_lstm_comes_back_between_transposes():
    rng = np.random.default_rng(6)
    for r in (maps("dense", rng, 1, out_factors=(16,), in_factors=(4,)), maps("tt", rng, 1, in_factors=(2, 2))):
        module = lstm_module(maps("tt", rng, 1), r, H, I, layout=1, initial_h=True, sequence_lens=True)
        model = export_onnx(module)
        feeds = random_feeds(module, rng)
        expected, actual = run_module(module, feeds), run_onnxruntime(model, feeds)
        for name in expected:
            assert_close_f32(actual[name], expected[name], name)
        back = import_onnx(model)
        assert [op.kind for op in back.ops].count("transpose") == 5
        lstm = back.ops_of("lstm")[0]
        assert lstm.attrs["layout"] == 0 and lstm.attrs["w"] == module.ops[0].attrs["w"]
        for name, value in run_module(back, feeds).items():
            np.testing.assert_array_equal(value, expected[name])


@pytest.mark.parametrize("config", [
    OnnxRecurrent(),
    OnnxRecurrent(direction="bidirectional", peepholes=True, sequence_lens=True, initial_h=True, initial_c=True,
             clip=0.5),
    OnnxRecurrent(direction="reverse", activations=("HardSigmoid", "ScaledTanh", "Affine"),
             activation_alpha=(0.3, 0.7, 1.3), activation_beta=(0.2, 0.9, 0.1), input_forget=1),
])
def test_dense_lstm_is_the_onnx_lstm_op(config):
    """Imported as is (8H bias) and canonicalized (folded 4H bias, written as Pad(b))."""
    model, feeds = make_onnx_recurrent(config)
    module = import_onnx(model)
    assert op_types(check_export(module, feeds)) == {"LSTM"}
    folded = PassManager.parse("canonicalize, dce").run(module)
    assert folded.ops_of("lstm")[0].attrs["bias"].shape[1] == 4 * config.hidden_size
    assert op_types(check_export(folded, feeds)) == {"LSTM", "Pad"}


@pytest.mark.parametrize("pipeline", [
    "decompose{method=tt weights=input d=2 max-rank=2 dense-fallback=false}",
    "decompose{method=bt weights=all gates=separate d=2 tucker-rank=2 dense-fallback=false}, canonicalize",
    "decompose{method=ht weights=recurrent d=2 max-rank=2 dense-fallback=false}, order-contractions",
])
def test_decompose_pass_output(pipeline):
    """Maps as the decompose pass makes them (padding included) on an imported LSTM."""
    model, feeds = make_onnx_recurrent(OnnxRecurrent(direction="bidirectional", peepholes=True, sequence_lens=True,
                                           input_size=7, hidden_size=5))
    module = PassManager.parse(pipeline).run(import_onnx(model))
    assert any(m.format != "dense" for key in ("w", "r") for m in module.ops_of("lstm")[0].attrs[key])
    check_export(module, feeds)


# --- heads, other ops, torch models ---------------------------------------------------------


@pytest.mark.parametrize("head_format", ["dense", "tt"])
def test_classifier_with_decomposed_head(head_format):
    rng = np.random.default_rng(7)
    head = random_map(head_format, rng, (2, 3), (2, 2), out_pad=1) if head_format == "tt" else None
    module = classifier_module(maps("ht", rng, 1), maps("dense", rng, 1, out_factors=(16,), in_factors=(4,)),
                               H, I, classes=5, head=head)
    check_export(module, random_feeds(module, rng, {"batch": 4}))


def test_linear_on_rank3_input_and_generic_ops():
    """A linear op with bias on a [T, B, F] value next to a linear + add of a constant
    (which must not merge into one), matmul by a constant, and the shape ops."""
    rng = np.random.default_rng(8)
    module = Module("main")
    b = Builder(module)
    x = b.input("x", TensorType(("seq", "batch", 6), F32))
    tt_map = random_map("tt", rng, (2, 4), (3, 2))
    biased = b.op("linear", [x], {"weight": tt_map, "bias": rng.standard_normal(8).astype(np.float32)},
                  names=["biased"]).result
    plain = b.op("linear", [x], {"weight": random_map("bt", rng, (2, 4), (3, 2))}, names=["plain"]).result
    shifted = b.op("add", [plain, b.const(rng.standard_normal(8).astype(np.float32), "shift")], names=["shifted"]).result
    both = b.op("concat", [biased, shifted], {"axis": -1}, names=["both"]).result
    product = b.op("matmul", [both, b.const(rng.standard_normal((16, 3)).astype(np.float32), "proj")],
                   names=["product"]).result
    sliced = b.op("slice", [product], {"starts": [-1, 0], "ends": [-5, 2], "axes": [0, 2], "steps": [-2, 1]},
                  names=["sliced"]).result
    moved = b.op("transpose", [b.op("tanh", [sliced]).result], {"perm": [1, 0, 2]}, names=["moved"]).result
    flat = b.op("flatten", [moved], {"axis": 1}, names=["flat"]).result
    halves = b.op("split", [flat], {"axis": 1, "sizes": [1, 3]}, names=["left", "right"]).results
    picked = b.op("gather", [halves[1], b.const(np.array([2, 0]), "index")], {"axis": 1}, names=["picked"]).result
    module.outputs = [b.op("log_softmax", [picked], {"axis": -1}, names=["out"]).result,
                      b.op("shape", [x], {"start": 1}, names=["dims"]).result]
    check_export(module, random_feeds(module, rng, {"seq": 6}))


@pytest.mark.slow
@pytest.mark.parametrize("config", [TorchRecurrent(head="softmax", bidirectional=True),
                                    TorchRecurrent(exporter="dynamo", opset=18, batch_first=True)])
def test_torch_classifier_round_trip(torch_export, config):
    module = import_onnx(torch_export(config))
    module = PassManager.parse("canonicalize, dce").run(module)
    feeds = {"x": np.random.default_rng(9).standard_normal(config.input_shape(batch=3, seq=6)).astype(np.float32)}
    check_export(module, feeds)


# --- schedules, artifacts, errors --------------------------------------------------------


def test_contraction_schedule_is_followed_and_comes_back():
    rng = np.random.default_rng(10)
    module = lstm_module(maps("ht", rng, 1, out_factors=(2, 2, 4), in_factors=(1, 2, 3)),
                         maps("tt", rng, 1, in_factors=(2, 2)), H, I)
    module = PassManager.parse("order-contractions{precontract=always}").run(module)
    assert all(m.schedule is not None for key in ("w", "r") for m in module.ops[0].attrs[key])
    model = check_export(module, random_feeds(module, rng))
    hints = [p for n in model.graph.node for p in n.metadata_props if p.key == ANNOTATIONS_KEY]
    body = next(n for n in model.graph.node if n.op_type == "Scan").attribute[0].g
    hints += [p for n in body.node for p in n.metadata_props if p.key == ANNOTATIONS_KEY]
    assert len(hints) == 2


def test_onnx_artifact(tmp_path):
    rng = np.random.default_rng(11)
    module = classifier_module(maps("tt", rng, 1), maps("tt", rng, 1, in_factors=(2, 2)), H, I, classes=3)
    out = write_onnx_artifact(module, tmp_path / "art", "canonicalize", "model.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "onnx" and manifest["onnx"] == ONNX_FILE and manifest["opset"] == OPSET
    feeds = random_feeds(module, rng)
    expected = run_module(module, feeds)["probs"]
    assert_close_f32(run_onnxruntime(out / ONNX_FILE, feeds)["probs"], expected)
    assert module_differences(module, import_onnx(out / ONNX_FILE)) == []
    assert module_differences(module, load_artifact(out)[0]) == []


def test_tuned_artifact_records_its_measured_choice(tmp_path):
    """``tune`` measures every distinct export and writes one of them; whichever it is, it
    runs like the module and raises back to it (no timing is asserted)."""
    rng = np.random.default_rng(12)
    module = lstm_module(maps("tt", rng, 1), maps("dense", rng, 1, in_factors=(4,), out_factors=(16,)), H, I)
    choices, timings = tune_choices(module, repeats=2)
    assert choices in EVERY_CHOICE and timings and all(ms > 0 for ms in timings.values())
    assert len(timings) == len({export_onnx(module, c).SerializeToString() for c in EVERY_CHOICE})
    out = write_onnx_artifact(module, tmp_path / "art", "order-contractions", "model.onnx", tune=True)
    lowering = json.loads((out / "manifest.json").read_text())["onnx_lowering"]
    assert set(lowering) == {"maps", "recurrent", "tuned_ms"} and lowering["tuned_ms"].keys() == timings.keys()
    feeds = random_feeds(module, rng)
    assert_close_f32(run_onnxruntime(out / ONNX_FILE, feeds)["Y"], run_module(module, feeds)["Y"])
    assert module_differences(module, import_onnx(out / ONNX_FILE)) == []


def test_matmul_form_multiplies_by_reshaped_cores():
    """The default form: one MatMul per contraction step, by a core reshaped to a matrix
    (a constant subgraph of the core itself); no Einsum; the whole map description on
    its last node."""
    rng = np.random.default_rng(14)
    tt = random_map("tt", rng, (4, 2, 2), (2, 3, 3))
    module = classifier_module([tt], maps("dense", rng, 1, in_factors=(4,), out_factors=(16,)), H, 18, classes=3)
    model = check_export(module, random_feeds(module, rng))
    described = [json.loads(p.value) for n in model.graph.node for p in n.metadata_props if p.key == ANNOTATIONS_KEY]
    assert len(described) == 1 and described[0]["format"] == "tt"
    assert described[0]["tensors"] == {f"g{k}": list(core.shape) for k, core in enumerate(tt.cores)}
    steps = [n for n in model.graph.node if n.op_type == "MatMul" and "/net0/step" in n.name]
    assert len(steps) == tt.d and "Einsum" not in op_types(model)
    cores = {t.name for t in model.graph.initializer if t.dims[:1] and len(t.dims) == 4}
    assert len(cores) == tt.d, "the initializers are the cores themselves"


def test_models_from_elsewhere_and_edited_exports_are_not_raised():
    rng = np.random.default_rng(13)
    module = lstm_module(maps("tt", rng, 1), maps("tt", rng, 1, in_factors=(2, 2)), H, I)
    model = export_onnx(module)
    assert ExportRaiser(model).claimed
    foreign = onnx.ModelProto()
    foreign.CopyFrom(model)
    foreign.producer_name = "elsewhere"
    assert not ExportRaiser(foreign).claimed
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    scan = next(n for n in edited.graph.node if n.op_type == "Scan")
    hint = json.loads(scan.metadata_props[0].value)
    scan.metadata_props[0].value = json.dumps({**hint, "clip": 3.0})  # no longer what the body computes
    raiser = ExportRaiser(edited)
    assert all(scan.output[0] not in raiser.claimed for scan in edited.graph.node if scan.op_type == "Scan")
    assert scan.metadata_props[0].key == SCAN_KEYS["lstm"]


# --- property: any tensorization of a linear map ------------------------------------------


@st.composite
def tensorized_maps(draw):
    fmt = draw(st.sampled_from(["tt", "bt", "ht"]))
    d = draw(st.integers(1, 3))
    out_factors = draw(st.lists(st.integers(1, 4), min_size=d, max_size=d))
    in_factors = draw(st.lists(st.integers(1, 4), min_size=d, max_size=d))
    out_pad = draw(st.integers(0, int(np.prod(out_factors)) - 1))
    in_pad = draw(st.integers(0, int(np.prod(in_factors)) - 1))
    rank, seed = draw(st.integers(1, 3)), draw(st.integers(0, 2**16))
    return random_map(fmt, np.random.default_rng(seed), out_factors, in_factors, rank=rank,
                      blocks=draw(st.integers(1, 2)), out_pad=out_pad, in_pad=in_pad)


@settings(max_examples=25, deadline=None)
@given(tensorized_maps(), st.integers(1, 3), st.booleans())
def test_any_tensorized_linear_map(linear_map, rank, bias):
    module = Module("main")
    b = Builder(module)
    x = b.input("x", TensorType((2,) * (rank - 1) + (linear_map.in_dim,), F32))
    attrs = {"weight": linear_map, "bias": np.linspace(-1, 1, linear_map.out_dim, dtype=np.float32) if bias else None}
    module.outputs = [b.op("linear", [x], attrs, loc="map", names=["y"]).result]
    check_export(module, random_feeds(module, np.random.default_rng(0)))
