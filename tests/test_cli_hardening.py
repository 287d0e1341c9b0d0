"""Issue 15's artifact and command-line items, each reproduced through ``tensorgate`` as a
hostile or careless user would: artifacts pointing outside themselves, edited IR, bad
manifests, integer inputs, absurd files, options and output paths.  Every one must end in
a one-line ``error:`` (or succeed), never a traceback or an ``internal error``, with no
output left behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tensorgate.backend.artifact import load_artifact
from tensorgate.cli import main
from tensorgate.demo import demo_files
from tensorgate.interpreter import run_fixed

MODEL, DEMO_INPUTS = demo_files()
PASSWD_LINE = Path("/etc/passwd").read_text().splitlines()[0]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(result, code: int, *fragments: str) -> str:
    rc, _, err = result
    assert rc == code, err
    assert err.startswith("error: ") or "error:" in err.splitlines()[-1], err
    assert "internal error" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def rehash(artifact: Path) -> None:
    """Record the hashes of the files as they are now, as a tamperer would."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((artifact / name).read_bytes()).hexdigest()
                         for name in manifest["files"] if (artifact / name).is_file()}
    (artifact / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(artifact: Path, edit) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    edit(manifest)
    (artifact / "manifest.json").write_text(json.dumps(manifest))


def npz_declaring(path: Path, name: str, shape: tuple[int, ...]) -> Path:
    """A tiny .npz whose one array header claims ``shape`` (float32) over 16 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + bytes(16))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A float, a quantized and a verilog artifact of the demo model (without its
    softmax, which has no fixed-point form), compiled once."""
    root = tmp_path_factory.mktemp("built")
    model = onnx.load(MODEL)
    softmax = model.graph.node[-1]
    del model.graph.node[-1]
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, ["batch", 10]))
    onnx.save(model, root / "logits.onnx")
    for name, args in {"float": [MODEL], "quantized": [root / "logits.onnx", "-p", "canonicalize, dce, quantize"],
                       "verilog": [root / "logits.onnx", "-p", "canonicalize, dce, quantize", "--target",
                                   "verilog", "--pes", "4"]}.items():
        assert main(["compile", *map(str, args), "-o", str(root / name)]) == 0
    with np.load(DEMO_INPUTS) as data:
        np.savez(root / "in.npz", image_rows=data["image_rows"])
    return root


@pytest.fixture
def work(built, tmp_path):
    """Fresh copies of the built artifacts and inputs in this test's directory."""
    for name in ("float", "quantized", "verilog"):
        shutil.copytree(built / name, tmp_path / name)
    shutil.copy(built / "in.npz", tmp_path / "in.npz")
    return tmp_path


def run_args(work: Path, artifact: str = "float", inputs: str = "in.npz", output: str = "out.npz") -> list:
    return ["run", work / artifact, "--input", work / inputs, "--output", work / output]


# --- 1. artifact paths are confined to the artifact ----------------------------------------


def test_ir_naming_a_system_file_is_refused_without_echoing_it(work, capsys):
    edit_manifest(work / "float", lambda m: m.update(ir="/etc/passwd"))
    err = assert_refused(run_cli(capsys, *run_args(work)), 1, "'ir'", "/etc/passwd", "not a plain relative name")
    assert PASSWD_LINE not in err
    assert not (work / "out.npz").exists()


def test_ir_of_another_artifact_is_refused(work, capsys):
    shutil.copytree(work / "quantized", work / "other")

    def point_elsewhere(manifest):
        manifest["ir"] = "../other/model.tgir"
        manifest["files"]["../other/model.tgir"] = manifest["files"]["model.tgir"]

    edit_manifest(work / "float", point_elsewhere)
    assert_refused(run_cli(capsys, *run_args(work)), 1, "../other/model.tgir", "not a plain relative name")


def test_weights_outside_the_artifact_are_refused(work, capsys):
    os.replace(work / "float" / "model.npz", work / "outside.npz")
    ir = work / "float" / "model.tgir"
    ir.write_text(ir.read_text().replace('weights "model.npz"', 'weights "../outside.npz"', 1))
    rehash(work / "float")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "../outside.npz", "file name beside it")


def test_a_linked_weights_file_is_refused(work, capsys):
    os.replace(work / "float" / "model.npz", work / "outside.npz")
    (work / "float" / "model.npz").symlink_to(work / "outside.npz")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "'model.npz' is a symbolic link")


def test_an_edited_file_is_refused_by_name(work, capsys):
    with open(work / "float" / "model.tgir", "a") as file:
        file.write("\n")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "'model.tgir' does not match its sha256")


# --- 4. the IR is verified on load ---------------------------------------------------------


