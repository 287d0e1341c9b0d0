"""The artifact loader reads only the files the manifest lists, unchanged and inside the
artifact: every target records a sha256 per file it writes; a changed, missing, linked or
out-of-directory file is refused with an ``ArtifactError`` naming it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from accel_models import AccelCase, quantized
from tensorgate.backend.artifact import load_artifact, write_numpy_artifact
from tensorgate.backend.loading import confined_path
from tensorgate.backend.onnx_export import write_onnx_artifact
from tensorgate.backend.verilog.artifact import write_verilog_artifact
from tensorgate.errors import ArtifactError, ParseError, VerifyError
from tensorgate.frontend import import_onnx
from tensorgate.demo import demo_files

MODEL, _ = demo_files()


def every_file(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {"manifest.json"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(artifact: Path) -> dict:
    return json.loads((artifact / "manifest.json").read_text())


def rewrite_manifest(artifact: Path, **changes) -> None:
    manifest = manifest_of(artifact)
    manifest.update(changes)
    (artifact / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def artifact(tmp_path) -> Path:
    return write_numpy_artifact(import_onnx(MODEL), tmp_path / "art", "", str(MODEL))


def assert_files_recorded(artifact: Path) -> None:
    files = manifest_of(artifact)["files"]
    assert set(files) == every_file(artifact)
    assert all(files[name] == sha256(artifact / name) for name in files)


def test_numpy_and_onnx_artifacts_record_every_file_with_its_hash(tmp_path, artifact):
    assert set(manifest_of(artifact)["files"]) == {"model.tgir", "model.npz"}
    assert_files_recorded(artifact)
    onnx_artifact = write_onnx_artifact(import_onnx(MODEL), tmp_path / "ox", "", str(MODEL))
    assert {"model.onnx", "model.tgir", "model.npz"} <= set(manifest_of(onnx_artifact)["files"])
    assert_files_recorded(onnx_artifact)
    load_artifact(onnx_artifact)


def test_verilog_artifact_records_rtl_and_images(tmp_path):
    module, _ = quantized(AccelCase(fmt="tt", head="dense"), tmp_path)
    artifact = write_verilog_artifact(module, tmp_path / "out", "quantize", "model.onnx", 4)
    files = manifest_of(artifact)["files"]
    assert {"program.hex", "weights.hex", "scratch.hex", "tables.hex", "model.tgir"} <= set(files)
    assert any(name.startswith("rtl/") for name in files)
    assert_files_recorded(artifact)
    load_artifact(artifact)


@pytest.mark.parametrize("name", ["model.tgir", "model.npz"])
def test_a_changed_file_is_refused_by_name(artifact, name):
    with open(artifact / name, "ab") as file:
        file.write(b"\n")
    with pytest.raises(ArtifactError, match=f"'{name}' does not match its sha256"):
        load_artifact(artifact)


def test_a_missing_file_is_refused_by_name(artifact):
    (artifact / "model.npz").unlink()
    with pytest.raises(ArtifactError, match="'model.npz' is missing"):
        load_artifact(artifact)


def test_a_symbolic_link_is_refused_even_to_the_same_content(tmp_path, artifact):
    outside = tmp_path / "outside.npz"
    os.replace(artifact / "model.npz", outside)
    (artifact / "model.npz").symlink_to(outside)
    with pytest.raises(ArtifactError, match="'model.npz' is a symbolic link"):
        load_artifact(artifact)


def test_an_artifact_without_hashes_is_refused_with_advice(artifact):
    manifest = manifest_of(artifact)
    del manifest["files"]
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="'files' must map file names.*recompile"):
        load_artifact(artifact)


def test_a_bad_hash_entry_is_refused(artifact):
    rewrite_manifest(artifact, files={"model.tgir": "xyz"})
    with pytest.raises(ArtifactError, match="'model.tgir' is not 64 hex digits"):
        load_artifact(artifact)


@pytest.mark.parametrize("name", ["/etc/passwd", "../other/model.tgir", "./model.tgir", "a//b", "", "x\\y", 3, ".",
                                  "/", "..", "model.tgir/"])
def test_names_outside_or_not_canonical_are_refused(artifact, name):
    with pytest.raises(ArtifactError, match="not a plain relative name|expected a file name"):
        confined_path(artifact, name, "test")


def rehash(artifact: Path) -> None:
    """What someone tampering with an artifact would do: record the hashes of the changed
    files, so that only the loader's other checks stand in the way."""
    manifest = manifest_of(artifact)
    manifest["files"] = {name: sha256(artifact / name) for name in every_file(artifact)}
    (artifact / "manifest.json").write_text(json.dumps(manifest))


def test_ir_outside_the_artifact_is_refused_without_showing_its_content(artifact):
    rewrite_manifest(artifact, ir="/etc/passwd")
    with pytest.raises(ArtifactError, match="'ir'.*not a plain relative name") as error:
        load_artifact(artifact)
    assert Path("/etc/passwd").read_text().splitlines()[0] not in str(error.value)


