"""The ``onnx`` target on GRU and RNN modules, float and compressed: onnxruntime on the
export equals the NumPy runtime on the module (``models.assert_close_f32``), and
importing the export gives the module back (same map formats, bit-identical tensors)."""

from __future__ import annotations

import numpy as np
import pytest
from decomposed import module_differences, random_feeds, random_map, recurrent_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import OnnxRecurrent, TorchRecurrent, assert_close_f32, make_onnx_recurrent, run_onnxruntime
from onnx import helper
from test_onnx_export import check_export, op_types

from tensorgate.backend.onnx_export import export_onnx
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.ir.types import F64
from tensorgate.onnx_form import SCAN_KEYS, LoweringChoices
from tensorgate.onnx_form.recurrent import recurrent_strategy
from tensorgate.passes import PassManager

H, I = 4, 6
GATES = {"gru": 3, "rnn": 1}


def maps(kind: str, fmt: str, rng, per_dir: int, dirs: int, columns: int):
    """``per_dir`` maps per direction (1 stacked, or one per gate) of ``columns`` inputs."""
    rows = GATES[kind] * H // per_dir
    out_factors, in_factors = {12: (3, 4), 4: (2, 2)}[rows], {6: (2, 3), 4: (2, 2)}[columns]
    if fmt == "dense":
        return [random_map("dense", rng, (rows,), (columns,)) for _ in range(per_dir * dirs)]
    return [random_map(fmt, rng, out_factors, in_factors) for _ in range(per_dir * dirs)]


def module_of(kind, w_fmt, r_fmt, direction="forward", per_gate=False, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    per_dir = GATES[kind] if per_gate else 1
    return recurrent_module(kind, maps(kind, w_fmt, rng, per_dir, dirs, I), maps(kind, r_fmt, rng, per_dir, dirs, H),
                            H, I, direction=direction, seed=seed, **kwargs), rng


LBR = [("gru", {"linear_before_reset": 0}), ("gru", {"linear_before_reset": 1}), ("rnn", {})]
IDS = ["gru_lbr0", "gru_lbr1", "rnn"]


@pytest.mark.parametrize("kind, own", LBR, ids=IDS)
@pytest.mark.parametrize("w_fmt, r_fmt, strategy", [
    ("dense", "dense", "native"), ("tt", "dense", "projected"), ("bt", "dense", "projected"),
    ("dense", "ht", "scan"), ("tt", "tt", "scan"),
])
def test_each_strategy_reproduces_the_runtime(kind, own, w_fmt, r_fmt, strategy):
    module, rng = module_of(kind, w_fmt, r_fmt, "bidirectional", sequence_lens=True, initial_h=True, **own)
    assert recurrent_strategy(module.ops[0]) == strategy
    check_export(module, random_feeds(module, rng))
    model = export_onnx(module, LoweringChoices(recurrent="node"))
    node = kind.upper()
    assert (node in op_types(model)) == (strategy != "scan") and ("Scan" in op_types(model)) == (strategy == "scan")


@pytest.mark.parametrize("kind, own", LBR, ids=IDS)
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_per_gate_maps_and_clip_take_the_scan(kind, own, direction):
    module, rng = module_of(kind, "ht", "tt", direction, per_gate=True, clip=0.7, sequence_lens=True, **own)
    assert recurrent_strategy(module.ops[0]) == "scan"
    check_export(module, random_feeds(module, rng))


def test_stacked_decomposed_r_without_linear_before_reset():
    """R_h reads r ⊙ h: the stacked map is applied twice in the body; it comes back once."""
    module, rng = module_of("gru", "dense", "tt", "bidirectional", linear_before_reset=0)
    model = check_export(module, random_feeds(module, rng))
    scan = next(n for n in model.graph.node if n.op_type == "Scan")
    assert scan.metadata_props[0].key == SCAN_KEYS["gru"]


@pytest.mark.parametrize("kind, own", LBR, ids=IDS)
def test_float64_runs_as_scan(kind, own):
    """onnxruntime's recurrent ops have no float64 kernel, so even dense maps take the Scan."""
    module, rng = module_of(kind, "dense", "dense", "bidirectional", dtype=F64, sequence_lens=True, **own)
    assert recurrent_strategy(module.ops[0]) == "scan"
    model = export_onnx(module)
    feeds = random_feeds(module, rng)
    expected, actual = run_module(module, feeds, dtype=np.float64), run_onnxruntime(model, feeds)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-12, atol=1e-14)
    assert module_differences(module, import_onnx(model)) == []


@pytest.mark.parametrize("kind, own", LBR, ids=IDS)
@pytest.mark.parametrize("r_fmt", ["dense", "tt"])
def test_batch_major_comes_back_between_transposes(kind, own, r_fmt):
    module, rng = module_of(kind, "tt", r_fmt, layout=1, initial_h=True, sequence_lens=True, **own)
    model = export_onnx(module)
    feeds = random_feeds(module, rng)
    expected, actual = run_module(module, feeds), run_onnxruntime(model, feeds)
    for name in expected:
        assert_close_f32(actual[name], expected[name], name)
    back = import_onnx(model)
    assert [op.kind for op in back.ops].count("transpose") == 4
    (op,) = back.ops_of(kind)
    assert op.attrs["layout"] == 0 and op.attrs["w"] == module.ops[0].attrs["w"]
    for name, value in run_module(back, feeds).items():
        np.testing.assert_array_equal(value, expected[name])