def test_an_ir_declaring_the_wrong_result_type_is_refused(work, capsys):
    ir = work / "float" / "model.tgir"
    text = ir.read_text()
    assert "%probabilities: f32[batch,10]" in text
    ir.write_text(text.replace("%probabilities: f32[batch,10]", "%probabilities: i64[batch,11]"))
    rehash(work / "float")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "probabilities")
    assert_refused(run_cli(capsys, "inspect", work / "float"), 1, "probabilities")


# --- 5 and 7. manifests: schema errors name the manifest key -----------------------------


@pytest.mark.parametrize("text, fragment", [
    ("[]", "must hold a JSON object, not list"),
    ('{"ir": null}', "'tensorgate_version' is missing"),
    ("{", "is not valid JSON"),
])
def test_a_manifest_that_is_no_object_or_lacks_keys_is_refused(work, capsys, text, fragment):
    (work / "float" / "manifest.json").write_text(text)
    assert_refused(run_cli(capsys, *run_args(work)), 1, "manifest.json", fragment)


def test_a_null_ir_is_a_manifest_error(work, capsys):
    edit_manifest(work / "float", lambda m: m.update(ir=None))
    assert_refused(run_cli(capsys, *run_args(work)), 1, "manifest.json 'ir' must be a file name, not None")


@pytest.mark.parametrize("pes, fragment", [
    (None, "'hardware.pes' is missing"), ("abc", "'hardware.pes' must be an integer"),
    (1099511627776, "'hardware.pes' must be a power of two from 1 to"),
])
def test_a_bad_pes_in_the_manifest_is_a_manifest_error_not_an_option_error(work, capsys, pes, fragment):
    def set_pes(manifest):
        if pes is None:
            del manifest["hardware"]["pes"]
        else:
            manifest["hardware"]["pes"] = pes

    edit_manifest(work / "verilog", set_pes)
    for command in (run_args(work, "verilog"), ["simulate", *run_args(work, "verilog")[1:]]):
        err = assert_refused(run_cli(capsys, *command), 1, "manifest.json", fragment)
        assert "--pes" not in err


# --- 5. crashes on files, options and output paths -----------------------------------------


def test_an_empty_weights_file_is_refused(work, capsys):
    (work / "float" / "model.npz").write_bytes(b"")
    rehash(work / "float")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "weights file", "not a readable .npz")


def test_an_empty_weights_archive_is_refused(work, capsys):
    np.savez(work / "float" / "model.npz")
    rehash(work / "float")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "is not in the weights file")


def test_running_into_an_existing_directory_is_refused_before_running(work, capsys):
    (work / "out.npz").mkdir()
    assert_refused(run_cli(capsys, *run_args(work)), 2, "is a directory")


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_an_input_declaring_a_huge_shape_is_refused_before_allocating(work, capsys, suffix):
    path = work / f"huge{suffix}"
    if suffix == ".npz":
        npz_declaring(path, "image_rows", (1 << 40, 8, 8))
    else:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (1 << 40, 8, 8)})
        path.write_bytes(header.getvalue())
    assert path.stat().st_size < 400
    assert_refused(run_cli(capsys, *run_args(work, inputs=path.name)), 1, "declares shape (1099511627776, 8, 8)")


def test_huge_weights_headers_are_refused_too(work, capsys):
    npz_declaring(work / "float" / "model.npz", "x", (1 << 40, 8, 8))
    rehash(work / "float")
    assert_refused(run_cli(capsys, *run_args(work)), 1, "declares shape")


def test_compile_into_an_empty_path_is_a_usage_error_and_leaves_nothing(work, capsys, monkeypatch):
    monkeypatch.chdir(work / "float")
    before = set(os.listdir(work)), set(os.listdir(work / "float"))
    with pytest.raises(SystemExit) as info:
        main(["compile", str(MODEL), "-o", ""])
    assert info.value.code == 2 and "the path is empty" in capsys.readouterr().err
    assert (set(os.listdir(work)), set(os.listdir(work / "float"))) == before


def test_the_library_replaces_the_current_artifact_by_its_real_name(work, monkeypatch):
    """``Path("")`` is ``.``: inside an artifact the library replaces it (the CLI refuses
    an empty -o), naming its temporaries after the directory, none of them left behind."""
    from tensorgate.backend.artifact import write_numpy_artifact

    module, _ = load_artifact(work / "float")
    monkeypatch.chdir(work / "float")
    write_numpy_artifact(module, Path(""), "again", "")
    assert json.loads((work / "float" / "manifest.json").read_text())["pipeline"] == "again"
    assert [name for name in os.listdir(work) if name.startswith(".")] == []
    load_artifact(work / "float")