def test_ir_of_a_sibling_artifact_is_refused_even_with_its_hash(tmp_path, artifact):
    other = write_numpy_artifact(import_onnx(MODEL), tmp_path / "other", "", str(MODEL))
    files = manifest_of(artifact)["files"]
    files["../other/model.tgir"] = sha256(other / "model.tgir")
    rewrite_manifest(artifact, ir="../other/model.tgir", files=files)
    with pytest.raises(ArtifactError, match="not a plain relative name"):
        load_artifact(artifact)


def test_weights_outside_the_artifact_are_refused(tmp_path, artifact):
    os.replace(artifact / "model.npz", tmp_path / "outside.npz")
    text = (artifact / "model.tgir").read_text()
    (artifact / "model.tgir").write_text(text.replace('weights "model.npz"', 'weights "../outside.npz"', 1))
    rehash(artifact)
    with pytest.raises(ParseError, match="weights file must be a file name beside it"):
        load_artifact(artifact)


def test_weights_not_listed_with_a_hash_are_refused(artifact):
    os.replace(artifact / "model.npz", artifact / "other.npz")
    text = (artifact / "model.tgir").read_text()
    (artifact / "model.tgir").write_text(text.replace('weights "model.npz"', 'weights "other.npz"', 1))
    manifest = manifest_of(artifact)
    manifest["files"] = {"model.tgir": sha256(artifact / "model.tgir")}
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="'other.npz' is not listed"):
        load_artifact(artifact)


def test_an_ir_whose_declared_types_are_wrong_is_refused(artifact):
    text = (artifact / "model.tgir").read_text()
    (artifact / "model.tgir").write_text(text.replace("%probabilities: f32[batch,10]", "%probabilities: i64[batch,11]"))
    rehash(artifact)
    with pytest.raises(VerifyError, match="probabilities"):
        load_artifact(artifact)


def test_a_manifest_that_misdescribes_the_inputs_is_refused(artifact):
    rewrite_manifest(artifact, inputs=[{"name": "image_rows", "shape": ["batch", 8, 9], "dtype": "f32"}])
    with pytest.raises(ArtifactError, match="'inputs' does not describe the module's inputs.*image_rows: f32"):
        load_artifact(artifact)


def write_manifest_text(artifact: Path, text: str) -> None:
    (artifact / "manifest.json").write_text(text)


@pytest.mark.parametrize("text, message", [
    ("[]", "must hold a JSON object, not list"),
    ("{", "is not valid JSON"),
    ("null", "must hold a JSON object"),
    ("\"manifest\"", "must hold a JSON object"),
])
def test_a_manifest_that_is_not_an_object_is_refused(artifact, text, message):
    write_manifest_text(artifact, text)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(artifact)


@pytest.mark.parametrize("changes, message", [
    ({"ir": None}, "'ir' must be a file name, not None"),
    ({"ir": 7}, "'ir' must be a file name"),
    ({"target": "fpga"}, "'target' must be one of numpy, onnx, verilog"),
    ({"tensorgate_version": 1}, "'tensorgate_version' must be a version string"),
    ({"inputs": {}}, "'inputs' must be a list"),
    ({"inputs": [3]}, "'inputs\\[0\\]' must be an object"),
    ({"outputs": [{"name": "p", "shape": [-1], "dtype": "f32"}]}, "'outputs\\[0\\].shape' must hold sizes >= 0"),
    ({"outputs": [{"shape": [], "dtype": "f32"}]}, "'outputs\\[0\\].name' is missing"),
    ({"files": []}, "'files' must map file names"),
    ({"files": {"model.tgir": None}}, "'model.tgir' is not 64 hex digits"),
])
def test_a_manifest_with_a_bad_entry_names_the_key(artifact, changes, message):
    rewrite_manifest(artifact, **changes)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(artifact)


@pytest.mark.parametrize("key", ["target", "ir", "inputs", "outputs", "tensorgate_version"])
def test_a_manifest_without_a_required_key_names_it(artifact, key):
    manifest = manifest_of(artifact)
    del manifest[key]
    write_manifest_text(artifact, json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"'{key}' is missing"):
        load_artifact(artifact)


@pytest.fixture
def verilog_artifact(tmp_path) -> Path:
    module, _ = quantized(AccelCase(), tmp_path)
    return write_verilog_artifact(module, tmp_path / "v", "quantize", "model.onnx", 4)


@pytest.mark.parametrize("pes, message", [
    (None, "'hardware.pes' is missing"), ("abc", "'hardware.pes' must be an integer, not abc"),
    (True, "'hardware.pes' must be an integer"), (2 ** 40, "'hardware.pes' must be a power of two from 1 to 1024"),
    (3, "power of two"), (0, "power of two"), (-4, "power of two"),
])
def test_a_bad_pes_in_the_manifest_is_a_manifest_error(verilog_artifact, pes, message):
    manifest = manifest_of(verilog_artifact)
    if pes is None:
        del manifest["hardware"]["pes"]
    else:
        manifest["hardware"]["pes"] = pes
    write_manifest_text(verilog_artifact, json.dumps(manifest))
    with pytest.raises(ArtifactError, match=message) as error:
        load_artifact(verilog_artifact)
    assert "--pes" not in str(error.value) and "manifest.json" in str(error.value)