GRU_ACTIVATIONS = [  # alpha/beta exact in float32, as an ONNX node holds them
    (["HardSigmoid", "ScaledTanh"], [0.25, 0.75], [0.375, 0.875]),
    (["Sigmoid", "Affine"], None, None),
    (["Softsign", "LeakyRelu"], None, None),
]
RNN_ACTIVATIONS = [(["Relu"], None, None), (["ScaledTanh"], None, [0.5]), (["Affine"], [0.5], None)]


@pytest.mark.parametrize("r_fmt", ["dense", "tt"])
@pytest.mark.parametrize("kind, activations, alpha, beta", [("gru", *a) for a in GRU_ACTIVATIONS]
                         + [("rnn", *a) for a in RNN_ACTIVATIONS])
def test_activations_with_and_without_alpha_beta(kind, activations, alpha, beta, r_fmt):
    """In the node (dense R) alpha/beta are written out with the specification's defaults
    (onnxruntime would read an omitted Affine/ScaledTanh alpha or beta as 0); in the Scan
    (decomposed R) they are constants of the cell."""
    own = {"linear_before_reset": 1} if kind == "gru" else {}
    module, rng = module_of(kind, "dense", r_fmt, activations=activations, activation_alpha=alpha,
                            activation_beta=beta, **own)
    model = check_export(module, random_feeds(module, rng))
    if r_fmt == "dense":
        (node,) = [n for n in model.graph.node if n.op_type == kind.upper()]
        written = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        takes_alpha = [name for name in activations if name in ("HardSigmoid", "ScaledTanh", "Affine", "LeakyRelu")]
        assert len(written.get("activation_alpha", [])) == len(takes_alpha)


@pytest.mark.parametrize("config", [
    OnnxRecurrent(op_type="GRU", outputs=("Y", "Y_h")),
    OnnxRecurrent(op_type="GRU", direction="bidirectional", linear_before_reset=1, sequence_lens=True,
                  initial_h=True, clip=0.5, outputs=("Y", "Y_h")),
    OnnxRecurrent(op_type="RNN", direction="reverse", activations=("Relu",), outputs=("Y", "Y_h")),
])
def test_dense_imports_are_the_onnx_op_as_imported_and_canonicalized(config):
    """Imported as is (ONNX's bias) and canonicalized (folded bias written as Pad(b); a
    GRU with linear_before_reset keeps its bias)."""
    model, feeds = make_onnx_recurrent(config)
    module = import_onnx(model)
    assert op_types(check_export(module, feeds)) == {config.op_type}
    folded = PassManager.parse("canonicalize, dce").run(module)
    expected = {config.op_type} if config.linear_before_reset else {config.op_type, "Pad"}
    assert op_types(check_export(folded, feeds)) == expected


@pytest.mark.parametrize("pipeline", [
    "decompose{method=tt weights=input d=2 max-rank=2 dense-fallback=false}",
    "decompose{method=bt weights=all gates=separate d=2 tucker-rank=2 dense-fallback=false}, canonicalize",
    "decompose{method=ht weights=recurrent d=2 max-rank=2 dense-fallback=false}, order-contractions",
])
@pytest.mark.parametrize("op_type, lbr", [("GRU", 0), ("GRU", 1), ("RNN", 0)])
def test_decompose_pass_output(op_type, lbr, pipeline):
    model, feeds = make_onnx_recurrent(OnnxRecurrent(op_type=op_type, linear_before_reset=lbr,
                                                     direction="bidirectional", sequence_lens=True, input_size=7,
                                                     hidden_size=5, outputs=("Y", "Y_h")))
    module = PassManager.parse(pipeline).run(import_onnx(model))
    (op,) = module.ops_of(op_type.lower())
    assert any(m.format != "dense" for key in ("w", "r") for m in op.attrs[key])
    check_export(module, feeds)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(cell=st.sampled_from(["gru", "rnn_tanh", "rnn_relu"]), layers=st.integers(1, 2),
       bidirectional=st.booleans(), batch_first=st.booleans(), method=st.sampled_from(["tt", "ht"]))
def test_torch_models_compressed_round_trip(torch_export, cell, layers, bidirectional, batch_first, method):
    config = TorchRecurrent(cell=cell, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                            hidden_size=6, input_size=4)
    module = import_onnx(torch_export(config))
    module = PassManager.parse(f"canonicalize, dce, decompose{{method={method} weights=all d=2 max-rank=2 "
                               "dense-fallback=false}, order-contractions").run(module)
    feeds = {"x": np.random.default_rng(9).standard_normal(config.input_shape(batch=3, seq=5)).astype(np.float32)}
    check_export(module, feeds)
