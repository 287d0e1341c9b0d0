"""The output error a compile measures against the imported model, and the defaults of
``decompose`` that decide what it compresses.

* The error is computed as documented (``passes/fidelity.py``), checked against NumPy
  on the same outputs; classifiers get their top-1 agreement.
* ``compile`` puts it in the manifest and one summary line, from ``--calibration`` or a
  pass's ``calibration=``; without data it says so and shows the maps' weight errors.
* The warning appears when, and only when, the measured error passes ``--warn-error``:
  the same compile on either side of its own measured error.
* ``decompose`` with no options: an eps bound, W and a large R; maps too small or not
  worth decomposing stay dense with a note, the ONNX conformance LSTMs included.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from digits_classifier import STORED, digits
from test_cli import MODEL, assert_clean_error, run_cli
from test_decomposition_pass import lstm_module
from test_frontend_conformance import CASES, load_case
from tensorgate.cli import main
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_module
from tensorgate.ir.ops import recurrent_ops
from tensorgate.ir.tensor_formats import TensorizedMap
from tensorgate.passes import PassManager
from tensorgate.passes.decompose import DEFAULT_EPS, LARGE_RECURRENT, Decompose
from tensorgate.passes.fidelity import measure_fidelity

PIPELINE = "canonicalize, dce, decompose{method=tt max-rank=8}"


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "cal.npz"
    np.savez(path, x=digits()[0][:, :256])
    return path


def compile_digits(capsys, tmp_path, *options: str, pipeline: str = PIPELINE):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "compile", str(STORED), "-p", pipeline, "-o", str(out), *options)
    assert code == 0, stderr
    return json.loads((out / "manifest.json").read_text()), stdout, stderr


# --- the measurement ---------------------------------------------------------------------------


def test_the_error_is_the_worst_change_over_the_range_and_classifiers_get_agreement(calibration):
    sequence = lstm_module(12, 4)
    imported = sequence.copy()
    PassManager.parse("decompose{method=tt weights=all d=2 max-rank=1}").run(sequence)
    x = np.random.default_rng(2).standard_normal((3, 2, 12)).astype(np.float32)
    fidelity = measure_fidelity(imported, sequence, {"x": x}, "x.npz")
    expected = run_module(imported, {"x": x}, dtype=np.float64)
    actual = run_module(sequence, {"x": x}, dtype=np.float64)
    for row in fidelity.outputs:
        ref, diff = expected[row.name], actual[row.name] - expected[row.name]
        assert row.agreement is None
        assert row.relative_error == pytest.approx(np.abs(diff).max() / (ref.max() - ref.min()), rel=1e-12)
        assert row.rms_error == pytest.approx(np.sqrt(np.mean(diff**2)), rel=1e-12)
    assert fidelity.error == max(row.relative_error for row in fidelity.outputs) > 0

    teacher = PassManager.parse("canonicalize, dce").run(import_onnx(STORED))
    student = PassManager.parse("decompose{method=tt max-rank=2 weights=all}").run(teacher.copy())
    x = np.load(calibration)["x"]
    (row,) = measure_fidelity(teacher, student, {"x": x}, "cal.npz").outputs
    want = run_module(teacher, {"x": x}, dtype=np.float64)["logits"].argmax(-1)
    got = run_module(student, {"x": x}, dtype=np.float64)["logits"].argmax(-1)
    assert row.agreement == pytest.approx(np.mean(want == got)) and row.error == pytest.approx(1 - row.agreement)


# --- the compile report ------------------------------------------------------------------------


def test_the_manifest_and_the_summary_carry_the_measured_error(capsys, tmp_path, calibration):
    manifest, stdout, _ = compile_digits(capsys, tmp_path, "--calibration", str(calibration))
    report = manifest["output_error"]
    assert report["measured"] and report["data"] == str(calibration) and report["threshold"] == 0.05
    (logits,) = report["outputs"]
    assert logits["name"] == "logits" and report["error"] == pytest.approx(1 - logits["agreement"])
    line = next(text for text in stdout.splitlines() if text.startswith("output error"))
    assert f"top-1 agreement {logits['agreement']:.2%}" in line and str(calibration) in line
    assert f"-> {manifest['params']['compressed']:,}" in stdout


def test_a_pass_calibration_is_the_data_of_the_report(capsys, tmp_path, calibration):
    pipeline = f"canonicalize, dce, decompose{{method=tt max-rank=8 calibration={calibration}}}"
    manifest, _, stderr = compile_digits(capsys, tmp_path, pipeline=pipeline)
    assert manifest["output_error"]["data"] == str(calibration)
    assert "note: decompose: output error against the module before it on" in stderr
    assert any(note.startswith("decompose: output error") for note in manifest["notes"])


def test_without_data_the_error_is_unmeasured_and_the_weight_errors_are_shown(capsys, tmp_path):
    manifest, stdout, stderr = compile_digits(capsys, tmp_path)
    assert manifest["output_error"]["measured"] is False and "--calibration" in manifest["output_error"]["reason"]
    line = next(text for text in stdout.splitlines() if text.startswith("output error"))
    errors = [entry for entry in manifest["maps"] if entry["format"] == "tt"]
    assert line.startswith("output error: unmeasured") and errors
    assert all(f"{entry['name']} {entry['rel_error']:.1%}" in line for entry in errors)
    assert "warning" not in stderr


def test_the_warning_fires_exactly_above_the_threshold(capsys, tmp_path, calibration):
    manifest, _, stderr = compile_digits(capsys, tmp_path, "--calibration", str(calibration))
    error = manifest["output_error"]["error"]  # 61% of the decisions change at max-rank 8 without fine-tuning
    assert manifest["output_error"]["warning"] and error > 0.05
    assert "warning: output 'logits' is off the imported model's" in stderr and "more than 5%" in stderr
    above, _, quiet = compile_digits(capsys, tmp_path, "--calibration", str(calibration), "--warn-error",
                                     f"{error + 0.01:.4f}")
    assert not above["output_error"]["warning"] and "warning" not in quiet
    below, _, loud = compile_digits(capsys, tmp_path, "--calibration", str(calibration), "--warn-error",
                                    f"{error - 0.01:.4f}")
    assert below["output_error"]["warning"] and "warning: output 'logits'" in loud


def test_an_unchanged_model_measures_no_error_and_does_not_warn(capsys, tmp_path, calibration):
    manifest, _, stderr = compile_digits(capsys, tmp_path, "--calibration", str(calibration), "--warn-error", "0",
                                         pipeline="canonicalize, dce")
    assert manifest["output_error"]["outputs"][0]["agreement"] == 1.0 and "warning" not in stderr


def test_bad_calibration_and_threshold_are_usage_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", str(MODEL), "-o", str(tmp_path / "o"), "--calibration",
                           str(tmp_path / "missing.npz"))
    assert_clean_error(code, err, 2, "--calibration", "missing.npz", "does not exist")
    np.savez(tmp_path / "wrong.npz", nope=np.zeros(3))
    code, _, err = run_cli(capsys, "compile", str(MODEL), "-o", str(tmp_path / "o"), "--calibration",
                           str(tmp_path / "wrong.npz"))
    assert_clean_error(code, err, 1, "lacks image_rows")
    assert not (tmp_path / "o").exists()
    for value in ("1.5", "five"):
        with pytest.raises(SystemExit) as info:
            main(["compile", str(MODEL), "-o", str(tmp_path / "o"), "--warn-error", value])
        assert info.value.code == 2 and "--warn-error" in capsys.readouterr().err


# --- decompose's defaults ------------------------------------------------------------------------


def test_without_rank_options_each_map_meets_the_default_eps():
    module = lstm_module(64, 16)
    dense = {key: module.ops_of("lstm")[0].attrs[key][0].to_dense() for key in ("w", "r")}
    PassManager([Decompose(dense_fallback=False)]).run(module)
    for key, matrix in dense.items():
        decomposed = module.ops_of("lstm")[0].attrs[key][0]
        assert isinstance(decomposed, TensorizedMap) and 0 < decomposed.rel_error <= DEFAULT_EPS
        assert np.linalg.norm(decomposed.to_dense() - matrix) <= DEFAULT_EPS * np.linalg.norm(matrix) * (1 + 1e-6)


@pytest.mark.parametrize("hidden, recurrent", [(15, False), (16, True)])
def test_auto_weights_decompose_r_only_when_it_is_large(hidden, recurrent):
    assert (4 * hidden * hidden >= LARGE_RECURRENT) == recurrent
    module = lstm_module(64, hidden)
    PassManager([Decompose(eps=0, dense_fallback=False)]).run(module)
    formats = {key: module.ops_of("lstm")[0].attrs[key][0].format for key in ("w", "r")}
    assert formats == {"w": "tt", "r": "tt" if recurrent else "dense"}


def test_a_decomposition_that_is_neither_smaller_nor_cheaper_stays_dense_with_a_note():
    module = lstm_module(64, 16)
    PassManager([Decompose(eps=0.01)]).run(module)  # nearly exact: larger than the random matrices
    assert all(m.format == "dense" for key in ("w", "r") for m in module.ops_of("lstm")[0].attrs[key])
    assert len(module.notes) == 2 and all("left dense: its tt form at relative error" in n for n in module.notes)
    kept = lstm_module(64, 16)
    PassManager([Decompose(eps=0.01, dense_fallback=False)]).run(kept)
    assert all(m.format == "tt" for key in ("w", "r") for m in kept.ops_of("lstm")[0].attrs[key])


@pytest.mark.parametrize("name", CASES)
def test_default_decompose_runs_on_the_conformance_cases(name):
    """LSTM, GRU and RNN; their maps are tiny (an LSTM's 12x2 W): every map is decomposed or stays dense with a
    note (a 12x2 map is too small for 4 modes), and a model left dense computes what it did."""
    model, feeds, _ = load_case(name)
    module = import_onnx(model)
    expected = run_module(module, feeds)
    PassManager.parse("decompose").run(module)
    (op,) = recurrent_ops(module.ops)
    dense = [f"map 'w' #{i} " for i, m in enumerate(op.attrs["w"]) if m.format == "dense"]
    assert all(any(where in note and "left dense" in note for note in module.notes) for where in dense)
    if all(m.format == "dense" for key in ("w", "r") for m in op.attrs[key]):
        for key, value in run_module(module, feeds).items():
            np.testing.assert_array_equal(value, expected[key])
