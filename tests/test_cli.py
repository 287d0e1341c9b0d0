"""End-to-end tests of the `tensorgate` command line: success paths and every kind of
bad input, each with a one-line error, the right exit code and no output left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tensorgate.cli import main
from tensorgate.demo import demo_files

MODEL, INPUTS = demo_files()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(code: int, err: str, expected_code: int, *fragments: str) -> None:
    assert code == expected_code
    assert err.startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


@pytest.fixture
def demo_inputs(tmp_path):
    with np.load(INPUTS) as data:
        images = data["image_rows"]
    path = tmp_path / "in.npz"
    np.savez(path, image_rows=images)
    return path, images


def test_compile_run_matches_onnxruntime(tmp_path, capsys, demo_inputs):
    inputs, images = demo_inputs
    out = tmp_path / "artifact"
    code, _, err = run_cli(capsys, "compile", str(MODEL), "-p", "canonicalize, dce", "-o", str(out))
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "numpy"
    assert manifest["inputs"] == [{"name": "image_rows", "shape": ["batch", 8, 8], "dtype": "f32"}]
    assert manifest["outputs"][0]["name"] == "probabilities"
    assert manifest["params"]["dense"] == manifest["params"]["compressed"] > 0
    result = tmp_path / "result.npz"
    code, _, err = run_cli(capsys, "run", str(out), "--input", str(inputs), "--output", str(result))
    assert code == 0, err
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image_rows": images})[0]
    with np.load(result) as data:
        np.testing.assert_allclose(data["probabilities"], reference, rtol=1e-5, atol=1e-6)


def test_run_accepts_npy_for_single_input_model(tmp_path, capsys, demo_inputs):
    _, images = demo_inputs
    out = tmp_path / "artifact"
    assert run_cli(capsys, "compile", str(MODEL), "-o", str(out))[0] == 0
    np.save(tmp_path / "x.npy", images)
    code, _, err = run_cli(capsys, "run", str(out), "--input", str(tmp_path / "x.npy"),
                           "--output", str(tmp_path / "y.npz"))
    assert code == 0, err
    with np.load(tmp_path / "y.npz") as data:
        assert data["probabilities"].shape == (len(images), 10)


def test_inspect_reports_lstm_and_params(capsys):
    code, out, _ = run_cli(capsys, "inspect", str(MODEL), "--json")
    assert code == 0
    summary = json.loads(out)
    (layer,) = summary["recurrent_layers"]
    assert (layer["op"], layer["input_size"], layer["hidden_size"], layer["direction"]) == ("lstm", 8, 16, "forward")
    assert layer["macs_per_step"] == 4 * 16 * (8 + 16)
    assert summary["params"]["dense"] == 4 * 16 * (8 + 16) + 8 * 16 + 16 * 10 + 10


def test_inspect_ir_prints_parseable_text(capsys):
    from tensorgate.frontend import import_onnx
    from tensorgate.ir.parser import parse_module
    from tensorgate.ir.printer import module_tensors, print_module

    code, out, _ = run_cli(capsys, "inspect", str(MODEL), "--ir")
    assert code == 0
    assert " lstm(" in out
    reparsed = parse_module(out, module_tensors(import_onnx(MODEL)))
    assert print_module(reparsed) == out


def test_passes_lists_every_pass(capsys):
    from tensorgate.passes import PASSES

    code, out, _ = run_cli(capsys, "passes")
    assert code == 0
    for name in PASSES:
        assert name in out


def test_demo_runs_the_whole_compiler(capsys):
    """Import beside onnxruntime, TT, label-free fine-tuning, 8 bits, Verilator.  The
    fine-tuning trains (seeded), so its bound is loose: from TT-SVD's 13.5% agreement it
    reaches 92% here, and the test asks for half of that gain."""
    from tensorgate.demo import run_demo

    outputs = run_demo()
    np.testing.assert_allclose(outputs["tensorgate"], outputs["onnxruntime"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["verilator"], outputs["golden"])
    imported, tt_svd, tuned, hardware = outputs["stages"]
    assert imported.agreement == 1.0 and tt_svd.params == tuned.params < imported.params
    assert tuned.agreement > tt_svd.agreement + 0.4
    assert hardware.params == tuned.params and hardware.cycles_per_step == outputs["cycles_per_step"] > 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "every output code equal" in printed
    assert "label-free fine-tuning" in printed and "cycles/step" in printed


def test_entry_point_reports_usage_error_exit_2():
    result = subprocess.run([sys.executable, "-m", "tensorgate.cli", "compile"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "required" in result.stderr


# --- bad input ---------------------------------------------------------------------------


def lstm_graph_model(activations=None, extra_node=None) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 16, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 16, 4)).astype(np.float32), "R")]
    attrs = {"hidden_size": 4}
    if activations:
        attrs["activations"] = activations
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["Y", "Y_h"], name="lstm_node", **attrs)]
    output = "Y_h"
    if extra_node:
        nodes.append(extra_node)
        output = extra_node.output[0]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, 3])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def compile_fails(capsys, tmp_path, model_path, expected_code=1, pipeline="canonicalize", *fragments):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "compile", str(model_path), "-p", pipeline, "-o", str(out))
    assert_clean_error(code, err, expected_code, *fragments)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    return err


def test_missing_file(capsys, tmp_path):
    compile_fails(capsys, tmp_path, tmp_path / "nope.onnx", 1, "canonicalize", "nope.onnx")


def test_non_onnx_file(capsys, tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    compile_fails(capsys, tmp_path, path, 1, "canonicalize", "notes.onnx")


def test_truncated_protobuf(capsys, tmp_path):
    data = lstm_graph_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    compile_fails(capsys, tmp_path, path, 1, "canonicalize", "cut.onnx")


def test_model_failing_checker(capsys, tmp_path):
    model = lstm_graph_model()
    model.graph.node[0].input[1] = "undefined_weight"
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    compile_fails(capsys, tmp_path, path, 1, "canonicalize", "bad.onnx")


def test_unsupported_op_is_hosted_and_named_by_inspect(capsys, tmp_path):
    node = helper.make_node("Hardmax", ["Y_h"], ["z"], name="odd_node")
    path = tmp_path / "op.onnx"
    onnx.save(lstm_graph_model(extra_node=node), path)
    code, out, _ = run_cli(capsys, "inspect", str(path), "--json")
    assert code == 0
    regions = json.loads(out)["partition"]["regions"]
    assert [(r["kind"], r["node"], r["ops"]) for r in regions] == [
        ("tensorgate", "lstm_node", {"lstm": 1}), ("host", "odd_node", {"Hardmax": 1})]


def test_model_nothing_of_which_compiles_names_the_node(capsys, tmp_path):
    nodes = [helper.make_node("Hardmax", ["x"], ["z"], name="odd_node")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "op.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    compile_fails(capsys, tmp_path, path, 1, "canonicalize", "compiles nothing", "odd_node", "Hardmax")


def test_unknown_lstm_activation_names_it(capsys, tmp_path):
    path = tmp_path / "act.onnx"
    onnx.save(lstm_graph_model(activations=["Sigmoid", "Swish", "Tanh"]), path)
    compile_fails(capsys, tmp_path, path, 1, "canonicalize", "lstm_node", "Swish")


@pytest.mark.parametrize("pipeline, fragment", [
    ("canonicalize,, dce", "column"),
    ("canonicalize, frobnicate", "frobnicate"),
    ("dce{nonsense=1}", "nonsense"),
    ("decompose{eps=2}", "eps"),
    ("decompose{method=svd}", "svd"),
])
def test_bad_pipeline(capsys, tmp_path, pipeline, fragment):
    err = compile_fails(capsys, tmp_path, MODEL, 2, pipeline, fragment)
    assert "^" in err


def test_input_files_are_not_modified(tmp_path, capsys):
    before = MODEL.read_bytes()
    assert run_cli(capsys, "compile", str(MODEL), "-o", str(tmp_path / "a"))[0] == 0
    assert MODEL.read_bytes() == before


@pytest.fixture
def artifact(tmp_path, capsys):
    out = tmp_path / "artifact"
    assert run_cli(capsys, "compile", str(MODEL), "-o", str(out))[0] == 0
    return out


def test_run_missing_input_name(artifact, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", wrong=np.zeros((1, 8, 8), np.float32))
    code, _, err = run_cli(capsys, "run", str(artifact), "--input", str(tmp_path / "in.npz"),
                           "--output", str(tmp_path / "o.npz"))
    assert_clean_error(code, err, 1, "image_rows")
    assert not (tmp_path / "o.npz").exists()


def test_run_wrong_shape(artifact, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", image_rows=np.zeros((1, 7, 8), np.float32))
    code, _, err = run_cli(capsys, "run", str(artifact), "--input", str(tmp_path / "in.npz"),
                           "--output", str(tmp_path / "o.npz"))
    assert_clean_error(code, err, 1, "image_rows", "[1, 7, 8]")
    assert not (tmp_path / "o.npz").exists()


def test_run_on_non_artifact(tmp_path, capsys):
    np.savez(tmp_path / "in.npz", image_rows=np.zeros((1, 8, 8), np.float32))
    code, _, err = run_cli(capsys, "run", str(tmp_path), "--input", str(tmp_path / "in.npz"),
                           "--output", str(tmp_path / "o.npz"))
    assert_clean_error(code, err, 1, "not a tensorgate artifact")


def test_existing_foreign_output_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "compile", str(MODEL), "-o", str(out))
    assert_clean_error(code, err, 1, "precious")
    assert (out / "keep.txt").read_text() == "mine"


def test_recompile_replaces_artifact(artifact, capsys):
    assert run_cli(capsys, "compile", str(MODEL), "-p", "dce", "-o", str(artifact))[0] == 0
    assert json.loads((artifact / "manifest.json").read_text())["pipeline"] == "dce"


@pytest.fixture
def logits_model(tmp_path):
    """The demo classifier without its softmax (which has no fixed-point form)."""
    model = onnx.load(MODEL)
    softmax = model.graph.node[-1]
    assert softmax.op_type == "Softmax"
    del model.graph.node[-1]
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, ["batch", 10]))
    path = tmp_path / "logits.onnx"
    onnx.save(model, path)
    return path, softmax.input[0]


def test_quantize_refuses_softmax_with_hint(capsys, tmp_path):
    compile_fails(capsys, tmp_path, MODEL, 1, "canonicalize, dce, quantize{bits=16}", "softmax", "quantize")


def test_quantized_artifact_runs_golden_model_and_raw_codes(tmp_path, capsys, demo_inputs, logits_model):
    from tensorgate.backend.artifact import load_artifact
    from tensorgate.interpreter import run_fixed

    inputs, images = demo_inputs
    model_path, logits = logits_model
    out = tmp_path / "q"
    code, _, err = run_cli(capsys, "compile", str(model_path), "-p", "canonicalize, dce, quantize{bits=16}",
                           "-o", str(out))
    assert code == 0, err
    module, _ = load_artifact(out)
    for raw in (False, True):
        result = tmp_path / f"r{raw}.npz"
        argv = ["run", str(out), "--input", str(inputs), "--output", str(result)] + (["--raw"] if raw else [])
        assert run_cli(capsys, *argv)[0] == 0
        expected = run_fixed(module, {"image_rows": images}, raw=raw)
        with np.load(result) as data:
            np.testing.assert_array_equal(data[logits], expected[logits])
            assert data[logits].dtype == (np.int64 if raw else np.float64)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    with np.load(tmp_path / "rFalse.npz") as data:
        assert (data[logits].argmax(-1) == session.run(None, {"image_rows": images})[0].argmax(-1)).all()


def test_raw_needs_quantized_artifact(artifact, tmp_path, capsys, demo_inputs):
    inputs, _ = demo_inputs
    code, _, err = run_cli(capsys, "run", str(artifact), "--input", str(inputs), "--output",
                           str(tmp_path / "o.npz"), "--raw")
    assert_clean_error(code, err, 2, "--raw", "quantize")


def test_verilog_target_simulates_bit_exact_with_run(tmp_path, capsys, demo_inputs, logits_model):
    model_path, logits = logits_model
    with np.load(INPUTS) as data:
        np.savez(tmp_path / "two.npz", image_rows=data["image_rows"][:2])
    out = tmp_path / "hw"
    pipeline = "canonicalize, dce, decompose{method=tt max-rank=4 d=2}, order-contractions, quantize{bits=8}"
    code, _, err = run_cli(capsys, "compile", str(model_path), "-p", pipeline, "--target", "verilog",
                           "--pes", "4", "-o", str(out))
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["hardware"]["pes"] == 4
    code, printed, err = run_cli(capsys, "simulate", str(out), "--input", str(tmp_path / "two.npz"),
                                 "--output", str(tmp_path / "sim.npz"), "--stats", str(tmp_path / "stats.json"))
    assert code == 0, err
    assert "cycles" in printed
    assert run_cli(capsys, "run", str(out), "--input", str(tmp_path / "two.npz"),
                   "--output", str(tmp_path / "gold.npz"))[0] == 0
    with np.load(tmp_path / "sim.npz") as sim, np.load(tmp_path / "gold.npz") as gold:
        np.testing.assert_array_equal(sim[logits], gold[logits])
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["cycles"] >= stats["mac_bound_cycles"] > 0


def test_verilog_target_needs_quantize(capsys, tmp_path, logits_model):
    out = tmp_path / "hw"
    code, _, err = run_cli(capsys, "compile", str(logits_model[0]), "--target", "verilog", "-o", str(out))
    assert_clean_error(code, err, 1, "quantize")
    assert not out.exists()


def test_onnx_target_runs_in_onnxruntime(tmp_path, capsys, demo_inputs):
    inputs, images = demo_inputs
    out = tmp_path / "ox"
    code, _, err = run_cli(capsys, "compile", str(MODEL), "-p", "canonicalize, decompose{method=tt max-rank=4 d=2}",
                           "--target", "onnx", "-o", str(out))
    assert code == 0, err
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert run_cli(capsys, "run", str(out), "--input", str(inputs), "--output", str(tmp_path / "o.npz"))[0] == 0
    with np.load(tmp_path / "o.npz") as data:
        np.testing.assert_allclose(session.run(None, {"image_rows": images})[0], data["probabilities"],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pes", ["3", "0", "four"])
def test_pes_must_be_a_power_of_two(capsys, tmp_path, pes):
    with pytest.raises(SystemExit) as info:
        main(["compile", str(MODEL), "--target", "verilog", "--pes", pes, "-o", str(tmp_path / "hw")])
    assert info.value.code == 2
    assert "--pes" in capsys.readouterr().err
    assert not (tmp_path / "hw").exists()


def test_run_into_a_missing_folder_is_a_clear_error(artifact, tmp_path, capsys, demo_inputs):
    inputs, _ = demo_inputs
    code, _, err = run_cli(capsys, "run", str(artifact), "--input", str(inputs), "--output",
                           str(tmp_path / "absent" / "o.npz"))
    assert_clean_error(code, err, 2, "absent", "does not exist")


def test_tune_outside_the_onnx_target_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", str(MODEL), "--tune", "-o", str(tmp_path / "out"))
    assert_clean_error(code, err, 2, "--tune", "--target onnx")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", str(MODEL), "-o", "/proc/no/such/artifact")
    assert_clean_error(code, err, 1, "cannot create output")


def test_manifest_and_inspect_report_contraction_costs(tmp_path, capsys):
    out = tmp_path / "tt"
    pipeline = "canonicalize, decompose{method=tt max-rank=4 d=2 weights=all dense-fallback=false}, order-contractions"
    assert run_cli(capsys, "compile", str(MODEL), "-p", pipeline, "-o", str(out))[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    scheduled = [m for m in manifest["maps"] if "macs_per_step" in m]
    assert {m["format"] for m in scheduled} == {"tt"} and len(scheduled) == 2
    for entry in scheduled:
        costs = entry["macs_per_step"]
        assert costs["scheduled"] <= costs["naive"] and costs["dense"] == entry["shape"][0] * entry["shape"][1]
        assert 0 < entry["rel_error"] < 1
    totals = manifest["macs_per_step"]
    assert totals["scheduled"] == sum(m["macs_per_step"]["scheduled"] for m in scheduled)
    assert manifest["contraction_search_seconds"] < 1
    code, printed, _ = run_cli(capsys, "inspect", str(out))
    assert code == 0 and "contraction schedules" in printed and f"{totals['scheduled']:,}" in printed


@pytest.mark.parametrize("before", [True, False])
def test_verbose_before_or_after_the_command_adds_the_traceback(before, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", x=np.zeros(1))
    command = ["run", str(tmp_path), "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "o.npz")]
    code = main(["--verbose", *command] if before else [*command, "--verbose"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Traceback" in err