@pytest.mark.parametrize("command", ["compile", "explore"])
def test_a_huge_pes_is_a_clear_option_error(work, capsys, command):
    argv = (["compile", MODEL, "--target", "verilog", "--pes", "1099511627776", "-o", work / "hw"]
            if command == "compile" else
            ["explore", MODEL, "--data", work / "in.npz", "--pes", "1099511627776", "-o", work / "hw"])
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and "--pes" in err and "1024" in err and "internal error" not in err
    assert not (work / "hw").exists()


@pytest.mark.parametrize("where", ["missing-folder", "under-a-file"])
def test_simulate_checks_every_output_path_before_running(work, capsys, where):
    (work / "a-file").write_text("")
    stats = work / "absent" / "s.json" if where == "missing-folder" else work / "a-file" / "s.json"
    assert_refused(run_cli(capsys, "simulate", work / "verilog", "--input", work / "in.npz", "--output",
                           work / "sim.npz", "--stats", stats), 2, "cannot write", str(stats))
    assert not (work / "sim.npz").exists()


def test_compile_checks_its_output_before_running_the_pipeline(work, capsys):
    (work / "a-file").write_text("")
    # the pipeline would fail (softmax has no fixed-point form); the output is refused first
    err = assert_refused(run_cli(capsys, "compile", MODEL, "-p", "canonicalize, quantize", "-o",
                                 work / "a-file" / "art"), 1, "is a file, not a folder")
    assert "softmax" not in err


@pytest.mark.parametrize("command", ["run", "explore", "compile"])
def test_an_output_under_a_file_is_refused_before_anything_runs(work, capsys, command):
    (work / "a-file").write_text("")
    target = work / "a-file" / "x"
    argv = {"run": run_args(work, output="a-file/x.npz"),
            "explore": ["explore", MODEL, "--data", work / "in.npz", "--methods", "tt", "--ranks", "2", "--bits",
                        "none", "--workers", "1", "-o", target],
            "compile": ["compile", MODEL, "-o", target]}[command]
    assert_refused(run_cli(capsys, *argv), 2 if command == "run" else 1, "is a file, not a folder")


def test_the_bundled_demo_inputs_run_with_a_note_on_their_labels(work, capsys):
    code, out, err = run_cli(capsys, "run", work / "float", "--input", DEMO_INPUTS, "--output", work / "o.npz")
    assert code == 0, err
    assert "'labels'" in err and "left out" in err and "probabilities[8, 10]" in out


def test_other_unknown_arrays_are_still_refused(work, capsys):
    with np.load(work / "in.npz") as data:
        np.savez(work / "typo.npz", image_rows=data["image_rows"], image_row=data["image_rows"])
    assert_refused(run_cli(capsys, *run_args(work, inputs="typo.npz")), 1, "unknown input(s) image_row")


# --- 3. integer inputs mean their values; raw codes are asked for ----------------------------


def test_integer_inputs_of_a_quantized_artifact_are_converted_by_value(work, capsys):
    with np.load(work / "in.npz") as data:
        images = np.round(data["image_rows"] * 4)
    for dtype in (np.float32, np.int64, np.int16, np.uint8, np.float16):
        np.savez(work / f"{np.dtype(dtype).name}.npz", image_rows=images.astype(dtype))
        assert run_cli(capsys, *run_args(work, "quantized", f"{np.dtype(dtype).name}.npz",
                                         f"o_{np.dtype(dtype).name}.npz"))[0] == 0
    with np.load(work / "o_float32.npz") as reference:
        expected = reference[next(iter(reference.files))]
    for dtype in ("int64", "int16", "uint8", "float16"):
        with np.load(work / f"o_{dtype}.npz") as data:
            np.testing.assert_array_equal(data[data.files[0]], expected)


def test_raw_input_takes_codes_and_equals_the_library(work, capsys):
    module, _ = load_artifact(work / "quantized")
    with np.load(work / "in.npz") as data:
        images = data["image_rows"]
    from tensorgate.interpreter.golden import FixedExecutor

    codes = FixedExecutor(module).input_codes({"image_rows": images})["image_rows"]
    np.savez(work / "codes.npz", image_rows=codes)
    assert run_cli(capsys, *run_args(work, "quantized", "codes.npz"), "--raw-input")[0] == 0
    name = module.outputs[0].name
    with np.load(work / "out.npz") as data:
        np.testing.assert_array_equal(data[name], run_fixed(module, {"image_rows": images})[name])
        np.testing.assert_array_equal(data[name], run_fixed(module, {"image_rows": codes}, raw_input=True)[name])


def test_raw_input_refuses_float_values(work, capsys):
    assert_refused(run_cli(capsys, *run_args(work, "quantized"), "--raw-input"), 1,
                   "raw input takes integer codes, not float32")


def test_raw_input_needs_a_quantized_artifact(work, capsys):
    assert_refused(run_cli(capsys, *run_args(work), "--raw-input"), 2, "--raw-input needs a quantized artifact")
