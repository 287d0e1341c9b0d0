"""GRU and RNN models through the command line: ``inspect`` (summary and the manifest's
``maps``), ``compile`` for the numpy and onnx targets with ``run``, ``explore``, and the
verilog target: the torch GRU classifier and the bidirectional Relu RNN compiled for the PE
array, simulated, equal ``run`` bit for bit."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
from digits_classifier import STORED_GRU, digits
from models import OnnxRecurrent, make_onnx_recurrent, run_onnxruntime

from tensorgate.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def rnn_model(tmp_path):
    """A bidirectional Relu RNN with sequence lengths (as torchaudio's DeepSpeech has)."""
    model, feeds = make_onnx_recurrent(OnnxRecurrent(op_type="RNN", direction="bidirectional",
                                                     activations=("Relu",) * 2, sequence_lens=True,
                                                     outputs=("Y", "Y_h")))
    path = tmp_path / "rnn.onnx"
    onnx.save(model, path)
    np.savez(tmp_path / "in.npz", **feeds)
    return path, tmp_path / "in.npz", feeds


def test_inspect_names_the_gru_and_its_maps(capsys):
    code, out, err = run_cli(capsys, "inspect", str(STORED_GRU), "--json")
    assert code == 0, err
    summary = json.loads(out)
    (layer,) = summary["recurrent_layers"]
    assert (layer["op"], layer["linear_before_reset"], layer["hidden_size"]) == ("gru", 1, 32)
    assert layer["activations"] == ["Sigmoid", "Tanh"] and layer["macs_per_step"] == 3 * 32 * (8 + 32)
    assert [m["name"] for m in summary["maps"]][:2] == [f"{layer['name']}.w.fwd", f"{layer['name']}.r.fwd"]
    code, out, _ = run_cli(capsys, "inspect", str(STORED_GRU))
    assert code == 0 and "recurrent layers" in out and "gru lbr" in out


def test_compile_decomposed_gru_and_run(tmp_path, capsys):
    out = tmp_path / "art"
    code, _, err = run_cli(capsys, "compile", str(STORED_GRU), "-p",
                           "canonicalize, dce, decompose{method=tt weights=all gates=separate max-rank=4 d=2}, "
                           "order-contractions", "-o", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    names = [m["name"] for m in manifest["maps"] if m["format"] == "tt"]
    assert len(names) == 6 and all(name.split(".")[-2:][0] == "fwd" for name in names)
    assert [name.rsplit(".", 1)[-1] for name in names] == ["z", "r", "h"] * 2
    assert manifest["params"]["compressed"] < manifest["params"]["dense"]
    sequences = digits()[0][:, :5]
    np.savez(tmp_path / "x.npz", x=sequences)
    code, _, err = run_cli(capsys, "run", str(out), "--input", str(tmp_path / "x.npz"), "--output",
                           str(tmp_path / "y.npz"))
    assert code == 0, err
    with np.load(tmp_path / "y.npz") as data:
        assert data["logits"].shape == (5, 10)


def test_compile_rnn_for_onnx_runs_in_onnxruntime(rnn_model, tmp_path, capsys):
    path, inputs, feeds = rnn_model
    out = tmp_path / "ox"
    code, _, err = run_cli(capsys, "compile", str(path), "-p", "decompose{method=ht weights=all d=2 max-rank=2}",
                           "--target", "onnx", "-o", str(out))
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", str(out), "--input", str(inputs), "--output", str(tmp_path / "y.npz"))
    assert code == 0, err
    expected = run_onnxruntime(out / "model.onnx", feeds)
    with np.load(tmp_path / "y.npz") as data:
        for name, value in expected.items():
            np.testing.assert_allclose(data[name], value, rtol=1e-5, atol=1e-5)


def compile_simulate_and_run(capsys, tmp_path, model, pipeline: str, inputs, pes: int) -> dict:
    """Compile ``model`` for the PE array, simulate and run it on ``inputs``; raw codes of
    both, checked equal, and the simulation's statistics."""
    out = tmp_path / "hw"
    code, _, err = run_cli(capsys, "compile", str(model), "-p", pipeline, "--target", "verilog",
                           "--pes", str(pes), "-o", str(out))
    assert code == 0, err
    code, _, err = run_cli(capsys, "simulate", str(out), "--input", str(inputs), "--raw", "--output",
                           str(tmp_path / "sim.npz"), "--stats", str(tmp_path / "stats.json"))
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", str(out), "--input", str(inputs), "--raw", "--output",
                           str(tmp_path / "gold.npz"))
    assert code == 0, err
    with np.load(tmp_path / "sim.npz") as sim, np.load(tmp_path / "gold.npz") as gold:
        assert sim.files == gold.files
        for name in gold.files:
            assert sim[name].dtype == np.int64 and np.array_equal(sim[name], gold[name]), name
    return json.loads((tmp_path / "stats.json").read_text())


def test_tt_gru_classifier_simulates_bit_exact_with_run(tmp_path, capsys):
    sequences = digits()[0]
    np.savez(tmp_path / "calibration.npz", x=sequences[:, 100:164])
    np.savez(tmp_path / "x.npz", x=sequences[:, :3])
    pipeline = ("decompose{method=tt max-rank=4}, order-contractions{cost=cycles pes=16}, "
                f"quantize{{bits=8 calibration={tmp_path / 'calibration.npz'}}}")
    stats = compile_simulate_and_run(capsys, tmp_path, STORED_GRU, pipeline, tmp_path / "x.npz", 16)
    assert stats["cell_cycles"] > 0 and 0 < stats["pe_utilization"] <= 1
    assert stats["cycles"] >= stats["mac_bound_cycles"] * stats["steps"] > 0


def test_bidirectional_relu_rnn_simulates_bit_exact_with_run(rnn_model, tmp_path, capsys):
    path, inputs, _ = rnn_model
    stats = compile_simulate_and_run(capsys, tmp_path, path, f"quantize{{bits=8 calibration={inputs}}}", inputs, 4)
    assert stats["cell_cycles"] > 0


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_batch_major_bidirectional_onnx_gru_simulates_bit_exact_with_run(tmp_path, capsys, linear_before_reset):
    """An ONNX GRU with layout 1, both directions, sequence lengths, initial state and clip."""
    model, feeds = make_onnx_recurrent(OnnxRecurrent(op_type="GRU", layout=1, direction="bidirectional",
                                                     linear_before_reset=linear_before_reset, sequence_lens=True,
                                                     initial_h=True, clip=2.0, outputs=("Y", "Y_h")))
    onnx.save(model, tmp_path / "gru.onnx")
    np.savez(tmp_path / "in.npz", **feeds)
    stats = compile_simulate_and_run(capsys, tmp_path, tmp_path / "gru.onnx",
                                     f"quantize{{bits=8 calibration={tmp_path / 'in.npz'}}}", tmp_path / "in.npz", 4)
    assert stats["cell_cycles"] > 0


def test_explore_sweeps_a_gru(tmp_path, capsys):
    sequences, labels = digits()
    np.savez(tmp_path / "val.npz", x=sequences[:, :64], labels=labels[:64])
    code, _, err = run_cli(capsys, "explore", str(STORED_GRU), "--data", str(tmp_path / "val.npz"), "--methods",
                           "dense,tt", "--ranks", "4", "--bits", "none,8", "-o", str(tmp_path / "sweep"))
    assert code == 0, err
    with open(tmp_path / "sweep" / "explore.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["method"], r["bits"]) for r in rows] == [("dense", "none"), ("dense", "8"), ("tt", "none"), ("tt", "8")]
    assert all(r["status"] == "ok" and int(r["macs_per_step"]) > 0 for r in rows)
    assert all(float(r["cycles_per_step"]) > 0 and r["message"] == "" for r in rows)
    dense_float = next(r for r in rows if r["method"] == "dense" and r["bits"] == "none")
    assert float(dense_float["accuracy"]) > 0.9
