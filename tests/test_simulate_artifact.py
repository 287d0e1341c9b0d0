"""`simulate` runs the artifact it is given: its RTL and its memory images, not the package's
copies.  A tampered, incomplete or inconsistent artifact fails with a one-line error that
names the file, and a non-zero exit; an intact one equals the golden model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from accel_models import AccelCase, quantized
from tensorgate.backend.artifact import file_hashes
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.cli import main
from tensorgate.interpreter import run_fixed
from tensorgate.runtime.simulator import Simulator

PES = 4


@pytest.fixture
def artifact(tmp_path):
    """A verilog artifact of a tiny TT LSTM with a head, and an .npz of inputs for it."""
    module, inputs = quantized(AccelCase(fmt="tt", head="dense"), tmp_path)
    path = write_verilog_artifact(module, tmp_path / "hw", "quantize", "model.onnx", PES)
    np.savez(tmp_path / "inputs.npz", **inputs)
    return path, module, inputs


def simulate(capsys, artifact_dir, tmp_path) -> tuple[int, str]:
    code = main(["simulate", str(artifact_dir), "--input", str(tmp_path / "inputs.npz"),
                 "--output", str(tmp_path / "sim.npz")])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_simulation_builds_the_artifacts_rtl_and_equals_the_golden_model(artifact):
    path, module, inputs = artifact
    simulator = Simulator(path, progress=False)
    assert simulator.sources and all(source.parent == path / "rtl" for source in simulator.sources)
    outputs, _ = simulator.run(inputs, raw=True)
    for name, expected in run_fixed(module, inputs, raw=True).items():
        assert np.array_equal(outputs[name], expected), name


def rehash(artifact_dir) -> None:
    """Record the files' current hashes in the manifest: an artifact edited consistently,
    so that what it holds, not the hash check, is what gets refused."""
    manifest = json.loads((artifact_dir / "manifest.json").read_text())
    manifest["files"] = file_hashes(artifact_dir)
    (artifact_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("consistent", [False, True], ids=["tampered", "rehashed"])
def test_rtl_replaced_by_syntax_errors_is_refused(artifact, tmp_path, capsys, consistent):
    path, _, _ = artifact
    for source in (path / "rtl").iterdir():
        source.write_text("this is not verilog (\n")
    if consistent:
        rehash(path)
    code, err = simulate(capsys, path, tmp_path)
    if consistent:  # built from the artifact's own files: Verilator names them
        assert_refused(code, err, "Verilator build of tg_accel failed", str(path / "rtl"))
    else:
        assert_refused(code, err, "rtl/", "does not match its sha256")
    assert not (tmp_path / "sim.npz").exists()


def test_missing_rtl_file_is_refused(artifact, tmp_path, capsys):
    path, _, _ = artifact
    (path / "rtl" / "tg_mac_lane.sv").unlink()
    assert_refused(*simulate(capsys, path, tmp_path), "rtl/tg_mac_lane.sv", "missing")
    rehash(path)
    assert_refused(*simulate(capsys, path, tmp_path), "rtl/tg_mac_lane.sv", "compile it again")


@pytest.mark.parametrize("image", ["program.hex", "weights.hex", "scratch.hex", "tables.hex"])
def test_missing_image_is_refused(artifact, tmp_path, capsys, image):
    path, _, _ = artifact
    (path / image).unlink()
    assert_refused(*simulate(capsys, path, tmp_path), image, "missing")
    rehash(path)
    assert_refused(*simulate(capsys, path, tmp_path), image, "compile it again")


def test_junk_program_is_refused(artifact, tmp_path, capsys):
    path, _, _ = artifact
    lines = (path / "program.hex").read_text().splitlines()
    lines[3] = "not a word"
    (path / "program.hex").write_text("\n".join(lines) + "\n")
    assert_refused(*simulate(capsys, path, tmp_path), "program.hex", "does not match its sha256")
    rehash(path)
    assert_refused(*simulate(capsys, path, tmp_path), "program.hex line 4", "64-bit hex word")


def test_a_changed_weight_is_refused(artifact, tmp_path, capsys):
    path, _, _ = artifact
    lines = (path / "weights.hex").read_text().splitlines()
    lines[0] = f"{(int(lines[0], 16) + 1) % (1 << 4 * len(lines[0])):0{len(lines[0])}x}"
    (path / "weights.hex").write_text("\n".join(lines) + "\n")
    rehash(path)
    assert_refused(*simulate(capsys, path, tmp_path), "weights.hex", "do not hold what its model compiles to")


def test_hardware_parameters_that_do_not_match_the_images_are_refused(artifact, tmp_path, capsys):
    path, _, _ = artifact
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["hardware"]["parameters"]["W_DEPTH"] = 8
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(*simulate(capsys, path, tmp_path), "hardware parameters", "compile it again")
