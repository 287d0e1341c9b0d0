"""Every recurrent activation with its alpha/beta, against onnxruntime (issue 15, item 2).

The reference is onnxruntime on the input model with every alpha/beta written out at the
ONNX specification's defaults (``SPEC_DEFAULTS``, copied from the operator docs, not
from tensorgate).  The input model itself omits them, so tensorgate must fill in the
specification's defaults where onnxruntime would read 0 (Affine, ScaledTanh,
ThresholdedRelu): the NumPy runtime, the ``onnx`` target's ONNX node (dense maps) and its
Scan (decomposed maps) all compute the reference's numbers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from models import OnnxRecurrent, assert_close_f32, make_onnx_recurrent, run_onnxruntime

from tensorgate.backend.onnx_export import export_onnx
from tensorgate.cli import main
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.passes import PassManager

SPEC_DEFAULTS = {
    "Affine": (1.0, 0.0), "LeakyRelu": (0.01, None), "ThresholdedRelu": (1.0, None),
    "ScaledTanh": (1.0, 1.0), "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None),
}
"""(alpha, beta) of each activation that takes them, as the ONNX operator docs give them."""
TESTED = ("Affine", "ScaledTanh", "ThresholdedRelu", "LeakyRelu", "HardSigmoid", "Elu", "Softsign", "Softplus")
CELLS = {
    "LSTM": lambda a: ("Sigmoid", a, a),
    "GRU": lambda a: ("Sigmoid", a),
    "RNN": lambda a: (a, "Affine"),  # bidirectional: the backward direction's Affine takes the last alpha/beta
}
DECOMPOSE = "decompose{method=tt weights=all d=2 max-rank=2 dense-fallback=false}"


def config_of(op_type: str, activation: str, explicit: bool) -> OnnxRecurrent:
    activations = CELLS[op_type](activation)
    direction = "bidirectional" if op_type == "RNN" else "forward"
    alphas = [SPEC_DEFAULTS[a][0] for a in activations if a in SPEC_DEFAULTS]
    betas = [SPEC_DEFAULTS[a][1] for a in activations if a in SPEC_DEFAULTS and SPEC_DEFAULTS[a][1] is not None]
    outputs = ("Y", "Y_h", "Y_c") if op_type == "LSTM" else ("Y", "Y_h")
    return OnnxRecurrent(op_type=op_type, activations=activations, direction=direction, input_size=4,
                         hidden_size=4, outputs=outputs, activation_alpha=tuple(alphas) if explicit and alphas else None,
                         activation_beta=tuple(betas) if explicit and betas else None)


def reference_and_model(op_type: str, activation: str) -> tuple[dict, onnx.ModelProto, dict]:
    """onnxruntime's outputs on the explicit model, the model without alpha/beta, its feeds."""
    explicit, feeds = make_onnx_recurrent(config_of(op_type, activation, explicit=True))
    omitted, _ = make_onnx_recurrent(config_of(op_type, activation, explicit=False))
    return run_onnxruntime(explicit, feeds), omitted, feeds


def assert_matches(actual: dict, reference: dict, what: str) -> None:
    for name, value in reference.items():
        assert_close_f32(actual[name], value, f"{what}: {name}", atol_eps=16)


@pytest.mark.parametrize("activation", TESTED)
@pytest.mark.parametrize("op_type", sorted(CELLS))
def test_runtime_and_exports_compute_the_specification(op_type, activation):
    reference, omitted, feeds = reference_and_model(op_type, activation)
    module = import_onnx(omitted)
    assert_matches(run_module(module, feeds), reference, "NumPy runtime")
    node_export = export_onnx(module)
    assert op_type in {n.op_type for n in node_export.graph.node}
    assert_matches(run_onnxruntime(node_export, feeds), reference, "ONNX node export")
    decomposed = PassManager.parse(DECOMPOSE).run(module)
    scan_export = export_onnx(decomposed)
    assert "Scan" in {n.op_type for n in scan_export.graph.node}
    assert_matches(run_onnxruntime(scan_export, feeds), run_module(decomposed, feeds), "Scan export")


@pytest.mark.parametrize("op_type", sorted(CELLS))
def test_every_exported_node_writes_alpha_and_beta(op_type):
    """The node names alpha/beta for every activation that takes them (onnxruntime's
    default of 0 never applies)."""
    _, omitted, _ = reference_and_model(op_type, "ScaledTanh")
    export = export_onnx(import_onnx(omitted))
    (node,) = [n for n in export.graph.node if n.op_type == op_type]
    written = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    activations = [a.decode() for a in written["activations"]]
    assert len(activations) == len(CELLS[op_type]("ScaledTanh"))
    assert written["activation_alpha"] == [SPEC_DEFAULTS[a][0] for a in activations if a in SPEC_DEFAULTS]
    assert written["activation_beta"] == [SPEC_DEFAULTS[a][1] for a in activations
                                          if a in SPEC_DEFAULTS and SPEC_DEFAULTS[a][1] is not None]


def test_cli_run_of_an_onnx_artifact_equals_onnxruntime(tmp_path):
    """The issue's case: an LSTM with Affine, ``tensorgate run ox/`` against onnxruntime on
    ``ox/model.onnx``."""
    reference, omitted, feeds = reference_and_model("LSTM", "Affine")
    onnx.save(omitted, tmp_path / "model.onnx")
    np.savez(tmp_path / "inputs.npz", **feeds)
    assert main(["compile", str(tmp_path / "model.onnx"), "--target", "onnx", "-o", str(tmp_path / "ox")]) == 0
    assert main(["run", str(tmp_path / "ox"), "--input", str(tmp_path / "inputs.npz"), "--output",
                 str(tmp_path / "out.npz")]) == 0
    ran = dict(np.load(tmp_path / "out.npz"))
    assert_matches(ran, reference, "tensorgate run")
    assert_matches(run_onnxruntime(tmp_path / "ox" / "model.onnx", feeds), reference, "onnxruntime on the export")
