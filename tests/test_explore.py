"""`tensorgate explore`: the CSV and plot of a sweep on the bundled classifier, the Pareto
marking, failed configurations recorded as rows, and bad options refused before any
output is written.  (Running on Dask, resuming and failures: test_explore_cluster.py.)"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from models import OnnxRecurrent, make_onnx_recurrent
from tensorgate.ir.stats import model_stats
from tensorgate.cli import main
from tensorgate.demo import demo_files
from tensorgate.explore import COLUMNS, TIMING_COLUMNS, ExploreOptions, explore, pareto_mask
from tensorgate.frontend import import_onnx
from tensorgate.passes import PassManager

MODEL, INPUTS = demo_files()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def untimed(row: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in row.items() if key not in TIMING_COLUMNS}


def by_config(rows) -> dict[tuple[str, str, str], dict[str, str]]:
    return {(row["method"], row["rank"], row["bits"]): row for row in rows}


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory):
    """One CLI sweep of the demo classifier: dense and TT rank 2, float and 8/16 bits."""
    out = tmp_path_factory.mktemp("explore") / "sweep"
    code = main(["explore", str(MODEL), "--data", str(INPUTS), "--methods", "dense,tt", "--ranks", "2",
                 "--bits", "none,8,16", "--workers", "1", "-o", str(out)])
    assert code == 0
    return out


def test_csv_has_one_row_per_configuration(demo_sweep):
    with open(demo_sweep / "explore.csv", newline="") as stream:
        assert tuple(next(csv.reader(stream))) == COLUMNS
    rows = read_csv(demo_sweep / "explore.csv")
    assert [(r["method"], r["rank"], r["bits"]) for r in rows] == [
        ("dense", "", "none"), ("dense", "", "8"), ("dense", "", "16"),
        ("tt", "2", "none"), ("tt", "2", "8"), ("tt", "2", "16")]
    assert all(r["status"] == "ok" and r["message"] == "" for r in rows)
    assert all(float(r["cycles_per_step"]) > 0 and int(r["macs_per_step"]) > 0 for r in rows)


def test_metrics_match_references(demo_sweep):
    rows = by_config(read_csv(demo_sweep / "explore.csv"))
    with np.load(INPUTS) as data:
        images, labels = data["image_rows"], data["labels"]
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"image_rows": images})[0]
    dense = rows["dense", "", "none"]
    assert float(dense["accuracy"]) == pytest.approx(np.mean(probabilities.argmax(-1) == labels))
    assert float(dense["rel_error"]) == 0.0 and float(dense["agreement"]) == 1.0
    # 16-bit logits put back through softmax land near the float probabilities
    assert float(rows["dense", "", "16"]["rel_error"]) < 1e-3
    assert float(rows["dense", "", "16"]["agreement"]) == 1.0
    decomposed = PassManager.parse("canonicalize, dce, decompose{method=tt weights=all max-rank=2}").run(
        import_onnx(MODEL))
    params = model_stats(decomposed).params_compressed
    assert {int(rows["tt", "2", bits]["params"]) for bits in ("none", "8", "16")} == {params}
    assert float(rows["tt", "2", "none"]["compression"]) == pytest.approx(int(dense["params"]) / params, rel=1e-5)


def test_pareto_column_matches_the_front(demo_sweep):
    rows = read_csv(demo_sweep / "explore.csv")
    expected = pareto_mask([(int(r["params"]), float(r["accuracy"])) for r in rows], higher_is_better=True)
    assert [r["pareto"] == "true" for r in rows] == expected


def test_plot_is_a_png(demo_sweep):
    image = (demo_sweep / "pareto.png").read_bytes()
    assert image.startswith(PNG_SIGNATURE) and len(image) > 10_000
    assert sorted(p.name for p in demo_sweep.iterdir()) == ["explore.csv", "pareto.png", "points"]
    assert len(list((demo_sweep / "points").iterdir())) == 6


def test_pareto_mask_on_constructed_points():
    points = [(100, 0.9), (200, 0.95), (150, 0.85), (100, 0.9), (300, 0.95), (50, 0.5)]
    assert pareto_mask(points, higher_is_better=True) == [True, True, False, True, False, True]
    errors = [(100, 0.1), (200, 0.05), (150, 0.2), (200, 0.01), (40, 0.3)]
    assert pareto_mask(errors, higher_is_better=False) == [True, False, False, True, True]
    assert pareto_mask([], higher_is_better=True) == []


@pytest.fixture(scope="module")
def relu_lstm(tmp_path_factory):
    """An LSTM whose cell activation is Relu: it runs in float, quantize refuses it."""
    directory = tmp_path_factory.mktemp("relu")
    model, feeds = make_onnx_recurrent(OnnxRecurrent(activations=("Sigmoid", "Tanh", "Relu"), outputs=("Y_h",)))
    onnx.save(model, directory / "relu.onnx")
    np.savez(directory / "data.npz", **feeds)
    return directory / "relu.onnx", directory / "data.npz"


def test_failing_configuration_is_recorded(relu_lstm, tmp_path):
    model, data = relu_lstm
    out = tmp_path / "out"
    assert main(["explore", str(model), "--data", str(data), "--methods", "dense,ht", "--ranks", "2",
                 "--bits", "none,8", "--workers", "1", "-o", str(out)]) == 0
    rows = by_config(read_csv(out / "explore.csv"))
    for method, rank in (("dense", ""), ("ht", "2")):
        failed = rows[method, rank, "8"]
        assert failed["status"] == "failed" and "activations" in failed["message"]
        assert failed["params"] == failed["pareto"] == ""
        ok = rows[method, rank, "none"]
        assert ok["status"] == "ok" and ok["accuracy"] == "" and float(ok["rel_error"]) >= 0
        assert ok["cycles_per_step"] == "" and ok["message"].startswith("no cycle estimate")
    assert rows["dense", "", "none"]["pareto"] == "true"
    assert (out / "pareto.png").read_bytes().startswith(PNG_SIGNATURE)


def test_sweep_is_deterministic(relu_lstm, tmp_path):
    model, data = relu_lstm
    options = ExploreOptions(methods=("tt", "bt"), ranks=(2,), bits=(None,))
    first, second = (explore(model, data, options).results for _ in range(2))
    assert [untimed(r.row()) for r in first] == [untimed(r.row()) for r in second]


def test_rerun_replaces_an_earlier_output(relu_lstm, tmp_path):
    model, data = relu_lstm
    out = tmp_path / "out"
    for methods in ("dense", "dense,tt"):
        assert main(["explore", str(model), "--data", str(data), "--methods", methods, "--ranks", "2",
                     "--bits", "none", "--workers", "1", "-o", str(out)]) == 0
    assert [r["method"] for r in read_csv(out / "explore.csv")] == ["dense", "tt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("args, code, fragment", [
    (["--methods", "tt,svd"], 2, "unknown method(s) svd"),
    (["--ranks", "2,zero"], 2, "'zero' is not an integer >= 1"),
    (["--ranks", "0"], 2, "'0' is not an integer >= 1"),
    (["--ranks", "2,2"], 2, "2 given more than once"),
    (["--bits", "none,1"], 2, "'1' is neither 'none' nor a width"),
    (["--pes", "12"], 2, "powers of two, got 12"),
    (["--pes", "8,zero"], 2, "'zero' is not an integer >= 1"),
    (["--workers", "0"], 2, "--workers must be >= 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], 2, "exclude each other"),
    (["--finetune-epochs", "0"], 2, "--finetune-epochs must be >= 1"),
    (["--labels-key", "classes"], 1, "no labels array 'classes'"),
    (["--output", "logits"], 2, "--output 'logits' is not an output"),
])
def test_bad_options_are_refused(capsys, tmp_path, args, code, fragment):
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), "--bits", "none", "--workers", "1", "-o", str(out),
                 *args]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("arrays, fragment", [
    ({"labels": np.zeros(8, np.int64)}, "lacks the model input(s) image_rows"),
    ({"image_rows": np.zeros((8, 8, 8), np.float32), "label": np.zeros(8, np.int64)}, "has array(s) label"),
    ({"image_rows": np.zeros((8, 8, 8), np.float32), "labels": np.zeros(7, np.int64)}, "labels 'labels' must be"),
    ({"image_rows": np.zeros((8, 8), np.float32)}, "image_rows"),
])
def test_bad_data_is_refused(capsys, tmp_path, arrays, fragment):
    data, out = tmp_path / "data.npz", tmp_path / "out"
    np.savez(data, **arrays)
    assert main(["explore", str(MODEL), "--data", str(data), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err
    assert not out.exists()


def test_existing_unrelated_directory_is_kept(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["explore", str(MODEL), "--data", str(INPUTS), "--methods", "dense", "--bits", "none",
                 "-o", str(out)]) == 1
    assert "is not an explore output" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_pes_list_gives_a_row_per_accelerator_size(tmp_path):
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), "--methods", "dense,bt", "--ranks", "2",
                 "--bits", "8", "--pes", "4,32", "--workers", "1", "-o", str(out)]) == 0
    rows = read_csv(out / "explore.csv")
    assert [(r["method"], r["pes"]) for r in rows] == [("dense", "4"), ("dense", "32"), ("bt", "4"), ("bt", "32")]
    for first, second in (rows[:2], rows[2:]):
        assert first["params"] == second["params"] and first["accuracy"] == second["accuracy"]
    # four lanes take more cycles per step than 32 for the same program: at least MACs / P
    for row in rows:
        assert float(row["cycles_per_step"]) >= int(row["macs_per_step"]) / int(row["pes"])
    assert float(rows[0]["cycles_per_step"]) > float(rows[1]["cycles_per_step"])


def finetuned_rel_error(data: Path, images: np.ndarray) -> float:
    """The relative error against onnxruntime of the digits model after what a TT rank-2
    --finetune point with 2 epochs runs: decompose, finetune on ``data`` (seed 0), order."""
    from tensorgate.interpreter import run_module

    module = PassManager.parse(f"canonicalize, dce, decompose{{method=tt weights=all max-rank=2}}, "
                               f"finetune{{data={data} epochs=2 seed=0}}, "
                               "order-contractions{cost=cycles pes=16}").run(import_onnx(MODEL))
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image_rows": images})[0].astype(np.float64)
    output = run_module(module, {"image_rows": images})[module.outputs[0].name]
    return float(np.linalg.norm(output - reference) / np.linalg.norm(reference))


def test_finetune_step_is_the_finetune_pass(demo_sweep, tmp_path):
    """A --finetune row measures the module that decompose + finetune (on the data's labels,
    seed 0) + order-contractions make; dense rows are not trained."""
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), "--methods", "dense,tt", "--ranks", "2",
                 "--bits", "none", "--finetune", "--finetune-epochs", "2", "--workers", "1", "-o", str(out)]) == 0
    dense, tt = read_csv(out / "explore.csv")
    assert (dense["finetune"], tt["finetune"]) == ("", "labels") and dense["rel_error"] == "0"
    with np.load(INPUTS) as data:
        np.savez(tmp_path / "train.npz", image_rows=data["image_rows"], labels=data["labels"])
        images = data["image_rows"]
    assert float(tt["rel_error"]) == pytest.approx(finetuned_rel_error(tmp_path / "train.npz", images), rel=1e-4)
    assert tt["rel_error"] != by_config(read_csv(demo_sweep / "explore.csv"))["tt", "2", "none"]["rel_error"]


def test_finetune_without_labels_distills(tmp_path):
    """On data without labels the fine-tune step is label-free distillation: the row measures
    the module that decompose + finetune (the imported model as teacher, seed 0) make."""
    with np.load(INPUTS) as data:
        images = data["image_rows"]
    np.savez(tmp_path / "unlabelled.npz", image_rows=images)
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(tmp_path / "unlabelled.npz"), "--methods", "tt",
                 "--ranks", "2", "--bits", "none", "--finetune", "--finetune-epochs", "2", "--workers", "1",
                 "-o", str(out)]) == 0
    (row,) = read_csv(out / "explore.csv")
    assert row["finetune"] == "distill" and row["accuracy"] == ""
    assert float(row["rel_error"]) == pytest.approx(finetuned_rel_error(tmp_path / "unlabelled.npz", images),
                                                    rel=1e-4)


def test_finetune_teacher_with_labels_is_mixed(tmp_path):
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), "--methods", "tt", "--ranks", "2", "--bits", "none",
                 "--finetune", "--finetune-teacher", "imported", "--finetune-epochs", "1", "--workers", "1",
                 "-o", str(out)]) == 0
    (row,) = read_csv(out / "explore.csv")
    assert row["finetune"] == "labels+distill" and row["accuracy"] != ""


def test_finetune_on_labels_alone_needs_labels(relu_lstm, tmp_path, capsys):
    model, data = relu_lstm
    assert main(["explore", str(model), "--data", str(data), "--methods", "tt", "--ranks", "2", "--bits", "none",
                 "--finetune", "--finetune-teacher", "none", "--workers", "1", "-o", str(tmp_path / "out")]) == 2
    assert "--finetune-teacher none: data file" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_simulate_runs_quantized_points_on_verilator(tmp_path):
    """Quantized points run on the Verilated accelerator (the demo's own build, cached) and
    match the golden model bit for bit; a float point has nothing to simulate."""
    out = tmp_path / "out"
    assert main(["explore", str(MODEL), "--data", str(INPUTS), "--methods", "dense", "--bits", "none,8",
                 "--simulate", "--workers", "1", "-o", str(out)]) == 0
    floating, fixed = read_csv(out / "explore.csv")
    assert floating["sim_cycles"] == floating["bit_exact"] == ""
    assert fixed["bit_exact"] == "true" and fixed["message"] == ""
    with np.load(INPUTS) as data:
        batch, steps = data["image_rows"].shape[:2]
    # the whole batch's MACs need at least MACs / P cycles
    assert int(fixed["sim_cycles"]) >= int(fixed["macs_per_step"]) * steps * batch / int(fixed["pes"])
